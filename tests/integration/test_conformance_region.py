"""`cnet conformance` against a region-as-a-center: `cnet agent --backend network` passes every
scenario, staging included (docs/federation.md, "Inputs a region lacks").

Behind the agent is a real region: a control plane with two centers (``sz``, ``gz``, two H100
each: the kit's ``H100=4``) run by local agents, and the account the kit's jobs run as there.
The agent's ``inbox`` is ``sz``: it stages the kit's input from the kit's peer (ticket and
checksum checked, as any center does), places it in sz's data root and registers it in the
region, whose job then reads it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from computenet.conformance import SCENARIOS
from computenet.sdk import Client
from tests.helpers.federation import REGION, start_region, stop_all, until
from tests.integration.test_conformance import run_kit, traces_still_touched, verdicts

pytestmark = [pytest.mark.integration, pytest.mark.own_db]


def test_the_network_agent_passes_every_scenario(tmp_path: Path) -> None:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        region = start_region(tmp_path, "region", REGION, procs)
        clients += [region.admin, region.link]
        until(
            "the region's centers online",
            lambda: all(c.online for c in region.link.centers()),
            tmp_path,
        )
        inbox_root = tmp_path / "region" / "sz" / "data"
        agent = [
            sys.executable, "-m", "computenet.agent", "--backend", "network",
            "--backend-opt", f"url={region.url}",
            "--backend-opt", f"token_file={region.link_token_file}",
            "--backend-opt", "origin=kit",
            "--backend-opt", "inbox=sz",
            "--backend-opt", f"inbox_root={inbox_root}",
        ]  # fmt: skip
        done = run_kit(tmp_path, "--", *agent)
        assert done.returncode == 0, done.stdout + done.stderr
        assert verdicts(done.stdout) == dict.fromkeys(SCENARIOS, "PASS"), done.stdout
        assert f"{len(SCENARIOS)} of {len(SCENARIOS)} scenarios passed" in done.stderr

        # The region holds the input the agent staged, as a dataset of the account, at sz:
        # its bytes are the ones the kit's peer served (the kit's checksum), and the job that
        # read it ran in the region under the kit's origin-qualified name.
        (corpus,) = [d for d in region.link.datasets() if d.id == "corpus"]
        assert "sz" in {r.get("center") for r in corpus.replicas}, corpus
        placed = inbox_root / "tenants" / "national" / "corpus"
        assert placed.is_file() and placed.stat().st_size == corpus.size_bytes
        ran = [j for j in region.link.jobs() if j.name.startswith("kit/")]
        assert any(j.state.value == "SUCCEEDED" for j in ran), ran
        # The corrupt input was never handed to the region.
        assert "corrupt" not in {d.id for d in region.link.datasets()}
        assert traces_still_touched(tmp_path) == []
    finally:
        stop_all(procs, clients)
