"""`cnet demo --serve --json` as a real subprocess: a service under a replayed trace through two
gateways, replicas up and back down, a center killed mid-run and requests served after it, the
replicas' bill, and no process it started left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.test_cli_demo import alive, processes_marked

pytestmark = [pytest.mark.integration, pytest.mark.own_db]


@pytest.mark.timeout(400)
def test_serve_demo_scales_survives_a_lost_center_and_bills_the_replicas(tmp_path: Path) -> None:
    env = dict(os.environ, CNET_CONFIG=str(tmp_path / "config.json"), COLUMNS="160")
    proc = subprocess.run(
        [sys.executable, "-m", "computenet.cli", "demo", "--serve", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=380,
    )
    assert proc.stdout.strip(), proc.stderr[-4000:]
    r = json.loads(proc.stdout)
    req = r["requests"]
    assert req["sent"] == r["trace"]["requests"] == 775
    assert req["served"] > 0 and req["served"] + req["errors"] == req["sent"]
    # The errors allowed are the streams cut when their replica's center died.
    assert req["errors"] <= req["error_bound"] * req["sent"], (req["errors_by_kind"], proc.stderr)
    assert (r["ok"], proc.returncode) == (True, 0), proc.stderr[-4000:]
    assert set(req["by_site"]) == {"shanghai-users", "chengdu-users"}
    assert all(v["served"] > 0 for v in req["by_site"].values())
    assert r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
    assert 0 < r["ttft_ms"]["p50"] <= r["latency_ms"]["p50"]

    # Replicas went up from one with the demand and back down once it fell.
    timeline = r["replicas"]["timeline"]
    assert timeline[0]["wanted"] == 1
    assert r["replicas"]["peak"] > 1 and r["checks"]["scaled_up"]
    assert r["checks"]["scaled_down"] and r["replicas"]["final"] < r["replicas"]["peak"]

    # The killed center held a replica; afterwards requests were answered elsewhere.
    kill = r["kill"]
    assert kill["center"] and kill["replicas_lost"]
    assert kill["served_after"] > 0 and kill["first_served_elsewhere_after_s"] is not None
    after = r["served_by_center"]["after_kill"]
    assert after and kill["center"] not in after

    # The gateways metered every request the load generator sent (per-request metering).
    assert r["metered"] is not None and r["metered"]["requests"] == req["sent"], r["metered"]

    # The bill: one line per replica job that reported its run, the cost their sum.
    cost = r["cost"]
    assert cost["lines"] and {ln["job_id"] for ln in cost["lines"]} <= set(r["replica_jobs"])
    assert Decimal(cost["total_cny"]) == sum(Decimal(ln["total_cny"]) for ln in cost["lines"])
    assert Decimal(cost["total_cny"]) > 0
    assert all(j["state"] in ("CANCELLED", "FAILED") for j in cost["jobs"])

    assert r["pids"] and [p for p in r["pids"] if alive(p)] == []
    assert processes_marked(f"CNET_DEMO_DIR={r['dir']}") == []
    assert not Path(r["dir"]).exists()
