"""An HTTP proxy between the center under test and the control plane: it sees every call.

The conformance kit gives the center the proxy's URL, not the server's, so it
can record each call (path, body, answer, when) and play the faults of a real
network on it:

- ``pass``: forward both ways, recording;
- ``cut``: the center is cut off — every connection is closed without an
  answer, and an answer that comes back from the server for a call sent
  before the cut is dropped too (the call may have happened; the center never
  learns it did);
- lose-once rules (`lose_reply_once`): a call whose path matches reaches the
  server, but its first answer is lost (the connection closes): the center
  must send it again, and the retry must change nothing;
- canned answers (`answer`): a call whose path matches gets this answer
  instead of reaching the server (a control plane of another protocol version).

Every JSON object the server answers with 2xx gains an unknown field
(`UNKNOWN_FIELD`): protocol v1 says new fields may appear and are ignored.
Threads only; `close()` stops it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

log = logging.getLogger(__name__)

UNKNOWN_FIELD = "x_conformance_future_field"
"""Added to every JSON object answer: a center must ignore fields it does not know."""

_HOP_HEADERS = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}


@dataclass
class Call:
    """One call the center made, as the proxy saw it."""

    method: str
    path: str
    body: Any
    received: float  # wall clock (time.time()) when the request arrived
    status: int | None = None  # the server's answer (None: it never got one)
    answer: Any = None
    delivered: bool = False  # whether the answer reached the center
    lost: str = ""  # why it was not delivered: "cut", "lose-once", "canned"


@dataclass
class _Rule:
    pattern: re.Pattern[str]
    seen: set[str] = field(default_factory=set)


class RecordingProxy:
    """A threaded HTTP reverse proxy to `upstream` with faults the kit controls."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._lose: list[_Rule] = []
        self._canned: list[tuple[re.Pattern[str], int, dict[str, Any]]] = []
        self._http = httpx.Client(base_url=self.upstream, timeout=httpx.Timeout(60.0))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("proxy: " + format, *args)

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="conformance-proxy", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ control

    def set_mode(self, mode: str) -> None:
        """``pass`` or ``cut`` (see module doc)."""
        if mode not in ("pass", "cut"):
            raise ValueError(f"unknown proxy mode {mode!r}")
        self.mode = mode

    def lose_reply_once(self, path_regex: str) -> None:
        """Lose the first answer to each distinct call (path and body) matching `path_regex`."""
        with self._lock:
            self._lose.append(_Rule(re.compile(path_regex)))

    def answer(self, path_regex: str, status: int, body: dict[str, Any]) -> None:
        """Answer calls matching `path_regex` with `status` and `body`, without the server."""
        with self._lock:
            self._canned.append((re.compile(path_regex), status, body))

    def clear_faults(self) -> None:
        """Forget every lose-once rule and canned answer; mode ``pass``."""
        with self._lock:
            self._lose.clear()
            self._canned.clear()
        self.mode = "pass"

    def calls_to(self, path_regex: str, since: float = 0.0) -> list[Call]:
        """The recorded calls whose path matches `path_regex`, received at or after `since`."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [c for c in self.calls if c.received >= since and pattern.search(c.path)]

    def close(self) -> None:
        """Stop serving and close the upstream client."""
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    # ---------------------------------------------------------------- internals

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length > 0 else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw[:200].decode("utf-8", "replace")
        call = Call(h.command, h.path, body, time.time())
        with self._lock:
            self.calls.append(call)
            canned = next((c for c in self._canned if c[0].search(h.path)), None)
        if self.mode == "cut":
            call.lost = "cut"
            h.close_connection = True
            return
        if canned is not None:
            call.status, call.answer, call.lost = canned[1], canned[2], "canned"
            self._reply(h, canned[1], json.dumps(canned[2]).encode(), "application/json")
            call.delivered = True
            return
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            resp = self._http.request(h.command, h.path, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            log.debug("proxy: upstream failed: %s", exc)
            h.close_connection = True
            return
        call.status = resp.status_code
        content = resp.content
        ctype = resp.headers.get("content-type", "application/octet-stream")
        try:
            call.answer = resp.json() if ctype.startswith("application/json") else None
        except ValueError:
            call.answer = None
        if 200 <= resp.status_code < 300 and isinstance(call.answer, dict):
            content = json.dumps({**call.answer, UNKNOWN_FIELD: {"ignore": "me"}}).encode()
        if self.mode == "cut":  # cut while the call was at the server: its answer is lost
            call.lost = "cut"
            h.close_connection = True
            return
        if self._lose_this(h.path, raw):
            call.lost = "lose-once"
            h.close_connection = True
            return
        self._reply(h, resp.status_code, content, ctype)
        call.delivered = True

    def _lose_this(self, path: str, raw: bytes) -> bool:
        key = f"{path}\n{raw.decode('utf-8', 'replace')}"
        with self._lock:
            for rule in self._lose:
                if rule.pattern.search(path) and key not in rule.seen:
                    rule.seen.add(key)
                    return True
        return False

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, content: bytes, ctype: str) -> None:
        with contextlib.suppress(OSError):
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(content)))
            h.end_headers()
            h.wfile.write(content)
