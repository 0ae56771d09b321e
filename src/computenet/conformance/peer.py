"""The kit's peer center: registered and heartbeating, its data endpoint serves the inputs.

The center under test stages its inputs from here. The peer checks every
fetch the way the protocol says a data endpoint must (`protocol.tickets`): the
ticket in ``X-CNet-Ticket``, signed with this center's data key for this
dataset, path and fetching center (``X-CNet-Center``), not expired; it
records each fetch so the kit can tell that the center fetched with a ticket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from computenet.protocol.tickets import CENTER_HEADER, TICKET_HEADER, ticket_problem

log = logging.getLogger(__name__)


@dataclass
class Fetch:
    """One fetch at the peer's data endpoint."""

    dataset: str
    path: str
    center: str
    status: int
    problem: str | None


class PeerCenter:
    """A center the kit plays: register, heartbeat on a thread, serve `data_root`."""

    def __init__(
        self, server_url: str, center_id: str, token: str, data_root: Path, pools: dict[str, int]
    ) -> None:
        self.center_id = center_id
        self.data_root = data_root
        self.pools = pools
        self.fetches: list[Fetch] = []
        self.data_key = ""
        self.key_version = 1
        self._http = httpx.Client(
            base_url=server_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )
        self._stop = threading.Event()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("peer data endpoint: " + format, *args)

            def do_GET(self) -> None:
                peer._serve(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.data_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="peer-data", daemon=True),
            threading.Thread(target=self._heartbeats, name="peer-heartbeat", daemon=True),
        ]

    def _capacity(self) -> list[dict[str, Any]]:
        return [{"chip": c, "total": n, "free": n} for c, n in self.pools.items()]

    def start(self) -> None:
        """Register (raises on refusal) and start serving and heartbeating."""
        r = self._http.post(
            "/center/v1/register",
            json={
                "center_id": self.center_id,
                "protocol_version": "1",
                "agent_version": "conformance-kit",
                "backend": "conformance-peer",
                "data_url": self.data_url,
                "capacity": self._capacity(),
            },
        )
        r.raise_for_status()
        reply = r.json()
        self.data_key = str(reply["data_key"])
        self.key_version = int(reply.get("data_key_version", 1))
        self.interval_s = float(reply["heartbeat_interval_s"])
        for t in self._threads:
            t.start()

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(httpx.HTTPError):
                self._http.post(
                    "/center/v1/heartbeat",
                    json={"center_id": self.center_id, "capacity": self._capacity(), "running": []},
                )

    def close(self) -> None:
        """Stop heartbeating and serving."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        dataset = parts.path.removeprefix("/data/")
        path = (parse_qs(parts.query).get("path") or [""])[0]
        center = h.headers.get(CENTER_HEADER, "")
        problem = ticket_problem(
            self.data_key,
            h.headers.get(TICKET_HEADER, ""),
            dataset=dataset,
            path=path,
            center=center,
            now_unix=time.time(),
            key_version=self.key_version,
        )
        file = (self.data_root / path).resolve()
        status = 403 if problem else 200
        if not problem and (self.data_root.resolve() not in file.parents or not file.is_file()):
            status, problem = 404, "no such file"
        self.fetches.append(Fetch(dataset, path, center, status, problem))
        if status == 200:
            body, ctype = file.read_bytes(), "application/octet-stream"
        else:
            error = {"error": problem, "field": "ticket" if status == 403 else "path", "hint": None}
            body, ctype = json.dumps(error).encode(), "application/json"
        with contextlib.suppress(OSError):
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
