"""A TCP proxy on 127.0.0.1 whose faults the test controls: partitions between processes.

``with TcpProxy(upstream_port) as proxy:`` listens on ``proxy.port`` and forwards
to ``127.0.0.1:upstream_port``. ``proxy.set_mode(mode)`` changes what happens
from then on, to new and existing connections alike:

- ``pass``: forward both ways;
- ``drop``: close every connection, existing and new (the peer sees a reset or EOF);
- ``delay``: forward both ways, each chunk held ``delay_s`` first;
- ``blackhole``: accept and read, but forward nothing either way (the peer waits);
- ``half-open``: forward client → upstream only; the upstream's replies are discarded
  (requests arrive and are acted on, their answers never come back);
- ``lose-replies``: forward both ways, except that a request containing ``match``
  (e.g. ``b"POST /center/v1/lease "``) reaches the upstream but its reply does not:
  the connection is closed when the reply starts (one HTTP/1.1 request at a time),
  also for a request sent before the switch whose reply comes after it.

Bytes are never reordered within a direction. Threads only; `close()` stops all.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

MODES = ("pass", "drop", "delay", "blackhole", "half-open", "lose-replies")
_CHUNK = 65536


class TcpProxy:
    """A controllable TCP proxy (see module doc)."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.delay_s = 0.0
        self.match = b""
        self.replies_lost = 0  # replies swallowed in lose-replies mode
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._closed = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0  # accepted so far (for tests of the proxy itself)
        self._thread = threading.Thread(target=self._accept_loop, name="proxy", daemon=True)
        self._thread.start()

    def set_mode(self, mode: str, *, delay_s: float | None = None, match: bytes = b"") -> None:
        """Switch to `mode` (one of MODES); ``drop`` also closes the open connections."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}; one of {MODES}")
        with self._lock:
            self.mode = mode
            if delay_s is not None:
                self.delay_s = delay_s
            self.match = match
            doomed = list(self._conns) if mode == "drop" else []
        for sock in doomed:
            _close(sock)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closed.set()
        _close(self._listener)
        with self._lock:
            doomed = list(self._conns)
        for sock in doomed:
            _close(sock)
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.mode == "drop":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)  # the upstream is down: the client sees its connection close
                continue
            with self._lock:
                self._conns.update((client, upstream))
            doomed = bytearray()  # the head of the request in flight on this connection
            for src, dst, replies in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump,
                    args=(src, dst, replies, doomed),
                    daemon=True,
                    name="proxy-pump",
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, replies: bool, doomed: bytearray
    ) -> None:
        src.settimeout(0.2)
        try:
            while not self._closed.is_set():
                try:
                    data = src.recv(_CHUNK)
                except TimeoutError:
                    continue
                if not data:
                    break
                mode = self.mode
                if mode == "drop":
                    break
                if mode == "blackhole" or (mode == "half-open" and replies):
                    continue  # swallowed
                if not replies and data.startswith(_METHODS):
                    # Whatever the mode, remember the request: one sent before the switch
                    # (a long-poll lease held upstream) loses its reply too if it comes after.
                    doomed[:] = data[:256]
                if (
                    mode == "lose-replies"
                    and replies
                    and self.match
                    and self.match in bytes(doomed)
                ):
                    self.replies_lost += 1
                    break  # the reply is lost: close both ends
                if mode == "delay" and self.delay_s > 0:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _close(sock)
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


_METHODS = (b"GET ", b"POST ", b"PUT ", b"DELETE ", b"PATCH ", b"HEAD ")


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
