"""A region is a center: a national control plane delegates to a regional one, real processes.

The national network has one center, ``gba``, which is a whole ComputeNet
network: its own control plane with two centers (``sz``, ``gz``) run by local
agents. ``cnet agent --backend network`` joins ``gba`` to the national plane
through the center protocol and drives the region through its user API
(docs/federation.md).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.model import JobState
from computenet.sdk import Client
from tests.helpers.federation import (
    Federation,
    all_logs,
    federation,
    job,
    logs_under,
    network_agent,
    start_region,
    stop_all,
    until,
)
from tests.helpers.processes import (
    pid_alive,
    start_server,
    stop_process,
    wait_http,
)
from tests.helpers.proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.own_db]


@pytest.fixture
def fed(tmp_path: Path) -> Iterator[Federation]:
    with federation(tmp_path) as f:
        yield f


def test_the_region_is_one_center_with_its_largest_job_shape(fed: Federation) -> None:
    (gba,) = fed.user.centers()
    assert gba.backend == "network"
    (pool,) = gba.pools
    # 2 + 2 free H100 in two centers: 4 free, and no job of more than 2 fits now.
    assert (pool["total"], pool["free"], pool["largest_free"]) == (4, 4, 2), fed.logs()
    now = fed.user.quote(job("true", count=2)).options[0]
    later = fed.user.quote(job("true", count=3)).options[0]
    assert now.planned_start <= fed.user.quote(job("true")).now
    assert later.planned_start > now.planned_start


def test_a_job_submitted_at_the_top_runs_in_a_regional_center(fed: Federation) -> None:
    view = fed.user.submit(job('echo "hello from $CNET_CENTER for $CNET_ORIGIN_JOB"', count=2))
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.center, done.exit_code) == (JobState.SUCCEEDED, "gba", 0), fed.logs()
    (child,) = fed.child_jobs(view.id)  # exactly one job in the region
    assert child.name == f"cn/{view.id}:1"
    assert (child.state, child.chips) == (JobState.SUCCEEDED, 2)
    assert child.center in ("sz", "gz")
    assert all_logs(fed.user, view.id) == f"hello from {child.center} for cn/{view.id}\n"


def test_a_failing_job_fails_at_the_top_with_the_regions_exit_code(fed: Federation) -> None:
    view = fed.user.submit(job("echo broken; exit 3"))
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.exit_code) == (JobState.FAILED, 3), fed.logs()
    assert "broken" in all_logs(fed.user, view.id)


def test_the_national_bill_is_what_the_region_metered(fed: Federation) -> None:
    view = fed.user.submit(job("sleep 1; echo done"))
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert done.state is JobState.SUCCEEDED, fed.logs()
    (child,) = fed.child_jobs(view.id)
    region_line = next(x for x in fed.link.bill().lines if x.job_id == child.id)
    national_line = next(x for x in fed.user.bill().lines if x.job_id == view.id)
    assert region_line.total_cny > 0
    assert (national_line.energy_cny, national_line.service_cny, national_line.total_cny) == (
        region_line.energy_cny,
        region_line.service_cny,
        region_line.total_cny,
    )


def test_cancel_at_the_top_cancels_the_regional_job(fed: Federation) -> None:
    pidfile = fed.tmp / "long.pid"
    view = fed.user.submit(job(f"echo $$ > {pidfile}; sleep 300"))
    until("the job to start in the region", lambda: pidfile.exists() and pidfile.read_text(), fed)
    fed.user.cancel(view.id)
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=45)
    assert done.state is JobState.CANCELLED, fed.logs()
    (child,) = fed.child_jobs(view.id)
    until(
        "the regional job cancelled",
        lambda: fed.link.job(child.id).state is JobState.CANCELLED,
        fed,
    )
    until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), fed)


def test_a_killed_network_agent_restarted_makes_no_second_regional_job(fed: Federation) -> None:
    go, pidfile = fed.tmp / "go", fed.tmp / "job.pid"
    command = (
        f"echo $$ > {pidfile}; echo started; while [ ! -e {go} ]; do sleep 0.05; done; echo end"
    )
    view = fed.user.submit(job(command))
    until("the job to start in the region", lambda: pidfile.exists() and pidfile.read_text(), fed)
    until("RUNNING at the top", lambda: fed.user.job(view.id).state is JobState.RUNNING, fed)

    fed.procs["gba"].send_signal(signal.SIGKILL)  # no goodbye, no cancel in the region
    fed.procs["gba"].wait()
    assert pid_alive(int(pidfile.read_text()))  # the region's job runs on
    fed.start_network_agent()  # same state dir: it finds its job in the region again
    go.touch()

    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), fed.logs()
    (child,) = fed.child_jobs(view.id)  # still exactly one regional job
    assert child.state is JobState.SUCCEEDED
    assert all_logs(fed.user, view.id) == "started\nend\n"


def test_a_region_cut_off_from_the_nation_stops_the_delegated_job(tmp_path: Path) -> None:
    with federation(tmp_path, national_lease_timeout=3.0) as fed:
        port = int(fed.national_url.rsplit(":", 1)[1])
        with TcpProxy(port) as proxy:
            stop_process(fed.procs["gba"])
            fed.start_network_agent(proxy.url)  # the region reaches the nation via the proxy
            until("gba online again", lambda: fed.user.centers()[0].online, fed)
            marker, pidfile = fed.tmp / "first-run", fed.tmp / "first.pid"
            command = (
                f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi;"
                " echo finished"
            )
            view = fed.user.submit(job(command))
            until("the first run to start", lambda: pidfile.exists() and pidfile.read_text(), fed)
            (first,) = fed.child_jobs(view.id)

            proxy.set_mode("blackhole")  # the region's uplink is cut, longer than the lease
            # Fenced by the agent's own lease rule: the regional job is cancelled there ...
            until(
                "the delegated job stopped in the region",
                lambda: fed.link.job(first.id).state is JobState.CANCELLED,
                fed,
            )
            until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), fed)
            # ... and the nation requeues it; once the link is back it runs again, once.
            until("requeued", lambda: fed.user.job(view.id).state is JobState.PENDING, fed)
            proxy.set_mode("pass")
            done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
            assert done.state is JobState.SUCCEEDED, fed.logs()
            children = fed.child_jobs(view.id)
            assert [c.state for c in children].count(JobState.SUCCEEDED) == 1, fed.logs()
            assert fed.link.job(first.id).state is JobState.CANCELLED
            assert len({c.name for c in children}) == len(children)  # one per attempt


def test_a_regional_plane_sigkilled_mid_run_and_restarted_completes_the_job_once(
    fed: Federation,
) -> None:
    go, pidfile = fed.tmp / "go", fed.tmp / "job.pid"
    command = f"echo $$ > {pidfile}; while [ ! -e {go} ]; do sleep 0.05; done; echo end"
    view = fed.user.submit(job(command))
    until("the job to start in the region", lambda: pidfile.exists() and pidfile.read_text(), fed)
    until("RUNNING at the top", lambda: fed.user.job(view.id).state is JobState.RUNNING, fed)

    region = fed.procs["region"]
    region.send_signal(signal.SIGKILL)  # the region's control plane vanishes mid-run
    region.wait()
    port = fed.region_url.rsplit(":", 1)[1]
    region_dir = fed.tmp / "region"
    cmd = [
        sys.executable, "-m", "computenet.server",
        "--db", f"sqlite:///{region_dir / 'cnet.db'}",
        "--host", "127.0.0.1", "--port", port,
        "--network", str(region_dir / "region.yaml"),
        "--cycle-interval", "0.2", "--heartbeat-interval", "0.3", "--lease-timeout", "20",
    ]  # fmt: skip
    with (region_dir / "server.log").open("ab") as out:
        fed.procs["region"] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_http(f"{fed.region_url}/healthz", fed.procs["region"], timeout=60)
    go.touch()

    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1), fed.logs()
    (child,) = fed.child_jobs(view.id)  # one regional job, run once
    assert (child.state, child.attempts) == (JobState.SUCCEEDED, 1)
    assert all_logs(fed.user, view.id) == "end\n"


def test_a_network_agent_killed_for_good_has_its_regional_job_stopped_at_its_fence(
    tmp_path: Path,
) -> None:
    with federation(tmp_path, national_lease_timeout=3.0) as fed:
        marker, pidfile = fed.tmp / "first-run", fed.tmp / "first.pid"
        command = (
            f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi;"
            " echo finished"
        )
        view = fed.user.submit(job(command))
        until("the first run to start", lambda: pidfile.exists() and pidfile.read_text(), fed)
        (first,) = fed.child_jobs(view.id)

        fed.procs["gba"].send_signal(signal.SIGKILL)  # nobody left to fence: its watchdog does
        fed.procs["gba"].wait()
        until(
            "the regional job cancelled",
            lambda: fed.link.job(first.id).state is JobState.CANCELLED,
            fed,
        )
        until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), fed)
        until("requeued at the top", lambda: fed.user.job(view.id).state is JobState.PENDING, fed)
        fed.start_network_agent()  # back: the next attempt runs, once
        done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
        assert (done.state, done.attempts) == (JobState.SUCCEEDED, 2), fed.logs()
        states = sorted(c.state.value for c in fed.child_jobs(view.id))
        assert states == ["CANCELLED", "SUCCEEDED"]


# Two regions of one center each; the nation prefers gba (cheaper power), and so do the
# regions' own quotes (docs/federation.md, The market): yrd's own power costs more too.
GBA_ONE = """
name: gba
time_scale: 600
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
links: []
"""
YRD_ONE = (
    GBA_ONE.replace("name: gba", "name: yrd")
    .replace("id: sz, region: gba", "id: sh, region: yrd")
    .replace("flat: 0.5", "flat: 0.8")
)
NATIONAL_TWO = """
name: cn
time_scale: 600
data_scale: 1
centers:
  - {id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.4, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region]}
  - {id: yrd, region: yrd, lat: 31.2, lon: 121.5, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.8, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region]}
links:
  - {a: gba, b: yrd, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}
"""


def test_a_region_partitioned_mid_run_the_job_completes_once_in_the_other(
    tmp_path: Path,
) -> None:
    (tmp_path / "national").mkdir()
    (tmp_path / "national.yaml").write_text(NATIONAL_TWO)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        gba = start_region(tmp_path, "gba-region", GBA_ONE, procs)
        yrd = start_region(tmp_path, "yrd-region", YRD_ONE, procs)
        clients += [gba.admin, gba.link, yrd.admin, yrd.link]
        url, token, procs["national"] = start_server(
            tmp_path / "national",
            str(tmp_path / "national.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=3.0,
        )
        admin = Client(url, token)
        admin.create_tenant("acme")
        user = Client(url, admin.create_user("ann", "acme").token)
        clients += [admin, user]
        with TcpProxy(int(url.rsplit(":", 1)[1])) as proxy:
            # gba reaches the nation through a link the test can cut; yrd directly.
            for name, region, via in (("gba", gba, proxy.url), ("yrd", yrd, url)):
                center_token = admin.center_token(name).token
                procs[name] = network_agent(
                    tmp_path, name, via, center_token, region.url, region.link_token_file
                )
            until("both regions online", lambda: all(c.online for c in user.centers()), tmp_path)

            marker, pidfile = tmp_path / "first-run", tmp_path / "first.pid"
            command = (
                f"if [ ! -e {marker} ]; then touch {marker}; echo $$ > {pidfile}; sleep 300; fi;"
                ' echo "finished at $CNET_CENTER"'
            )
            view = user.submit(job(command))
            until("the run in gba", lambda: pidfile.exists() and pidfile.read_text(), tmp_path)
            assert user.job(view.id).center == "gba"
            (first,) = [j for j in gba.link.jobs() if j.name.startswith(f"cn/{view.id}:")]

            proxy.set_mode("blackhole")  # gba is cut off from the nation mid-run, for good
            until(
                "gba's run stopped there",
                lambda: gba.link.job(first.id).state is JobState.CANCELLED,
                tmp_path,
            )
            until("its process gone", lambda: not pid_alive(int(pidfile.read_text())), tmp_path)

            done = user.wait(view.id, poll_s=0.2, timeout_s=60)
            assert (done.state, done.center) == (JobState.SUCCEEDED, "yrd"), logs_under(tmp_path)
            assert all_logs(user, view.id).endswith("finished at sh\n")
            # Exactly once: one run finished, in yrd; gba's was stopped; one national charge.
            ours = f"cn/{view.id}:"
            assert [j.state for j in gba.link.jobs() if j.name.startswith(ours)] == [
                JobState.CANCELLED
            ]
            assert [j.state for j in yrd.link.jobs() if j.name.startswith(ours)] == [
                JobState.SUCCEEDED
            ]
            assert [(x.job_id, x.center) for x in user.bill().lines] == [(view.id, "yrd")]
    finally:
        stop_all(procs, clients)
