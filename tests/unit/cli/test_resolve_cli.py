"""`cnet resolve`: bad identifiers are one line and exit 2 before any call; good ones are
answered by a real control plane (in-process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from computenet.cli import common
from computenet.sdk.client import Client
from tests.unit.cli.conftest import Result
from tests.unit.server.conftest import Net, make_net


def _talk_to(monkeypatch: pytest.MonkeyPatch, net: Net) -> None:
    transport = net.client._transport  # the app in-process, as TestClient reaches it

    def make(url: str, tok: str | None = None, **kw: Any) -> Client:
        return Client(url, tok, transport=transport)

    monkeypatch.setattr(common, "Client", make)


@pytest.fixture
def served(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[Net, str]]:
    """The CLI's client talks to a real app; returns the plane and a user token."""
    for net in make_net(db_url):
        token = net.user()["Authorization"].removeprefix("Bearer ")
        _talk_to(monkeypatch, net)
        monkeypatch.setenv("CNET_CONFIG", str(tmp_path / "config.json"))
        monkeypatch.setenv("CNET_URL", "http://testserver")
        monkeypatch.setenv("CNET_TOKEN", token)
        yield net, token


@pytest.mark.parametrize("bad", ["shanghai", "demo..x", "demo.sh anghai", "job.j-1"])
def test_a_bad_identifier_is_one_line_exit_2(cnet: Any, bad: str) -> None:
    r: Result = cnet("resolve", bad, "--url", "http://127.0.0.1:1", "--token", "t")
    assert r.code == 2
    assert r.err.startswith("error: identifier: ") and r.err.count("\n") == 1
    assert r.out == ""


def test_a_center_and_a_pool_resolve(served: tuple[Net, str], cnet: Any) -> None:
    r = cnet("resolve", "demo.shanghai")
    assert r.code == 0, r.err
    assert "center shanghai" in r.out and "reach demo at http://testserver" in r.out
    chip = served[0].plane.network.center("shanghai").pools[0].chip
    r = cnet("resolve", f"demo.shanghai.pool.{chip}", "--json")
    assert r.code == 0, r.err
    assert f'"identifier": "demo.shanghai.pool.{chip}"' in r.out


def test_an_unknown_identifier_is_exit_2_naming_the_field(
    served: tuple[Net, str], cnet: Any
) -> None:
    r = cnet("resolve", "demo.atlantis")
    assert r.code == 2 and "identifier" in r.err and "atlantis" in r.err
