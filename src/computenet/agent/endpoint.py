"""The agent's data endpoint: serves this center's dataset replicas to other agents.

``GET /data/{dataset_id}?path=P`` with the headers ``X-CNet-Ticket: T`` and
``X-CNet-Center: C`` streams the replica file at ``P`` (relative to the data
root) when ``T`` is a ticket (`computenet.protocol.tickets`) minted with this
center's current data key for that dataset, path and fetching center ``C``,
and not expired. Otherwise: 403 (missing, wrong or expired ticket; a ticket in
the URL is ignored), 404 (no such replica here, or a path outside the data
root or naming the agent's own files), 503 before the agent has registered,
or while a ticket is signed with a newer data key than this agent has
picked up (``Retry-After``). ``GET /healthz`` answers ``ok``. Errors are the
network's ``ErrorBody`` JSON: ``{"error", "field", "hint"}``; they say why
without naming files.

A threaded ``http.server``: it needs no event loop, starts in milliseconds and
binds 127.0.0.1 on a free port by default.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from computenet.agent.data import DataRoot
from computenet.protocol.tickets import (
    CENTER_HEADER,
    TICKET_HEADER,
    ticket_key_version,
    ticket_problem,
)

logger = logging.getLogger(__name__)

_DATA_PATH = re.compile(r"/data/([A-Za-z0-9_\-][A-Za-z0-9_.\-]*)")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: DataEndpoint

    def handle_error(self, request: object, client_address: object) -> None:
        # A fetcher that gives up mid-transfer (cancelled job, next source) is normal.
        logger.debug("data endpoint: request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send_json(200, {"status": "ok"})
            return
        m = _DATA_PATH.fullmatch(url.path)
        if m is None:
            self._error(404, "no such path", hint="GET /data/{dataset_id}?path=PATH")
            return
        dataset_id = m.group(1)
        endpoint = self.server.endpoint
        key = endpoint.data_key
        if key is None:
            self._error(503, "this agent has not registered yet", hint="retry in a moment")
            return
        ticket = self.headers.get(TICKET_HEADER, "")
        fetcher = self.headers.get(CENTER_HEADER, "")
        if not ticket or not fetcher:
            self._error(
                403,
                f"send the ticket in {TICKET_HEADER} and your center in {CENTER_HEADER}",
                field="ticket",
                hint="tickets in the URL are ignored",
            )
            return
        rel = parse_qs(url.query).get("path", [""])[0]
        version = ticket_key_version(ticket)
        if version is not None and version > endpoint.data_key_version:
            # The control plane rotated our key; we pick it up at the next heartbeat.
            self._error(
                503,
                "this center has not picked up its new data key yet",
                field="ticket",
                hint="retry in a moment",
                retry_after=1,
            )
            return
        problem = ticket_problem(
            key,
            ticket,
            dataset=dataset_id,
            path=rel,
            center=fetcher,
            now_unix=time.time(),
            key_version=endpoint.data_key_version,
        )
        if problem is not None:
            logger.info("refused %s for %s (path %r): %s", dataset_id, fetcher, rel, problem)
            # A ticket cannot be renewed: the fetcher tries its next source, or gives the job
            # back, whose next lease brings fresh tickets (docs/center-protocol.md, Staging).
            self._error(403, problem, field="ticket", hint="try the next source")
            return
        path = endpoint.data_root.inside(rel)
        if path is None or not path.is_file():
            self._error(404, f"dataset '{dataset_id}' has no replica here", field="dataset_id")
            return
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below, after streaming
        except OSError as exc:
            logger.warning("cannot open %s: %s", path, exc)
            self._error(404, "cannot open the replica", field="dataset_id")
            return
        with f:
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                shutil.copyfileobj(f, self.wfile, 1 << 16)
            except (BrokenPipeError, ConnectionResetError):
                logger.info("fetch of %s aborted by the client", dataset_id)
        endpoint.served += 1
        logger.info("served %s (%d bytes) to %s", dataset_id, size, fetcher)

    def _error(
        self,
        code: int,
        error: str,
        field: str | None = None,
        hint: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        self._send_json(code, {"error": error, "field": field, "hint": hint}, retry_after)

    def _send_json(
        self, code: int, body: dict[str, object], retry_after: int | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("data endpoint: " + format, *args)


class DataEndpoint:
    """Serves replicas under `data_root` over HTTP (see module doc). Start, then `url`."""

    def __init__(
        self, data_root: DataRoot, host: str = "127.0.0.1", port: int = 0, public_url: str = ""
    ) -> None:
        self.data_root = data_root
        self.data_key: str | None = None
        # The version of `data_key` (bumped by `cnet admin rotate-data-key`).
        self.data_key_version = 1
        self.served = 0
        self._server = _Server((host, port), _Handler)
        self._server.endpoint = self
        self._public_url = public_url.rstrip("/")
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL other agents use (``http://HOST:PORT`` unless a public URL was given)."""
        if self._public_url:
            return self._public_url
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> DataEndpoint:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            daemon=True,
            name="cnet-data-endpoint",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
