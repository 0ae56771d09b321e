"""Exactly once under faults, with real processes (see tests/faults/harness.py for the checks).

Every scenario ends with `check`: each job ended exactly once (one terminal
state, SUCCEEDED), no two attempts of a job ran at once — by the server's
events and by the jobs' own records — a lost attempt was dead before it was
requeued, and each job is billed once. bench/faults_report.py runs the same
scenarios and prints docs/reliability.md's table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import scenarios
from tests.faults.harness import Cluster, check
from tests.helpers.services import require_service

pytestmark = pytest.mark.integration


def test_agents_sigkilled_repeatedly_while_jobs_run(cluster: Cluster) -> None:
    outcome, _ = scenarios.agents_killed(cluster)
    check(outcome, cluster)
    assert outcome.reruns() > 0  # the kills did cost attempts: the test did test something


def test_control_plane_sigkilled_mid_dispatch_and_restarted(any_db_cluster: Cluster) -> None:
    outcome, _ = scenarios.server_killed(any_db_cluster)
    check(outcome, any_db_cluster)


@pytest.mark.parametrize("mode", ["drop", "blackhole", "half-open"])
def test_a_partitioned_agent_loses_its_jobs_once_and_they_run_elsewhere(
    cluster: Cluster, mode: str
) -> None:
    outcome, _ = scenarios.partition(cluster, mode)
    check(outcome, cluster)
    assert outcome.reruns() > 0
    assert {r.center for runs in outcome.runs.values() for r in runs if r.ended} - {"east"}


def test_a_slow_link_costs_no_job(cluster: Cluster) -> None:
    outcome, _ = scenarios.slow_link(cluster)
    check(outcome, cluster)
    assert outcome.reruns() == 0


def test_an_outage_shorter_than_the_fence_kills_no_running_job(cluster: Cluster) -> None:
    outcome, _ = scenarios.brief_outage(cluster)
    check(outcome, cluster)
    assert outcome.reruns() == 0
    assert all(len(outcome.runs[j]) == 1 for j in outcome.ids)


def test_a_lost_lease_reply_sends_the_job_back_to_be_offered_again(cluster: Cluster) -> None:
    outcome, _ = scenarios.lease_reply_lost(cluster)
    check(outcome, cluster)
    assert all(int(outcome.details[j]["attempts"]) >= 2 for j in outcome.ids)
    # The lost attempts never ran anywhere: only the re-offered ones left records.
    assert all(r.attempt >= 2 for runs in outcome.runs.values() for r in runs)


def test_an_agent_restarted_without_its_state_stops_what_it_no_longer_holds(
    cluster: Cluster,
) -> None:
    outcome, _ = scenarios.agent_state_lost(cluster)
    check(outcome, cluster)
    # East's detached jobs were stopped, not finished, and ran again (once) elsewhere.
    assert any(not r.ended for runs in outcome.runs.values() for r in runs if r.center == "east")
    assert outcome.reruns() > 0


@pytest.mark.services
def test_slurmctld_restarted_mid_job_each_slurm_job_completes_once(tmp_path: Path) -> None:
    conf = require_service("slurm")["SLURM_CONF"]
    c = Cluster(tmp_path, f"sqlite:///{tmp_path / 'cnet.db'}", chip="CPU-node", centers=("east",))
    try:
        outcome, _ = scenarios.slurmctld_restarted(c, conf)
        check(outcome, c)
        assert outcome.reruns() == 0  # nothing was lost: the jobs ran on through the restart
    finally:
        c.stop()
