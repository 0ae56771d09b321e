"""A TCP relay from the agent's data host to a replica that listens elsewhere.

A Kubernetes pod listens at its pod IP on a cluster node, which the gateways
cannot be sent to (the control plane accepts only the center's registered data
host, see docs/services.md). The agent therefore opens one `Relay` per such
replica on its own data host, at a free port, and forwards the bytes of each
connection both ways to the replica's ``host:port``. The relay is bounded: at
most `max_connections` connections at once (more are closed on accept), a
connection on which no byte moves either way for `idle_timeout_s` is closed (so
idle clients cannot hold every slot), and the relay closes, with every
connection through it, when the replica does.

The relay runs an asyncio loop in one daemon thread, so it costs the agent's
loop nothing and one relay serves many connections without a thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 256
"""Connections one relay carries at once by default; more are closed on accept."""
CONNECT_TIMEOUT_S = 5.0
"""How long a relayed connection waits for the replica to accept it."""
IDLE_TIMEOUT_S = 300.0
"""A relayed connection with no byte either way for this long is closed.

Longer than any sane wait for a model's first token, and than HTTP keep-alive
idles of common clients, so only connections nobody uses are cut."""
_CHUNK = 64 * 1024


class Relay:
    """Forwards TCP connections from ``listen_host:<free port>`` to `target` (see module doc).

    `start()` binds and returns the port; `close()` stops accepting, cuts every
    connection and ends the thread. `active` is the number of connections now.
    """

    def __init__(
        self,
        listen_host: str,
        target: tuple[str, int],
        *,
        max_connections: int = MAX_CONNECTIONS,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if idle_timeout_s <= 0:
            raise ValueError("idle_timeout_s must be above 0")
        self.listen_host = listen_host
        self.target = target
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    @property
    def active(self) -> int:
        """Connections being relayed now."""
        return len(self._tasks)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def start(self) -> int:
        """Bind at a free port of `listen_host` and start relaying; the port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(
            target=loop.run_forever, name=f"relay-{self.target[0]}:{self.target[1]}", daemon=True
        )
        self._thread.start()
        try:
            fut = asyncio.run_coroutine_threadsafe(self._serve(), loop)
            self._server = fut.result(timeout=10)
        except BaseException:
            self.close()
            raise
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self.port

    async def _serve(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, self.listen_host, 0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._tasks) >= self.max_connections or self._closed:
            # Bounded: a flood of connections cannot take the agent's file descriptors.
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target), self.connect_timeout_s
            )
            upstream = up_writer
            await self._relay(reader, up_writer, up_reader, writer)
        except (OSError, TimeoutError) as exc:
            logger.debug("relay to %s:%s: %s", *self.target, exc)
        except asyncio.CancelledError:
            pass  # `close()` cut it: ending quietly (asyncio logs a cancelled handler)
        finally:
            self._tasks.discard(task)
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Pipe both ways until both ends close, or until neither moved a byte for the idle time."""
        loop = asyncio.get_running_loop()
        last = loop.time()  # when a byte last moved, either way

        def moved() -> None:
            nonlocal last
            last = loop.time()

        both = asyncio.gather(_pipe(reader, up_writer, moved), _pipe(up_reader, writer, moved))
        try:
            while True:
                left = last + self.idle_timeout_s - loop.time()
                if left <= 0:
                    logger.debug("relay to %s:%s: idle, closing", *self.target)
                    return
                done, _ = await asyncio.wait({both}, timeout=left)
                if done:
                    return
        finally:
            both.cancel()
            await asyncio.gather(both, return_exceptions=True)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        """Stop accepting, cut every connection and end the relay's thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if loop is None:
            return
        if loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not loop.is_running():
            loop.close()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, moved: Callable[[], None]
) -> None:
    """Copy `reader` to `writer` until EOF, then half-close `writer` (the other way goes on).

    `moved` is called for every chunk copied, which keeps the connection from idling out.
    """
    try:
        while data := await reader.read(_CHUNK):
            moved()
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        # One side reset: the other direction cannot be useful any more.
        writer.close()
