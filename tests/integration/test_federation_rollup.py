"""Roll-up across levels, real processes: what a user at the top sees of a delegated job.

A national plane ``cn`` over two regions, each a ComputeNet plane of its own
joined by ``cnet agent --backend network`` (docs/federation.md):

- ``gba`` (two centers ``sz``, ``gz`` of 2 H100 each, priced alike: a job
  never waits in the region for the other one), fee 5 %;
- ``yrd`` (one center ``sh`` of 2 H100), fee 2.5 %, whose own service price is
  far above what the nation declares for it — its own quote differs.

One federation serves every test of the module (starting eight processes is
the slow part); each test pins its jobs to a region with ``center``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest

from computenet.model import JobState
from computenet.protocol import JobDetail
from computenet.sdk import Client
from tests.helpers.federation import (
    Region,
    all_logs,
    logs_under,
    network_agent,
    start_region,
    stop_all,
    until,
)
from tests.helpers.processes import start_server

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

GBA = """
name: gba
time_scale: 600
data_scale: 1
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
  - {id: gz, region: gba, lat: 23.1, lon: 113.3, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
links:
  - {a: sz, b: gz, bandwidth_gbps: 10, latency_ms: 2, price_per_gb: 0.01}
"""

# The region's own service price: fifty times what the nation declares for it.
YRD = """
name: yrd
time_scale: 600
data_scale: 1
centers:
  - {id: sh, region: yrd, lat: 31.2, lon: 121.5, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.8, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 50}
links: []
"""

NATIONAL = """
name: cn
time_scale: 600
data_scale: 1
centers:
  - {id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{chip: H100, count: 4}], pue: 1.25,
     tariff: {flat: 0.6, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.55, service_price_per_cuh: 1.5,
     tags: [region, "fee:5%"]}
  - {id: yrd, region: yrd, lat: 31.2, lon: 121.5, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.8, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region, "fee:2.5%"]}
links:
  - {a: gba, b: yrd, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}
"""

FEES = {"gba": Decimal("0.05"), "yrd": Decimal("0.025")}
CORPUS = "the region's own copy\n"


@dataclass
class Nation:
    """The national plane, its user, and the two regions below it."""

    tmp: Path
    url: str
    user_token: str
    user: Client
    regions: dict[str, Region]

    def logs(self) -> str:
        return logs_under(self.tmp)


@pytest.fixture(scope="module")
def nation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    tmp = tmp_path_factory.mktemp("rollup")
    (tmp / "national").mkdir()
    (tmp / "national.yaml").write_text(NATIONAL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        regions = {
            "gba": start_region(tmp, "gba-region", GBA, procs),
            "yrd": start_region(tmp, "yrd-region", YRD, procs),
        }
        for r in regions.values():
            clients += [r.admin, r.link]
        url, token, procs["national"] = start_server(
            tmp / "national",
            str(tmp / "national.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=20.0,
        )
        admin = Client(url, token)
        admin.create_tenant("acme")
        user_token = admin.create_user("ann", "acme").token
        user = Client(url, user_token)
        clients += [admin, user]
        # A dataset inside gba: a file at sz, registered in gba under the nation's account,
        # and the same bytes registered at the top (at yrd, its owner's first copy).
        data = CORPUS.encode()
        digest = hashlib.sha256(data).hexdigest()
        at_sz = tmp / "gba-region" / "sz" / "data" / "tenants" / "national" / "corpus"
        at_sz.parent.mkdir(parents=True, exist_ok=True)
        at_sz.write_bytes(data)
        regions["gba"].link.add_dataset(
            "corpus", "sz", "tenants/national/corpus", len(data), digest
        )
        user.add_dataset("corpus", "yrd", "tenants/acme/corpus", len(data), digest)
        for name, region in regions.items():
            until(
                f"{name}'s centers online",
                lambda r=region: all(c.online for c in r.link.centers()),  # type: ignore[misc]
                tmp,
            )
            procs[name] = network_agent(
                tmp, name, url, admin.center_token(name).token, region.url, region.link_token_file
            )
        until("both regions online", lambda: all(c.online for c in user.centers()), tmp)
        yield Nation(tmp, url, user_token, user, regions)
    finally:
        stop_all(procs, clients)


def spec(command: str, region: str, count: int = 2, **more: Any) -> dict[str, Any]:
    return {
        "name": "rollup",
        "class": "llm-train",
        "command": command,
        "chips": {"count": count, "types": ["H100"]},
        "work": {"cu_hours": 0.5},
        "center": region,
        **more,
    }


def fen(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def cli(nation: Nation, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "computenet.cli", *argv, "--url", nation.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"CNET_TOKEN": nation.user_token, "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        check=False,
    )


def test_the_top_sees_the_path_live_logs_and_bills_the_regions_amount_plus_its_fee(
    nation: Nation,
) -> None:
    user, gba = nation.user, nation.regions["gba"]
    view = user.submit(spec('echo "start at $CNET_CENTER"; sleep 6; echo end', "gba"))

    def running_below() -> JobDetail | None:
        d = user.job(view.id)
        ok = d.path and len(d.path) == 2 and d.path[1].state == "RUNNING"
        return d if ok else None

    d = until("the job running inside gba, seen at the top", running_below, nation.tmp)
    top, below = d.path or []
    assert (top.network, top.center, top.job_id, top.chip, top.count) == (
        "cn",
        "gba",
        view.id,
        "H100",
        2,
    )
    (child,) = [j for j in gba.link.jobs() if j.name == f"cn/{view.id}:1"]
    assert (below.network, below.job_id, below.chip, below.count) == ("gba", child.id, "H100", 2)
    assert below.center in ("sz", "gz") and below.center == gba.link.job(child.id).center
    assert below.reason and below.center in below.reason  # "running at sz on 2× H100"
    assert d.reasons[0].startswith(f"gba: running at {below.center}")

    # Live: the first line reaches the top while the job still runs two levels down.
    until(
        "the first line of output at the top",
        lambda: (
            "start at" in user.logs(view.id, 0).text and user.job(view.id).state is JobState.RUNNING
        ),
        nation.tmp,
    )

    done = user.wait(view.id, poll_s=0.2, timeout_s=90)
    assert done.state is JobState.SUCCEEDED, nation.logs()
    assert all_logs(user, view.id) == f"start at {below.center}\nend\n"
    final = user.job(view.id)
    assert [(h.network, h.state) for h in final.path or []] == [
        ("cn", "SUCCEEDED"),
        ("gba", "SUCCEEDED"),
    ]
    assert final.reasons[0].startswith("succeeded at gba")  # a final job: its own reason

    # The national bill: the region's bill line to the fen, plus the declared 5 % on it.
    region_line = next(x for x in gba.link.bill().lines if x.job_id == child.id)
    national_line = next(x for x in user.bill().lines if x.job_id == view.id)
    fee = fen(region_line.total_cny * FEES["gba"])
    assert region_line.total_cny > 0 and fee > 0
    assert national_line.total_cny == region_line.total_cny + fee
    assert national_line.service_cny == region_line.service_cny + fee
    assert national_line.energy_cny == region_line.energy_cny
    assert final.usage["total_cny"] == str(region_line.total_cny + fee)  # metered, at the top

    # cnet status: the path, national → region → center → chips, with each level's reason.
    human = cli(nation, "status", view.id)
    assert human.returncode == 0, human.stderr
    assert "cn → gba on 2× H100" in human.stdout
    assert f"gba → {below.center} on 2× H100 · {child.id} SUCCEEDED" in human.stdout
    as_json = cli(nation, "status", view.id, "--json")
    assert as_json.returncode == 0, as_json.stderr
    path = json.loads(as_json.stdout)["path"]
    assert [(h["network"], h["center"], h["job_id"]) for h in path] == [
        ("cn", "gba", view.id),
        ("gba", below.center, child.id),
    ]


def test_a_job_waiting_in_a_region_shows_the_regions_reason_budget_and_deadline_at_the_top(
    nation: Nation,
) -> None:
    user, yrd = nation.user, nation.regions["yrd"]
    (nation.tmp / "probe.yaml").write_text(
        "name: probe\nclass: llm-train\ncommand: 'true'\nchips: {count: 2, types: [H100]}\n"
        "work: {cu_hours: 0.5}\n"
    )
    # The nation thinks yrd is cheap; yrd's own scheduler prices it fifty times higher.
    probe = spec("true", "yrd")
    ours = min(o.total_cny for o in user.quote(probe).options if o.center == "yrd")
    theirs = min(o.total_cny for o in yrd.link.quote({**probe, "center": None}).options)
    budget = fen(ours * 2)
    assert ours < budget < theirs  # the nation places it, the region will not run it

    # The market: beside its own estimate, the nation's quote shows each region's own
    # price (its rate card for 1 CU·h × the job's 0.5 CU·h) plus the region's fee.
    options = {o.center: o for o in user.quote({**probe, "center": None}).options}
    card = min(
        o.total_cny
        for o in yrd.link.quote(
            {**probe, "center": None, "chips": {"count": 1, "types": ["H100"]},
             "work": {"cu_hours": 1}}
        ).options
        if o.feasible
    )  # fmt: skip
    own = fen(card * Decimal("0.5"))
    assert options["yrd"].region_cny == own + fen(own * FEES["yrd"])
    assert options["gba"].region_cny is not None
    assert options["gba"].region_cny < options["yrd"].region_cny  # a user would pick gba
    assert options["yrd"].region_finish is not None
    table = cli(nation, "quote", str(nation.tmp / "probe.yaml"))
    assert "region ¥" in table.stdout, table.stdout + table.stderr
    view = user.submit(spec("echo never", "yrd", budget_cny=str(budget), deadline="30d"))

    def waiting_below() -> JobDetail | None:
        d = user.job(view.id)
        # (first "waiting for the next scheduling cycle", then the region's verdict)
        ok = d.path and len(d.path) == 2 and "budget" in (d.path[1].reason or "")
        return d if ok else None

    d = until("yrd's reason at the top", waiting_below, nation.tmp)
    top, below = d.path or []
    assert (top.center, top.position) == ("yrd", None)  # handed down: it waits in yrd
    assert d.queue_position is None
    assert below.state == "PENDING" and below.position == 1, d.path
    assert d.reasons[0].startswith("yrd: budget ¥"), d.reasons
    assert "raise the budget" in d.reasons[0]

    # Passed down: what is left of the budget, less yrd's fee; the same absolute deadline.
    (child,) = [j for j in yrd.link.jobs() if j.name == f"cn/{view.id}:1"]
    child_detail = yrd.link.job(child.id)
    assert child_detail.spec.budget_cny == fen(budget / (1 + FEES["yrd"]))
    assert d.deadline is not None and child.deadline is not None
    top_left = (d.deadline - datetime.fromisoformat(user.network()["now"])).total_seconds()
    yrd_left = (child.deadline - datetime.fromisoformat(yrd.link.network()["now"])).total_seconds()
    assert abs(top_left - yrd_left) < 1800, (top_left, yrd_left)  # 3 real s at ×600

    user.cancel(view.id)
    until(
        "the regional job cancelled",
        lambda: yrd.link.job(child.id).state is JobState.CANCELLED,
        nation.tmp,
    )


def test_each_regions_capacity_queue_and_a_jobs_queue_position_are_visible_at_the_top(
    nation: Nation,
) -> None:
    user, gba = nation.user, nation.regions["gba"]
    blockers = [user.submit(spec("sleep 120", r)) for r in ("gba", "gba", "yrd")]
    local = None
    try:
        until(
            "every blocker running two levels down",
            lambda: all(
                (p := user.job(b.id).path) and len(p) == 2 and p[1].state == "RUNNING"
                for b in blockers
            ),
            nation.tmp,
        )
        # gba's own queue: a job of the region's own users waits behind the nation's.
        local = gba.link.submit({**spec("true", "gba", count=1), "center": None})

        def pools() -> dict[str, dict[str, Any]] | None:
            got = {c.id: c.pools[0] for c in user.centers()}
            ok = got["gba"].get("queued", 0) >= 1 and got["yrd"].get("used") == 2
            return got if ok and got["gba"].get("used") == 4 else None

        seen = until("the regions' used chips and queue at the top", pools, nation.tmp)
        assert (seen["gba"]["free"], seen["yrd"]["free"]) == (0, 0)
        table = cli(nation, "centers")
        assert table.returncode == 0, table.stderr
        assert "4 used" in table.stdout and "queued inside" in table.stdout

        # The nation's own queue: two jobs for gba wait at the top, in order.
        waiting = [user.submit(spec("true", "gba")) for _ in range(2)]
        positions = until(
            "queue positions at the top",
            lambda: (got := [user.job(w.id).queue_position for w in waiting]) and all(got) and got,
            nation.tmp,
        )
        assert positions == [1, 2]
        first = user.job(waiting[0].id)
        assert (first.path or [])[0].position == 1
        shown = cli(nation, "status", waiting[1].id)
        assert "queue: number 2" in shown.stdout, shown.stdout
        for w in waiting:
            user.cancel(w.id)
    finally:
        for b in blockers:
            user.cancel(b.id)
        if local is not None:
            gba.link.cancel(local.id)


def test_a_dataset_inside_a_region_is_a_replica_of_it_at_the_top_and_feeds_its_jobs(
    nation: Nation,
) -> None:
    user, gba = nation.user, nation.regions["gba"]
    # gba's agent reports gba's copy as a replica of the region center (same id, same bytes).
    got = until(
        "gba's copy reported at the top",
        lambda: next(
            (r for d in user.datasets() if d.id == "corpus" for r in d.replicas
             if r["center"] == "gba"),
            None,
        ),
        nation.tmp,
    )  # fmt: skip
    assert got["path"] == "region:corpus"
    # A job reading it runs in gba on gba's copy: nothing is fetched to the agent.
    view = user.submit({**spec('cat "$CNET_INPUT_CORPUS"', "gba"), "inputs": ["corpus"]})
    done = user.wait(view.id, poll_s=0.2, timeout_s=90)
    assert done.state is JobState.SUCCEEDED, nation.logs()
    assert all_logs(user, view.id) == CORPUS
    (child,) = [j for j in gba.link.jobs() if j.name == f"cn/{view.id}:1"]
    assert list(gba.link.job(child.id).spec.inputs) == ["corpus"]
