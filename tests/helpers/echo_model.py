"""A tiny model server for service tests and bench/gateway_overhead.py (stdlib only).

Run as a script: it listens on 127.0.0.1:$PORT. ``GET /`` is its readiness
answer; any other path answers JSON naming the replica, its pid, the method,
path and body length (after ``sleep`` seconds when the query asks: a slow
model); ``/v1/stream`` streams ``n`` server-sent events
(chunked), like an OpenAI-compatible completion with ``stream: true``.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    """Answers every request at once (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes: without this, Nagle's algorithm and the
    # peer's delayed ACK add up to 40 ms to an answer (as a real model server avoids too).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the job's log stays small."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        delay = float(parse_qs(url.query).get("sleep", ["0"])[0])
        if delay > 0:  # a slow model: keeps requests in flight (autoscaling tests)
            time.sleep(delay)
        if url.path == "/v1/stream":
            n = int(parse_qs(url.query).get("n", ["3"])[0])
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                event = f"data: {json.dumps({'token': i})}\n\n".encode()
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        out = json.dumps(
            {
                "replica": os.environ.get("CNET_SERVICE_REPLICA"),
                "pid": os.getpid(),
                "method": self.command,
                "path": self.path,
                "body_bytes": len(body),
                "session": self.headers.get("X-CNet-Session"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer


def main() -> None:
    """Serve on $PORT until killed."""
    port = int(os.environ.get("PORT") or os.environ["CNET_SERVICE_PORT"])
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
