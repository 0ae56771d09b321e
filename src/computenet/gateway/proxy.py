"""The gateway's reverse proxy: ``/services/NAME/...`` to the best ready replica of NAME.

An ASGI app (run by uvicorn, `cnet gateway`). The path after the service name,
the query, the method, the body and the headers (less hop-by-hop ones) go to
the replica untouched, and its answer comes back as it streams, chunk by chunk
(OpenAI-compatible ``/v1/...`` paths and server-sent events included). The
gateway adds one header, ``X-CNet-Replica`` (the replica's job id).

Replicas come from the control plane (``GET /api/v1/services``, every
`REFRESH_S`); the choice is `scoring.score`'s. A replica that cannot be
reached (or answers 502/503) before anything was sent back is left out for
`scoring.FAILED_HOLD_S` and the request goes to the next best, up to `TRIES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from computenet.gateway import scoring
from computenet.model import Network
from computenet.network.paths import PathTable

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PREFIX = "/services/"
SESSION_HEADER = "x-cnet-session"
REPLICA_HEADER = b"x-cnet-replica"
REFRESH_S = 0.5
"""Seconds between two reads of the services' replicas from the control plane."""
TRIES = 3
"""The most replicas one request is tried on."""
REPORT_EVERY_S = 2.0
"""Seconds between two load reports to the control plane (for autoscaling)."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest request body the gateway takes (it holds a body whole, to retry it): 413 above."""
MAX_SESSIONS = 100_000
"""Session affinities remembered (the oldest are forgotten first)."""

# Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the request's.
_HOP = frozenset(
    b"connection keep-alive proxy-authenticate proxy-authorization te trailer"
    b" transfer-encoding upgrade host".split()
)


@dataclass
class Replica:
    """A ready replica as the control plane lists it."""

    key: str
    endpoint: str
    center: str


@dataclass
class Service:
    """What the gateway knows of one service."""

    name: str
    objective_ms: float
    target_inflight: int
    replicas: list[Replica] = field(default_factory=list)


class Gateway:
    """The ASGI app; see the module doc."""

    def __init__(
        self,
        server_url: str,
        token: str,
        *,
        network: Network | None = None,
        site: str | None = None,
        refresh_s: float = REFRESH_S,
        name: str | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.network = network
        self.paths = PathTable.build(network) if network is not None else None
        self.site = site
        self.refresh_s = refresh_s
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._samples: dict[str, list[int]] = {}  # service -> in-flight sampled each refresh
        self._reported = time.monotonic()
        self.services: dict[str, Service] = {}
        self.inflight: dict[str, int] = {}
        self.failed_until: dict[str, float] = {}
        self.sessions: OrderedDict[tuple[str, str], str] = OrderedDict()
        self.now: datetime = datetime.now(UTC)  # the network's now, from the control plane
        self._rtt: dict[str, float] = {}
        self._upstream: httpx.AsyncClient | None = None
        self._refresher: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the upstream connection pool and start reading replicas."""
        self._upstream = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=2.0),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        )
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_loop())

    async def stop(self) -> None:
        """Stop reading replicas and close every connection."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        if self._upstream is not None:
            await self._upstream.aclose()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            await self.refresh()
            for name, svc in self.services.items():
                busy = sum(self.inflight.get(r.key, 0) for r in svc.replicas)
                self._samples.setdefault(name, []).append(busy)
            if time.monotonic() - self._reported >= REPORT_EVERY_S:
                await self.report_load()

    async def report_load(self) -> None:
        """Tell the control plane each service's mean in-flight requests since the last report."""
        samples, self._samples = self._samples, {}
        self._reported = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with httpx.AsyncClient(base_url=self.server_url, timeout=5.0) as c:
                for name, xs in samples.items():
                    body = {"gateway": self.name, "inflight": sum(xs) / max(1, len(xs))}
                    await c.post(f"/api/v1/services/{name}/load", json=body, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("gateway: load not reported (%s)", exc)

    async def refresh(self) -> None:
        """Read every service's ready replicas (and the network's now) from the control plane."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with httpx.AsyncClient(base_url=self.server_url, timeout=5.0) as c:
                got = await c.get("/api/v1/services", headers=headers)
                health = await c.get("/healthz")
            got.raise_for_status()
            listed = got.json()
            if health.status_code == 200:
                self.now = datetime.fromisoformat(health.json()["now"])
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.warning("gateway: replicas not refreshed (%s); keeping the last list", exc)
            return
        services = {}
        for s in listed:
            spec = s["spec"]
            svc = Service(
                name=s["name"],
                objective_ms=float(spec.get("latency", {}).get("p99_ttfb_ms", 500.0)),
                target_inflight=int(spec.get("target_inflight", 4)),
            )
            for r in s["replicas"]:
                if r.get("ready") and r.get("endpoint"):
                    svc.replicas.append(Replica(r["job_id"], r["endpoint"], r.get("center") or ""))
            services[svc.name] = svc
        self.services = services

    # -- the decision ----------------------------------------------------------------

    def _rtt_ms(self, center: str) -> float:
        if center not in self._rtt:
            self._rtt[center] = (
                scoring.rtt_ms(self.paths, self.network, self.site, center)
                if self.paths is not None and self.network is not None
                else 0.0
            )
        return self._rtt[center]

    def ranked(self, svc: Service, tried: set[str]) -> list[scoring.Scored]:
        """Candidates of `svc` best first: ready, not failed lately, not tried already."""
        now = time.monotonic()
        raws = [
            scoring.Raw(
                key=r.key,
                endpoint=r.endpoint,
                center=r.center,
                rtt_ms=self._rtt_ms(r.center),
                inflight=self.inflight.get(r.key, 0),
                tariff_cny_kwh=(
                    scoring.tariff_now(self.network, r.center, self.now) if self.network else 0.0
                ),
            )
            for r in svc.replicas
            if r.key not in tried and self.failed_until.get(r.key, 0.0) <= now
        ]
        return scoring.score(
            raws, objective_ms=svc.objective_ms, target_inflight=svc.target_inflight
        )

    def choose(self, svc: Service, session: str | None, tried: set[str]) -> scoring.Raw | None:
        """The replica for this try: the session's own while it is a candidate, else the best."""
        ranked = self.ranked(svc, tried)
        if not ranked:
            return None
        if session is not None:
            key = (svc.name, session)
            held = self.sessions.get(key)
            for s in ranked:
                if s.raw.key == held:
                    self.sessions.move_to_end(key)
                    return s.raw
            self.sessions[key] = ranked[0].raw.key
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return ranked[0].raw

    # -- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection event."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path == "/healthz":
            body = {"ok": True, "services": {n: len(s.replicas) for n, s in self.services.items()}}
            await _reply(send, 200, body)
            return
        if not path.startswith(PREFIX):
            await _reply(send, 404, _error("path", "not a service path", "use /services/NAME/..."))
            return
        name, _, rest = path[len(PREFIX) :].partition("/")
        svc = self.services.get(name)
        if svc is None:
            await _reply(
                send, 404, _error("name", f"no service '{name}'", "cnet serve ls lists them")
            )
            return
        await self._forward(svc, "/" + rest, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(
        self, svc: Service, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        assert self._upstream is not None
        chunks = []
        size = 0
        while True:  # the whole body first: a retry must be able to send it again
            msg = await receive()
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY_BYTES:
                await _reply(
                    send,
                    413,
                    _error("body", f"over {MAX_BODY_BYTES} bytes", "send a smaller request"),
                )
                return
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP]
        session = next((v.decode("latin-1") for k, v in headers if k == SESSION_HEADER), None)
        query = scope.get("query_string", b"")
        target = rest + ("?" + query.decode("latin-1") if query else "")
        tried: set[str] = set()
        last = "no replica is ready"
        for _ in range(TRIES):
            pick = self.choose(svc, session, tried)
            if pick is None:
                break
            tried.add(pick.key)
            self.inflight[pick.key] = self.inflight.get(pick.key, 0) + 1
            try:
                req = self._upstream.build_request(
                    scope["method"],
                    f"http://{pick.endpoint}{target}",
                    headers=headers,
                    content=body,
                )
                try:
                    resp = await self._upstream.send(req, stream=True)
                except httpx.TransportError as exc:
                    last = f"replica {pick.key} at {pick.endpoint}: {type(exc).__name__}"
                    self.failed_until[pick.key] = time.monotonic() + scoring.FAILED_HOLD_S
                    continue
                if resp.status_code in (502, 503) and len(tried) < TRIES:
                    await resp.aclose()
                    last = f"replica {pick.key} answered {resp.status_code}"
                    self.failed_until[pick.key] = time.monotonic() + scoring.FAILED_HOLD_S
                    continue
                try:
                    out = [(k, v) for k, v in resp.headers.raw if k.lower() not in _HOP]
                    out.append((REPLICA_HEADER, pick.key.encode()))
                    await send(
                        {"type": "http.response.start", "status": resp.status_code, "headers": out}
                    )
                    async for chunk in resp.aiter_raw():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
                finally:
                    await resp.aclose()
                return
            finally:
                self.inflight[pick.key] -= 1
        await _reply(
            send,
            503,
            _error("service", f"service '{svc.name}' cannot answer now: {last}", "try again"),
            extra=[(b"retry-after", b"1")],
        )


def _error(field: str, message: str, hint: str) -> dict[str, Any]:
    # The control plane's error body (`protocol.api.ErrorBody`).
    return {"error": message, "field": field, "hint": hint}


async def _reply(
    send: Send, status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": raw})


def serve(gateway: Gateway, host: str, port: int) -> None:
    """Run `gateway` on host:port until interrupted."""
    import uvicorn

    uvicorn.run(gateway, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
