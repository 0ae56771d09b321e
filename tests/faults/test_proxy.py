"""The fault proxy itself (tests/helpers/proxy.py): each mode does what the scenarios rely on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.helpers.proxy import TcpProxy


@pytest.fixture
def echo() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP echo server on 127.0.0.1: (port, what it received)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                got.append(data)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(srv.getsockname()[1]), got
    stop.set()
    t.join()
    srv.close()


def _roundtrip(port: int, data: bytes, timeout: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        try:
            return s.recv(4096)
        except TimeoutError:
            return b"<timeout>"
        except OSError:
            return b"<closed>"


def test_pass_forwards_both_ways(echo: tuple[int, list[bytes]]) -> None:
    with TcpProxy(echo[0]) as proxy:
        assert _roundtrip(proxy.port, b"hello") == b"hello"


def test_drop_closes_connections_and_blackhole_swallows(echo: tuple[int, list[bytes]]) -> None:
    port, got = echo
    with TcpProxy(port) as proxy:
        proxy.set_mode("drop")
        assert _roundtrip(proxy.port, b"dropped") in (b"", b"<closed>")
        proxy.set_mode("blackhole")
        assert _roundtrip(proxy.port, b"void", timeout=0.5) == b"<timeout>"
        assert b"dropped" not in b"".join(got) and b"void" not in b"".join(got)


def test_half_open_delivers_requests_but_not_replies(echo: tuple[int, list[bytes]]) -> None:
    port, got = echo
    with TcpProxy(port) as proxy:
        proxy.set_mode("half-open")
        assert _roundtrip(proxy.port, b"one-way", timeout=0.5) == b"<timeout>"
        assert b"one-way" in b"".join(got)  # the upstream got it and acted on it


def test_lose_replies_only_for_matching_requests(echo: tuple[int, list[bytes]]) -> None:
    port, got = echo
    with TcpProxy(port) as proxy:
        proxy.set_mode("lose-replies", match=b"POST /lease ")
        assert _roundtrip(proxy.port, b"POST /other HTTP/1.1\r\n") == b"POST /other HTTP/1.1\r\n"
        assert _roundtrip(proxy.port, b"POST /lease HTTP/1.1\r\n") in (b"", b"<closed>")
        assert b"POST /lease" in b"".join(got)
        assert proxy.replies_lost == 1


def test_delay_still_delivers(echo: tuple[int, list[bytes]]) -> None:
    with TcpProxy(echo[0]) as proxy:
        proxy.set_mode("delay", delay_s=0.05)
        assert _roundtrip(proxy.port, b"slow") == b"slow"
