"""`cnet up --port` held by another program (often another `cnet up`) is refused up front.

Without the check, `cnet up` wrote a config for the server already on that port
and failed with "Authorization: unknown, expired or revoked token".
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from computenet.cli import procs
from tests.unit.cli.conftest import Result

Cnet = Callable[..., Result]


def test_a_held_server_port_is_one_line_naming_port(
    cnet: Cnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network started")

    monkeypatch.setattr(procs, "start_network", boom)
    monkeypatch.setenv("CNET_CONFIG", str(tmp_path / "config.json"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        r = cnet("up", "demo", "--port", port, "--no-gateway", "--home", str(tmp_path / "h"))
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    assert "--port" in lines[0] and port in lines[0] and "in use" in lines[0], lines[0]
    assert not (tmp_path / "config.json").exists()
