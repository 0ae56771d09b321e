"""`cnet gateway` refuses bad flags with one line and exit 2, before it says it is up."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from computenet.gateway import proxy
from computenet.sdk.testing import FakeAPI
from tests.unit.cli.conftest import Result

Cnet = Callable[..., Result]


@pytest.fixture(autouse=True)
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused flag must stop before serving; if a check lets one through, fail loudly."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the gateway started serving")

    monkeypatch.setattr(proxy, "serve", boom)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def one_line_error(r: Result, *words: str) -> str:
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_a_held_port_is_one_line_naming_port(fake: FakeAPI, cnet: Cnet, held_port: int) -> None:
    r = cnet("gateway", "--port", str(held_port))
    one_line_error(r, "--port", f"127.0.0.1:{held_port}")
    assert "gateway on" not in r.out


def test_site_without_network_says_network_is_missing(fake: FakeAPI, cnet: Cnet) -> None:
    r = cnet("gateway", "--site", "shanghai-users", "--port", "0")
    one_line_error(r, "--site", "needs --network")


def test_an_unknown_site_of_a_network_is_named(fake: FakeAPI, cnet: Cnet) -> None:
    r = cnet("gateway", "--network", "demo", "--site", "mars", "--port", "0")
    one_line_error(r, "--site", "'mars'")


def test_a_free_port_reaches_serving(fake: FakeAPI, cnet: Cnet) -> None:
    # The check must not refuse a port nobody holds: serving is reached (and stubbed).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AssertionError, match="started serving"):
        cnet("gateway", "--port", str(port))
