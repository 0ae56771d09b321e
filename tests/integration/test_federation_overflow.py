"""Overflow up: a region offers its parent what it cannot run itself — real processes.

The national network ``cn`` has two centers: ``gba``, a whole regional
network joined by ``cnet agent --backend network``, and ``bj``, a machine
room (H100 and A100) run by a local agent. The region ``gba`` has one center
of its own (``sz``, two H100) and sees its parent as one more center, ``cn``
(tagged ``parent``), run by ``cnet agent --backend uplink``
(docs/federation.md, "Overflow up"). One federation serves every test (its
start is most of the time); each test leaves the region's chips free.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from computenet.errors import ComputeNetError
from computenet.model import JobState
from computenet.protocol import JobDetail, JobView
from computenet.sdk import Client
from tests.helpers.federation import center_agent, logs_under, network_agent, stop_all, until
from tests.helpers.processes import start_server

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

# The region: one center (dear: ¥10 per CU·h), and its parent as a center tagged `parent`
# (and `region`: it bills what the parent metered). It declares 4 H100 there; the parent
# has 2 outside gba.
REGION = """
name: gba
time_scale: 600
data_scale: 1
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 10,
     tags: [gba]}
  - {id: cn, region: cn, lat: 39.9, lon: 116.4,
     pools: [{chip: H100, count: 4}, {chip: A100, count: 2}], pue: 1.2,
     tariff: {flat: 0.3, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region, parent]}
links:
  - {a: sz, b: cn, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}
"""

# The nation: the region is its cheapest center, so only the pin keeps a job from going back.
NATIONAL = """
name: cn
time_scale: 600
data_scale: 1
centers:
  - {id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.2, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region]}
  - {id: bj, region: bj, lat: 39.9, lon: 116.4,
     pools: [{chip: H100, count: 2}, {chip: A100, count: 2}], pue: 1.2,
     tariff: {flat: 0.6, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
links:
  - {a: gba, b: bj, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}
"""


@dataclass
class Overflow:
    """Both planes, their agents, and the clients the tests act as."""

    tmp: Path
    region: Client  # a user of the region
    national: Client  # a user of the nation
    up: Client  # the nation's account the region's overflow runs as
    link: Client  # the region's account the nation's jobs run as
    region_url: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def logs(self) -> str:
        return logs_under(self.tmp)

    def sent_up(self, region_job: str) -> list[JobView]:
        """The nation's jobs made for region job `region_job` (any attempt)."""
        return [j for j in self.up.jobs() if j.name.startswith(f"gba/{region_job}:")]

    def wait(self, job_id: str, timeout: float = 90.0) -> JobDetail:
        return self.region.wait(job_id, poll_s=0.2, timeout_s=timeout)

    def reasons(self, job_id: str, who: Client | None = None) -> list[str]:
        """The region job's reasons once a cycle has looked at it (as `who`, default its user)."""
        client = who or self.region
        return until(
            f"a scheduler's reason for {job_id}",
            lambda: [r for r in client.job(job_id).reasons if "next scheduling" not in r],
            self.tmp,
        )

    def occupy(self, cu_hours: float) -> str:
        """A region job on both of sz's H100 for a long while (its plan holds the chips)."""
        pidfile = self.tmp / f"occupy-{uuid.uuid4().hex}.pid"
        view = self.region.submit(job(f"echo $$ > {pidfile}; sleep 300", 2, cu_hours=cu_hours))
        until("the occupier at sz", lambda: pidfile.exists() and pidfile.read_text(), self.tmp)
        assert self.region.job(view.id).center == "sz", self.logs()
        return view.id

    def release(self, *job_ids: str) -> None:
        """Cancel `job_ids` in the region and wait until sz's chips are free again."""
        for jid in job_ids:
            with contextlib.suppress(ComputeNetError):  # already final
                self.region.cancel(jid)
        until(
            "sz free again",
            lambda: all(
                int(p["free"]) == 2 for c in self.region.centers() if c.id == "sz" for p in c.pools
            ),
            self.tmp,
        )


def job(command: str, count: int = 1, chip: str = "H100", **over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "ovf",
        "class": "llm-train",
        "command": command,
        "chips": {"count": count, "types": [chip]},
        "work": {"cu_hours": over.pop("cu_hours", 0.5)},
    }
    spec.update(over)
    return spec


def _uplink_agent(
    tmp: Path, region_url: str, token: str, national_url: str, up_token_file: Path
) -> subprocess.Popen[bytes]:
    """`cnet agent --backend uplink`: the region's center `cn`, driving the nation's user API."""
    log = tmp / "region" / "agent-cn.log"
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", "cn", "--server", region_url, "--token", token,
        "--network", str(tmp / "region" / "region.yaml"),
        "--state-dir", str(tmp / "region" / "cn" / "state"),
        "--data-root", str(tmp / "region" / "cn" / "data"),
        "--backend", "uplink",
        "--backend-opt", f"url={national_url}",
        "--backend-opt", f"token_file={up_token_file}",
        "--backend-opt", "origin=gba",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def ovf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overflow]:
    tmp = tmp_path_factory.mktemp("overflow")
    home, top = tmp / "region", tmp / "national"
    home.mkdir()
    top.mkdir()
    (home / "region.yaml").write_text(REGION)
    (tmp / "national.yaml").write_text(NATIONAL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        fast = {"cycle_interval": 0.2, "heartbeat_interval": 0.3, "lease_timeout": 20.0}
        region_url, region_token, procs["region"] = start_server(
            home, str(home / "region.yaml"), **fast
        )
        national_url, national_token, procs["national"] = start_server(
            top, str(tmp / "national.yaml"), **fast
        )
        region_admin, national_admin = (
            Client(region_url, region_token),
            Client(national_url, national_token),
        )
        clients += [region_admin, national_admin]
        # The region's own user; the account the nation's jobs run as in the region.
        region_admin.create_tenant("acme")
        region = Client(region_url, region_admin.create_user("ann", "acme").token)
        region_admin.create_tenant("national")
        link = Client(region_url, region_admin.create_user("cn-link", "national").token)
        link_file = tmp / "gba-link.token"
        link_file.write_text(str(link.token))
        # The nation's user; the account the region's overflow runs as at the nation.
        national_admin.create_tenant("people")
        national = Client(national_url, national_admin.create_user("bo", "people").token)
        national_admin.create_tenant("gba")
        up_token = national_admin.create_user("gba-up", "gba").token
        up_file = tmp / "gba-up.token"
        up_file.write_text(up_token)
        for f in (link_file, up_file):
            os.chmod(f, 0o600)
        up = Client(national_url, up_token)
        clients += [region, national, up, link]

        region_net, national_net = home / "region.yaml", tmp / "national.yaml"
        procs["sz"] = center_agent(
            home, "sz", region_url, region_admin.center_token("sz").token, region_net
        )
        procs["bj"] = center_agent(
            top, "bj", national_url, national_admin.center_token("bj").token, national_net
        )
        procs["gba"] = network_agent(
            tmp,
            "gba",
            national_url,
            national_admin.center_token("gba").token,
            region_url,
            link_file,
        )
        procs["cn"] = _uplink_agent(
            tmp, region_url, region_admin.center_token("cn").token, national_url, up_file
        )
        fed = Overflow(tmp, region, national, up, link, region_url, procs)
        until("every center online", lambda: all(c.online for c in region.centers()), tmp)
        until("every center online", lambda: all(c.online for c in national.centers()), tmp)
        yield fed
    finally:
        stop_all(procs, clients)


def test_the_parent_seen_from_the_region_is_its_capacity_elsewhere(ovf: Overflow) -> None:
    (cn,) = [c for c in ovf.region.centers() if c.id == "cn"]
    assert cn.backend == "uplink"
    pools = {str(p["chip"]): p for p in cn.pools}
    # bj's 2 H100 — not gba's own 2, which the region would count twice (4 are declared).
    assert (pools["H100"]["total"], pools["A100"]["total"]) == (2, 2), ovf.logs()


def test_a_chip_the_region_lacks_runs_at_the_parent_once(ovf: Overflow) -> None:
    ok = ovf.region.submit(job('echo "hello from $CNET_CENTER for $CNET_ORIGIN_JOB"', chip="A100"))
    bad = ovf.region.submit(job("echo broken; exit 3", chip="A100"))
    done, failed = ovf.wait(ok.id), ovf.wait(bad.id)
    assert (done.state, done.center, done.exit_code) == (JobState.SUCCEEDED, "cn", 0), ovf.logs()
    assert (failed.state, failed.exit_code) == (JobState.FAILED, 3), ovf.logs()
    assert done.placement is not None
    assert done.placement.reasons[0].startswith("overflow to the parent network (center cn)")
    (up,) = ovf.sent_up(ok.id)  # exactly one job at the nation
    assert (up.name, up.state, up.center) == (f"gba/{ok.id}:1", JobState.SUCCEEDED, "bj")
    # The region's user sees the whole way: the region's center cn, then the nation's bj.
    assert [(h.network, h.center, h.job_id) for h in done.path or []] == [
        ("gba", "cn", ok.id),
        ("cn", "bj", up.id),
    ], done.path
    # Billed once, at the parent's price: the region bills its user what the nation metered.
    national_line = next(x for x in ovf.up.bill().lines if x.job_id == up.id)
    region_line = next(x for x in ovf.region.bill().lines if x.job_id == ok.id)
    assert national_line.total_cny > 0
    assert (region_line.energy_cny, region_line.service_cny, region_line.total_cny) == (
        national_line.energy_cny,
        national_line.service_cny,
        national_line.total_cny,
    )
    logs = "".join(ovf.region.follow_logs(ok.id, poll_s=0.2))
    assert logs == f"hello from bj for gba/{ok.id}\n"
    assert "broken" in "".join(ovf.region.follow_logs(bad.id, poll_s=0.2))


def test_spill_never_stays_pending_in_the_region_and_says_why(ovf: Overflow) -> None:
    view = ovf.region.submit(job("true", chip="A100", spill="never"))
    assert ovf.reasons(view.id) == [
        "spill: never keeps it in this network: only the parent network (center cn) could run"
        " it (set spill: allow to let it overflow there)"
    ]
    assert ovf.region.job(view.id).state is JobState.PENDING
    assert ovf.sent_up(view.id) == []
    ovf.region.cancel(view.id)
    with pytest.raises(ComputeNetError) as err:
        ovf.region.submit(job("true", spill="sometimes"))
    assert (err.value.status_code, err.value.field) == (422, "spill")


def test_a_deadline_the_region_would_miss_runs_at_the_parent(ovf: Overflow) -> None:
    occupier = ovf.occupy(cu_hours=5)  # about 7 h on sz's two H100
    try:
        view = ovf.region.submit(job("echo in time at $CNET_CENTER", deadline="4h"))
        done = ovf.wait(view.id)
        assert (done.state, done.center) == (JobState.SUCCEEDED, "cn"), ovf.logs()
        assert done.placement is not None
        assert "deadline in" in done.placement.reasons[0], done.placement.reasons
        (up,) = ovf.sent_up(view.id)
        assert (up.state, up.center) == (JobState.SUCCEEDED, "bj")
        assert "".join(ovf.region.follow_logs(view.id, poll_s=0.2)) == "in time at bj\n"
    finally:
        ovf.release(occupier)


def test_a_residency_bound_input_keeps_the_job_in_the_region(ovf: Overflow) -> None:
    data = b"rows that may not leave the region\n"
    path = ovf.tmp / "region" / "sz" / "data" / "tenants" / "acme" / "patients"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    ovf.region.add_dataset(
        "patients", "sz", "tenants/acme/patients", len(data), hashlib.sha256(data).hexdigest(),
        residency="gba",
    )  # fmt: skip
    view = ovf.region.submit(job("true", chip="A100", inputs=["patients"]))
    assert ovf.reasons(view.id) == ["inputs must stay in gba: no eligible center there"]
    assert ovf.region.job(view.id).state is JobState.PENDING
    assert ovf.sent_up(view.id) == []
    ovf.region.cancel(view.id)


def test_no_loop_a_job_delegated_down_is_never_sent_back_up(ovf: Overflow) -> None:
    # sz's own prices (¥10 per CU·h) are over a ¥1.50 budget; the parent's are not: a region
    # job with that budget goes up ...
    control = ovf.region.submit(job("echo control", budget_cny="1.50"))
    done = ovf.wait(control.id)
    assert (done.state, done.center) == (JobState.SUCCEEDED, "cn"), ovf.logs()
    assert [j.center for j in ovf.sent_up(control.id)] == ["bj"]
    # ... the same job from the nation, pinned to the region (the nation prices gba within
    # the budget), reaches the region and stays there: it is never sent back up.
    top = ovf.national.submit(job("echo never", center="gba", budget_cny="1.50"))
    (child,) = until(
        "the job delegated to the region",
        lambda: [j for j in ovf.link.jobs() if j.name.startswith(f"cn/{top.id}:")],
        ovf.tmp,
    )
    why = ovf.reasons(child.id, ovf.link)
    assert why[0].startswith("budget ¥1.50 but the cheapest option costs ¥5.59 at sz"), why
    assert why[1:] == [
        "not offered to the parent network: it came from another network"
        f" (CNET_ORIGIN_JOB=cn/{top.id}): not sent up again"
    ], why
    assert ovf.link.job(child.id).state is JobState.PENDING
    assert ovf.sent_up(child.id) == []
    assert [j.name for j in ovf.up.jobs() if top.id in j.name] == []
    ovf.national.cancel(top.id)


def test_the_parent_does_not_see_its_own_chips_in_the_regions_capacity(ovf: Overflow) -> None:
    occupier = ovf.occupy(cu_hours=5)
    try:

        def gba_free() -> int:
            (gba,) = [c for c in ovf.national.centers() if c.id == "gba"]
            return sum(int(p["free"]) for p in gba.pools)

        # sz is full: the region has nothing free of its own; bj's chips are the nation's.
        until("the nation to see gba full", lambda: gba_free() == 0, ovf.tmp, timeout=8.0)
    finally:
        ovf.release(occupier)
