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

Scale from zero: a request to a service with no ready replica is held (up to
`hold_s`, `HOLD_S` by default) while the gateway reports it as waiting (the
control plane starts a replica for it), and forwarded once one is ready.

Metering: every request is counted per service (`Meter`: requests, errors,
bytes, time to first byte and end-to-end latency as histograms) and the counts
go to the control plane every `REPORT_EVERY_S` with the load
(``POST /api/v1/services/NAME/stats``; `protocol.service_stats`).
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
from computenet.protocol.service_stats import Counts

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
HOLD_S = 60.0
"""Seconds a request to a service with no ready replica is held for one to start (`--hold-s`)."""
MAX_HELD = 256
"""Requests one gateway holds at once for replicas to start (each keeps its body, up to
`MAX_BODY_BYTES`): past it a request gets 503 at once rather than the gateway's memory."""

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
    chip: str | None = None


@dataclass
class Service:
    """What the gateway knows of one service."""

    name: str
    objective_ms: float
    target_inflight: int
    replicas: list[Replica] = field(default_factory=list)
    chips: int = 1  # per replica (the service file's chips.count)


class Meter:
    """Per-request counts by service, taken and reset at each report."""

    def __init__(self) -> None:
        self.counts: dict[str, Counts] = {}
        self.since = time.monotonic()

    def record(
        self,
        service: str,
        *,
        error: bool,
        bytes_in: int,
        bytes_out: int,
        ttfb_s: float,
        total_s: float,
    ) -> None:
        """Count one request: failed or not, its bytes, and its two latencies in seconds."""
        c = self.counts.get(service)
        if c is None:
            c = self.counts[service] = Counts()
        c.count(
            error=error,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
            ttfb_ms=ttfb_s * 1000.0,
            latency_ms=total_s * 1000.0,
        )

    def take(self) -> tuple[float, dict[str, Counts]]:
        """The window's length in seconds and its counts; a new window starts."""
        now = time.monotonic()
        window, counts = max(now - self.since, 1e-3), self.counts
        self.since, self.counts = now, {}
        return window, counts


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
        hold_s: float = HOLD_S,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.network = network
        self.paths = PathTable.build(network) if network is not None else None
        self.site = site
        self.refresh_s = refresh_s
        self.hold_s = hold_s
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._samples: dict[str, list[int]] = {}  # service -> in-flight sampled each refresh
        self.waiting: dict[str, int] = {}  # service -> requests held for a replica now
        self._waited: dict[str, int] = {}  # service -> the most held at once since the report
        self._urgent = False  # a request started waiting: report at the next refresh
        self._refreshed = asyncio.Event()  # set (and replaced) at each refresh
        self.meter = Meter()
        self._speed: dict[str | None, float] = {}
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
            if self._urgent or time.monotonic() - self._reported >= REPORT_EVERY_S:
                self._urgent = False
                await self.report_load()

    async def report_load(self) -> None:
        """Report each service's mean in-flight and waiting requests, then its request counts.

        The load (``/load``: ``inflight``, ``waiting``: the most requests held at
        once for a replica since the last report, ``site``) drives autoscaling and
        scale from zero; the counts (``/stats``) are the metering.
        """
        samples, self._samples = self._samples, {}
        waited, self._waited = self._waited, dict(self.waiting)
        window, counts = self.meter.take()
        self._reported = time.monotonic()
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with httpx.AsyncClient(base_url=self.server_url, timeout=5.0) as c:
                for name in sorted(set(samples) | set(waited)):
                    xs = samples.get(name, [])
                    body = {
                        "gateway": self.name,
                        "inflight": sum(xs) / max(1, len(xs)),
                        "site": self.site,
                        "waiting": max(waited.get(name, 0), self.waiting.get(name, 0)),
                    }
                    got = await c.post(f"/api/v1/services/{name}/load", json=body, headers=headers)
                    if got.status_code >= 400:  # e.g. a --site the server's network lacks
                        log.warning("gateway: load of %s refused: %s", name, got.text[:200])
                for name, n in counts.items():
                    stats = {
                        "gateway": self.name,
                        "site": self.site,
                        "window_s": min(window, 3600.0),
                        "requests": n.requests,
                        "errors": n.errors,
                        "bytes_in": n.bytes_in,
                        "bytes_out": n.bytes_out,
                        "ttfb_ms": n.ttfb_ms,
                        "latency_ms": n.latency_ms,
                    }
                    got = await c.post(
                        f"/api/v1/services/{name}/stats", json=stats, headers=headers
                    )
                    if got.status_code >= 400:
                        log.warning("gateway: stats of %s refused: %s", name, got.text[:200])
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
                chips=int(spec.get("chips", {}).get("count", 1)),
            )
            for r in s["replicas"]:
                if r.get("ready") and r.get("endpoint"):
                    svc.replicas.append(
                        Replica(r["job_id"], r["endpoint"], r.get("center") or "", r.get("chip"))
                    )
            services[svc.name] = svc
        self.services = services
        self._refreshed.set()  # wake the requests held for a replica
        self._refreshed = asyncio.Event()

    # -- the decision ----------------------------------------------------------------

    def _rtt_ms(self, center: str) -> float:
        if center not in self._rtt:
            self._rtt[center] = (
                scoring.rtt_ms(self.paths, self.network, self.site, center)
                if self.paths is not None and self.network is not None
                else 0.0
            )
        return self._rtt[center]

    def _speed_pflops(self, chip: str | None, count: int) -> float:
        if chip not in self._speed:  # per chip type: the catalog does not change
            if self.network is not None:
                chips, matrix = self.network.chips, self.network.throughput
            else:  # no --network: the catalog's chips and efficiencies
                from computenet.catalog.loader import load_chips, load_throughput

                chips, matrix = load_chips(), load_throughput()
            self._speed[chip] = scoring.speed_pflops(chips, matrix, chip, 1)
        return count * self._speed[chip]

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
                speed_pflops=self._speed_pflops(r.chip, svc.chips),
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
            body = {
                "ok": True,
                "services": {n: len(s.replicas) for n, s in self.services.items()},
                "waiting": {n: w for n, w in self.waiting.items() if w},
            }
            await _reply(send, 200, body)
            return
        if not path.startswith(PREFIX):
            await _reply(send, 404, _error("path", "not a service path", "use /services/NAME/..."))
            return
        name, _, rest = path[len(PREFIX) :].partition("/")
        if name not in self.services:
            await _reply(
                send, 404, _error("name", f"no service '{name}'", "cnet serve ls lists them")
            )
            return
        await self._forward(name, "/" + rest, scope, receive, send)

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

    async def _hold(self, name: str) -> Service | None:
        """Wait (up to `hold_s`) for a ready replica of `name`, counted as waiting meanwhile."""
        deadline = time.monotonic() + self.hold_s
        first = self.waiting.get(name, 0) == 0
        self.waiting[name] = self.waiting.get(name, 0) + 1
        self._waited[name] = max(self._waited.get(name, 0), self.waiting[name])
        if first:
            self._urgent = True  # tell the control plane now, not at the next report
        try:
            while True:
                svc = self.services.get(name)
                if svc is None or svc.replicas:
                    return svc
                left = deadline - time.monotonic()
                if left <= 0:
                    return svc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._refreshed.wait(), timeout=left)
        finally:
            self.waiting[name] -= 1

    async def _forward(
        self, name: str, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        t0 = time.perf_counter()
        out_bytes = 0
        status = 0
        ttfb = 0.0

        async def sent(msg: Message) -> None:
            # Every answer goes out through here: the meter sees its status, time and size.
            nonlocal out_bytes, status, ttfb
            if msg["type"] == "http.response.start":
                status = msg["status"]
                ttfb = time.perf_counter() - t0
            else:
                out_bytes += len(msg.get("body", b""))
            await send(msg)

        size = 0
        try:
            size = await self._forward_metered(name, rest, scope, receive, sent)
        except BaseException:
            status = status if status >= 500 else 599  # cut off midway: an error
            raise
        finally:
            total = time.perf_counter() - t0
            self.meter.record(
                name,
                error=status >= 500 or status == 0,
                bytes_in=size,
                bytes_out=out_bytes,
                ttfb_s=ttfb if status else total,
                total_s=total,
            )

    async def _forward_metered(
        self, name: str, rest: str, scope: Scope, receive: Receive, send: Send
    ) -> int:
        """Forward one request; returns the request body's size in bytes."""
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
                return size
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        svc = self.services.get(name)
        last = "no replica is ready"
        if svc is not None and not svc.replicas and self.hold_s > 0:
            if sum(self.waiting.values()) >= MAX_HELD:
                last += f" and {MAX_HELD} requests are already held for one"
            else:
                svc = await self._hold(name)  # scale from zero: wait for the first replica
                last += f" after {self.hold_s:g} s"
        if svc is None:
            await _reply(send, 404, _error("name", f"no service '{name}'", "it was deleted"))
            return size
        headers = [(k, v) for k, v in scope["headers"] if k not in _HOP]
        session = next((v.decode("latin-1") for k, v in headers if k == SESSION_HEADER), None)
        query = scope.get("query_string", b"")
        target = rest + ("?" + query.decode("latin-1") if query else "")
        tried: set[str] = set()
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
                return size
            finally:
                self.inflight[pick.key] -= 1
        await _reply(
            send,
            503,
            _error("service", f"service '{svc.name}' cannot answer now: {last}", "try again"),
            extra=[(b"retry-after", b"1")],
        )
        return size


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

    # The replica's own Date and Server headers pass through; uvicorn's would repeat them.
    uvicorn.run(
        gateway,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        date_header=False,
    )
