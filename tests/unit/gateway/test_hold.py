"""Scale from zero at the gateway: a held request is reported as waiting, with the site,
and is released by the refresh that finds a ready replica (or gives up after hold_s)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from computenet.gateway.proxy import Gateway, Replica, Service
from tests.helpers import aio


@pytest.fixture
def plane() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]]:
    """A stub control plane: records POSTs; lists the services in `listing` (mutable)."""
    posts: list[tuple[str, dict[str, Any]]] = []
    listing: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps(
                listing
                if self.path.startswith("/api/v1/services")
                else {"now": "2026-12-05T12:00:00+08:00"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            posts.append((self.path, json.loads(raw)))
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", posts, listing
    finally:
        server.shutdown()


def test_a_held_request_is_reported_waiting_and_released_by_a_ready_replica(
    plane: tuple[str, list[tuple[str, dict[str, Any]]], list[dict[str, Any]]],
) -> None:
    url, posts, listing = plane

    async def scenario() -> Service | None:
        gw = Gateway(url, "t", site="shanghai-users", hold_s=30)
        gw.services = {"cold": Service("cold", 500.0, 4)}
        held = asyncio.create_task(gw._hold("cold"))
        await asyncio.sleep(0.05)
        assert gw.waiting == {"cold": 1} and gw._urgent
        await gw.report_load()
        load = [b for p, b in posts if p == "/api/v1/services/cold/load"]
        assert load and load[-1]["waiting"] == 1 and load[-1]["site"] == "shanghai-users"
        assert not held.done()
        replica = {"job_id": "j-1", "ready": True, "endpoint": "127.0.0.1:9", "center": "east"}
        listing.append({"name": "cold", "spec": {"chips": {"count": 1}}, "replicas": [replica]})
        await gw.refresh()
        svc = await asyncio.wait_for(held, 5)
        assert gw.waiting == {"cold": 0}
        return svc

    svc = aio.run(scenario())
    assert svc is not None and [r.key for r in svc.replicas] == ["j-1"]


def test_a_hold_gives_up_after_hold_s_with_no_replica() -> None:
    async def scenario() -> Service | None:
        gw = Gateway("http://127.0.0.1:9", "t", hold_s=0.2)
        gw.services = {"cold": Service("cold", 500.0, 4)}
        return await gw._hold("cold")

    svc = aio.run(scenario())
    assert svc is not None and svc.replicas == []


def test_a_service_with_a_ready_replica_is_not_held() -> None:
    async def scenario() -> Service | None:
        gw = Gateway("http://127.0.0.1:9", "t", hold_s=30)
        gw.services = {"s": Service("s", 500.0, 4, [Replica("a", "h:1", "east")])}
        return await asyncio.wait_for(gw._hold("s"), 1)

    assert aio.run(scenario()) is not None


def test_a_request_held_past_hold_s_gets_503_and_is_metered_as_an_error() -> None:
    async def scenario() -> tuple[list[dict[str, Any]], Gateway]:
        import httpx

        gw = Gateway("http://127.0.0.1:9", "t", hold_s=0.2)
        gw._upstream = httpx.AsyncClient()
        gw.services = {"cold": Service("cold", 500.0, 4)}
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"abc", "more_body": False}

        async def send(msg: Any) -> None:
            sent.append(dict(msg))

        scope = {"type": "http", "path": "/services/cold/v1/x", "method": "POST", "headers": []}
        await gw(scope, receive, send)
        await gw._upstream.aclose()
        return sent, gw

    sent, gw = aio.run(scenario())
    assert sent[0]["status"] == 503
    assert b"no replica is ready after 0.2 s" in sent[1]["body"]
    c = gw.meter.counts["cold"]
    assert (c.requests, c.errors, c.bytes_in) == (1, 1, 3)
    assert c.bytes_out == len(sent[1]["body"])
    assert gw.waiting == {"cold": 0}


def test_past_max_held_a_request_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from computenet.gateway import proxy

    monkeypatch.setattr(proxy, "MAX_HELD", 1)

    async def scenario() -> list[dict[str, Any]]:
        import httpx

        gw = Gateway("http://127.0.0.1:9", "t", hold_s=30.0)
        gw._upstream = httpx.AsyncClient()
        gw.services = {"cold": Service("cold", 500.0, 4)}
        gw.waiting = {"cold": 1}  # one request already held: the bound is reached
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"abc", "more_body": False}

        async def send(msg: Any) -> None:
            sent.append(dict(msg))

        scope = {"type": "http", "path": "/services/cold/v1/x", "method": "POST", "headers": []}
        await asyncio.wait_for(gw(scope, receive, send), 5)  # not held for 30 s
        await gw._upstream.aclose()
        return sent

    sent = aio.run(scenario())
    assert sent[0]["status"] == 503
    assert b"1 requests are already held" in sent[1]["body"]
