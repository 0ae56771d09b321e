"""A real agent that claims more chips than its network declares is refused and exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from computenet.sdk import Client
from tests.helpers.processes import log_tail, start_server, stop_process
from tests.integration.test_agent_server import NETWORK

pytestmark = pytest.mark.integration


def test_an_agent_claiming_undeclared_chips_is_refused_and_exits(
    tmp_path: Path, db_url: str
) -> None:
    network = tmp_path / "network.yaml"
    network.write_text(NETWORK)  # east declares 2 A100
    url, admin, server = start_server(tmp_path, str(network), db=db_url)
    admin_client = Client(url, admin)
    try:
        token = tmp_path / "east.token"
        token.write_text(admin_client.center_token("east").token)
        token.chmod(0o600)
        log = tmp_path / "agent.log"
        cmd = [
            sys.executable, "-m", "computenet.agent", "--center", "east",
            "--server", url, "--token-file", str(token), "--slots", "A100=64",
            "--state-dir", str(tmp_path / "state"), "--data-root", str(tmp_path / "data"),
        ]  # fmt: skip
        with log.open("wb") as out:
            agent = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            )
        text = log_tail(log)
        assert agent.returncode == 2, text
        assert "registration failed: capacity[0].total" in text, text
        (east,) = [c for c in admin_client.centers() if c.id == "east"]
        assert not east.online  # nothing was stored
    finally:
        admin_client.close()
        stop_process(server)
