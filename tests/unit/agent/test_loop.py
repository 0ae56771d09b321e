"""The agent loop against a fake control plane: leases, reports, cancels, outages, restarts."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from computenet.agent import Agent, AgentConfig, AgentFatal, run_agent
from computenet.agent.data import DataRoot, create_replica, expires_in, mint_ticket
from computenet.agent.endpoint import DataEndpoint
from computenet.backends.base import Backend, BackendState, BackendStatus
from computenet.backends.fake import FakeBackend, FakeCluster
from computenet.backends.local import LocalBackend
from computenet.protocol import StagingInput, StagingSource
from tests.helpers.processes import pid_alive
from tests.unit.agent.fakeplane import FakePlane, lease


@dataclass
class Running:
    agent: Agent
    thread: threading.Thread
    stop: threading.Event
    result: list[int]

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


class Agents:
    """Starts agents in threads against a FakePlane and stops them all at the end."""

    def __init__(self, plane: FakePlane, tmp_path: Path) -> None:
        self.plane, self.tmp_path, self.running = plane, tmp_path, []  # type: list[Running]

    def start(self, backend: Backend | None = None, **options: object) -> Running:
        config = AgentConfig(
            center="east",
            server="http://control.test",
            token="tok",
            state_dir=self.tmp_path / "agent",
            slots="H100=2",
            tick_s=0.03,
            lease_interval_s=0.05,
            max_backoff_s=0.3,
            **options,  # type: ignore[arg-type]
        )
        stop = threading.Event()
        agent = Agent(config, backend=backend, stop_event=stop, transport=self.plane.transport)
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
        thread.start()
        r = Running(agent, thread, stop, result)
        self.running.append(r)
        return r

    def close(self) -> None:
        for r in self.running:
            r.halt()


@pytest.fixture
def plane() -> FakePlane:
    return FakePlane()


@pytest.fixture
def agents(plane: FakePlane, tmp_path: Path) -> Iterator[Agents]:
    a = Agents(plane, tmp_path)
    yield a
    a.close()


def test_agent_registers_with_its_capacity_and_data_endpoint(
    plane: FakePlane, agents: Agents
) -> None:
    agents.start()
    plane.wait(lambda: bool(plane.heartbeats), what="a heartbeat")
    reg = plane.registrations[0]
    assert (reg.center_id, reg.backend) == ("east", "local")
    assert [(p.chip, p.total, p.free) for p in reg.capacity] == [("H100", 2, 2)]
    assert reg.data_url is not None and reg.data_url.startswith("http://127.0.0.1:")


def test_a_leased_job_runs_and_reports_running_logs_usage_and_success(
    plane: FakePlane, agents: Agents
) -> None:
    plane.queue.append(lease("job-1", 'echo "hello from $CNET_JOB_ID on $CNET_CHIP_IDS"'))
    agents.start()
    plane.wait(lambda: plane.final("job-1") is not None, what="the final state")
    assert plane.states("job-1") == ["RUNNING", "SUCCEEDED"]
    final = plane.final("job-1")
    assert final is not None and final.exit_code == 0 and final.attempt == 1
    assert plane.logs["job-1"] == "hello from job-1 on 0\n"
    (usage,) = plane.usage["job-1"]
    assert usage.run_real_s >= 0 and usage.bytes_staged == 0


def test_a_failing_job_is_reported_failed_with_its_exit_code(
    plane: FakePlane, agents: Agents
) -> None:
    plane.queue.append(lease("job-2", "echo broken >&2; exit 3"))
    agents.start()
    plane.wait(lambda: plane.final("job-2") is not None)
    final = plane.final("job-2")
    assert final is not None and (final.state, final.exit_code) == ("FAILED", 3)
    assert "broken" in plane.logs["job-2"]


def test_one_bad_job_does_not_stop_the_others(plane: FakePlane, agents: Agents) -> None:
    plane.queue += [lease("bad", "true", chip="TPU-v9"), lease("good", "echo fine")]
    agents.start()
    plane.wait(lambda: plane.final("bad") is not None and plane.final("good") is not None)
    bad, good = plane.final("bad"), plane.final("good")
    assert bad is not None and bad.state == "FAILED" and "TPU-v9" in bad.message
    assert good is not None and good.state == "SUCCEEDED"


def test_a_job_the_heartbeat_cancels_is_stopped_and_reported_cancelled(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    plane.queue.append(lease("long", f"echo $$ > {pidfile}; sleep 300"))
    agents.start()
    plane.wait(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    pid = int(pidfile.read_text())
    plane.cancel.add("long")
    plane.wait(lambda: not pid_alive(pid), what="the job's process to end")
    plane.wait(lambda: plane.final("long") is not None, what="the cancel to be confirmed")
    assert plane.states("long") == ["RUNNING", "CANCELLED"]
    plane.wait(lambda: "long" not in plane.heartbeats[-1].running, what="the job to be forgotten")


def test_reports_wait_while_the_control_plane_is_down(plane: FakePlane, agents: Agents) -> None:
    plane.down = True
    plane.queue.append(lease("patient", "echo still here"))
    agents.start()
    plane.wait(lambda: plane.calls >= 3, what="retries")
    assert plane.registrations == []
    plane.down = False
    plane.wait(lambda: plane.final("patient") is not None)
    assert plane.states("patient") == ["RUNNING", "SUCCEEDED"]
    assert plane.logs["patient"] == "still here\n"


def test_results_reached_during_an_outage_are_delivered_after_it(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    plane.queue.append(lease("outage", f"while [ ! -e {go} ]; do sleep 0.05; done; echo done"))
    agent = agents.start().agent
    plane.wait(lambda: plane.states("outage") == ["RUNNING"])
    plane.down = True
    go.touch()
    # The job ends while nobody can be told: its final report waits in its outbox.
    plane.wait(
        lambda: any(h.job_id == "outage" and h.final_queued for h in list(agent.jobs.values())),
        what="the end to be queued during the outage",
    )
    assert plane.failed  # the control plane was still unreachable then
    plane.down = False
    plane.wait(lambda: plane.final("outage") is not None)
    assert plane.states("outage") == ["RUNNING", "SUCCEEDED"]
    assert plane.logs["outage"] == "done\n"


def test_jobs_are_stopped_when_the_lease_must_have_expired(agents: Agents, tmp_path: Path) -> None:
    plane = FakePlane(lease_timeout_s=0.6)
    agents.plane = plane
    pidfile = tmp_path / "pid"
    plane.queue.append(lease("fenced", f"echo $$ > {pidfile}; sleep 300"))
    agents.start()
    plane.wait(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    pid = int(pidfile.read_text())
    plane.down = True  # no heartbeat gets through: the lease runs out
    plane.wait(lambda: not pid_alive(pid), what="the fenced job to be stopped")


def test_a_status_the_control_plane_refuses_drops_the_job(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    plane.refuse[("taken", "status")] = 409  # e.g. leased elsewhere meanwhile
    plane.queue.append(lease("taken", "sleep 300"))
    backend = LocalBackend(tmp_path / "b", {"H100": 2})
    agents.start(backend=backend)
    plane.wait(lambda: backend.find("taken:1") is not None)
    handle = backend.find("taken:1")
    assert handle is not None
    plane.wait(lambda: backend.poll([handle])[handle].state is BackendState.CANCELLED)
    plane.wait(lambda: plane.heartbeats[-1].running == [], what="the job to be forgotten")


def test_sigterm_style_stop_kills_the_jobs_and_frees_them(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    plane.queue.append(lease("abandoned", f"echo $$ > {pidfile}; sleep 300"))
    running = agents.start()
    plane.wait(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    running.halt()
    assert running.result == [0]
    assert not pid_alive(int(pidfile.read_text()))
    assert plane.heartbeats[-1].running == []  # told the control plane it holds nothing


def test_a_restarted_agent_reattaches_instead_of_starting_again(
    plane: FakePlane, agents: Agents
) -> None:
    cluster = FakeCluster()
    plane.queue.append(lease("sticky", "sleep 30; echo finished"))
    first = agents.start(backend=FakeBackend({"H100": 2}, cluster=cluster), keep_jobs=True)
    plane.wait(lambda: plane.states("sticky") == ["RUNNING"])
    first.halt()
    agents.start(backend=FakeBackend({"H100": 2}, cluster=cluster), keep_jobs=True)
    plane.wait(lambda: plane.final("sticky") is not None)
    assert cluster.submits == 1
    assert plane.states("sticky") == ["RUNNING", "SUCCEEDED"]
    assert plane.logs["sticky"] == "finished\n"


def test_a_restarted_agent_with_local_jobs_picks_them_up(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    plane.queue.append(lease("local-sticky", f"while [ ! -e {go} ]; do sleep 0.05; done; exit 4"))
    first = agents.start(keep_jobs=True)
    plane.wait(lambda: plane.states("local-sticky") == ["RUNNING"])
    first.halt()
    second = agents.start(keep_jobs=True)
    plane.wait(lambda: len(plane.registrations) == 2)
    go.touch()
    plane.wait(lambda: plane.final("local-sticky") is not None)
    final = plane.final("local-sticky")
    assert final is not None and (final.state, final.exit_code) == ("FAILED", 4)
    backend = second.agent.backend
    assert isinstance(backend, LocalBackend)
    assert len(list((tmp_path / "agent" / "backend" / "jobs").iterdir())) == 1


def test_inputs_are_staged_then_the_job_reads_them(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    source = DataEndpoint(DataRoot(tmp_path / "west-data")).start()
    source.data_key = "west-key"
    try:
        replica = create_replica(source.data_root.root, "corpus-v1", 200_000)
        item = StagingInput(
            dataset="corpus-v1",
            sha256=replica.sha256,
            size_bytes=replica.size_bytes,
            sources=[
                StagingSource(
                    center="west",
                    url=f"{source.url}/data/corpus-v1?path=corpus-v1",
                    # Bound to the fetching agent's center ("east"), which it names in a header.
                    ticket=mint_ticket(
                        "west-key",
                        dataset="corpus-v1",
                        path="corpus-v1",
                        center="east",
                        expires_unix=expires_in(60),
                    ),
                    bandwidth_gbps=10,
                    latency_ms=3,
                )
            ],
        )
        plane.queue.append(
            lease("reader", 'sha256sum "$CNET_INPUT_CORPUS_V1" | cut -c1-64', inputs=[item])
        )
        agents.start()
        plane.wait(lambda: plane.final("reader") is not None)
    finally:
        source.stop()
    assert plane.states("reader") == ["STAGING", "RUNNING", "SUCCEEDED"]
    assert plane.logs["reader"].strip() == replica.sha256
    ((dataset, report),) = plane.replicas
    assert (dataset, report.path, report.sha256) == ("corpus-v1", "corpus-v1", replica.sha256)
    (usage,) = plane.usage["reader"]
    assert (usage.bytes_staged, usage.staged_from) == (200_000, "west")
    assert [(t.source, t.bytes) for t in usage.transfers] == [("west", 200_000)]
    local = tmp_path / "agent" / "data" / "corpus-v1"
    assert hashlib.sha256(local.read_bytes()).hexdigest() == replica.sha256


def test_a_job_whose_inputs_cannot_be_staged_fails_with_the_reason(
    plane: FakePlane, agents: Agents
) -> None:
    item = StagingInput(
        dataset="nowhere",
        sha256="0" * 64,
        size_bytes=10,
        sources=[
            StagingSource(
                center="gone",
                url="http://127.0.0.1:9",
                ticket="1.0",
                bandwidth_gbps=1,
                latency_ms=1,
            )
        ],
    )
    plane.queue.append(lease("orphan-input", "true", inputs=[item]))
    agents.start()
    plane.wait(lambda: plane.final("orphan-input") is not None)
    assert plane.states("orphan-input") == ["STAGING", "FAILED"]
    final = plane.final("orphan-input")
    assert final is not None and "gone" in final.message


def test_refused_credentials_stop_the_agent(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "bad token", "field": "token", "hint": None})

    config = AgentConfig(
        center="east",
        server="http://control.test",
        token="wrong",
        state_dir=tmp_path,
        slots="H100=1",
    )
    agent = Agent(config, transport=httpx.MockTransport(refuse))
    with pytest.raises(AgentFatal) as err:
        agent.run()
    assert "bad token" in err.value.message


def test_run_agent_exits_2_on_bad_configuration(caplog: pytest.LogCaptureFixture) -> None:
    assert run_agent(center="east", server="not-a-url", token="t") == 2
    assert "server" in caplog.text


def test_a_job_cancelled_while_staging_is_reported_cancelled(
    plane: FakePlane, agents: Agents, tmp_path: Path
) -> None:
    source = DataEndpoint(DataRoot(tmp_path / "west-data")).start()
    source.data_key = "west-key"
    try:
        replica = create_replica(source.data_root.root, "big", 1_000_000)
        slow = StagingSource(
            center="west",
            url=f"{source.url}/data/big?path=big",
            ticket=mint_ticket(
                "west-key", dataset="big", path="big", center="east", expires_unix=expires_in(60)
            ),
            bandwidth_gbps=8e-6,
            latency_ms=3,
        )  # 1 kB/s
        item = StagingInput(
            dataset="big", sha256=replica.sha256, size_bytes=1_000_000, sources=[slow]
        )
        plane.queue.append(lease("slow", "true", inputs=[item]))
        agents.start()
        plane.wait(lambda: plane.states("slow") == ["STAGING"])
        plane.cancel.add("slow")
        plane.wait(lambda: plane.final("slow") is not None)
    finally:
        source.stop()
    assert plane.states("slow") == ["STAGING", "CANCELLED"]
    assert not (tmp_path / "agent" / "data" / "big").exists()


def test_an_agent_the_control_plane_forgot_registers_again(
    plane: FakePlane, agents: Agents
) -> None:
    agents.start()
    plane.wait(lambda: len(plane.heartbeats) >= 1)
    original = plane.handle
    forgotten = {"yes": True}

    def forget(request: httpx.Request) -> httpx.Response:
        if forgotten["yes"] and request.url.path in ("/center/v1/heartbeat", "/center/v1/lease"):
            forgotten["yes"] = False
            return httpx.Response(409, json={"error": "center 'east' has not registered"})
        return original(request)

    plane.handle = forget  # type: ignore[method-assign]
    plane.transport.handler = forget  # type: ignore[attr-defined]
    plane.wait(lambda: len(plane.registrations) == 2, what="a second registration")


# ------------------------------------------------------------------ the fencing rule


def test_a_job_that_ended_during_an_outage_past_the_fence_keeps_its_report(
    agents: Agents, tmp_path: Path
) -> None:
    plane = FakePlane(lease_timeout_s=0.8)  # the agent fences 0.4 s after its last ack
    agents.plane = plane
    go = tmp_path / "go"
    plane.queue.append(lease("ended", f"while [ ! -e {go} ]; do sleep 0.05; done; echo done"))
    agents.start()
    plane.wait(lambda: plane.states("ended") == ["RUNNING"])
    plane.down = True
    go.touch()
    time.sleep(1.2)  # well past the fence: the job had ended, its report waits
    plane.down = False
    plane.wait(lambda: plane.final("ended") is not None)
    assert plane.states("ended") == ["RUNNING", "SUCCEEDED"]


def test_an_outage_shorter_than_the_fence_stops_no_running_job(
    agents: Agents, tmp_path: Path
) -> None:
    plane = FakePlane(lease_timeout_s=4.0)  # fence after 2 s without an acknowledged heartbeat
    agents.plane = plane
    go, pidfile = tmp_path / "go", tmp_path / "pid"
    plane.queue.append(
        lease("steady", f"echo $$ > {pidfile}; while [ ! -e {go} ]; do sleep 0.05; done")
    )
    agents.start()
    plane.wait(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    plane.down = True
    time.sleep(0.8)  # not a wait: the outage's length (under the 2 s fence) is what is tested
    plane.down = False
    count = len(plane.heartbeats)
    plane.wait(lambda: len(plane.heartbeats) > count + 2, what="heartbeats again")
    assert pid_alive(int(pidfile.read_text()))
    go.touch()
    plane.wait(lambda: plane.final("steady") is not None)
    assert plane.states("steady") == ["RUNNING", "SUCCEEDED"]


class _SlowPoll(LocalBackend):
    """A local backend whose next poll blocks (like squeue while slurmctld restarts).

    `block`: the next poll blocks; `blocking` is set while it does, until `release`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.block, self.blocking, self.release = (threading.Event() for _ in range(3))

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        if self.block.is_set():
            self.block.clear()
            self.blocking.set()
            self.release.wait(timeout=60)
            self.blocking.clear()
        return super().poll(handles)


def test_heartbeats_go_on_while_the_backend_blocks(agents: Agents, tmp_path: Path) -> None:
    plane = FakePlane(lease_timeout_s=1.0)  # fence after 0.5 s: shorter than the block
    agents.plane = plane
    go, pidfile = tmp_path / "go", tmp_path / "pid"
    plane.queue.append(
        lease("blocked", f"echo $$ > {pidfile}; while [ ! -e {go} ]; do sleep 0.05; done")
    )
    backend = _SlowPoll(tmp_path / "b", {"H100": 2})
    agents.start(backend=backend)
    plane.wait(lambda: plane.states("blocked") == ["RUNNING"])
    backend.block.set()
    plane.wait(backend.blocking.is_set, what="the main loop to be stuck in poll")
    count = len(plane.heartbeats)
    # Five heartbeats (about 1 s at 0.2 s) while the poll is still blocked: past the
    # 0.5 s fence, so the lease was renewed all along and nothing was fenced.
    plane.wait(lambda: len(plane.heartbeats) >= count + 5, what="heartbeats during the block")
    assert backend.blocking.is_set()
    assert pid_alive(int(pidfile.read_text()))
    backend.release.set()
    go.touch()
    plane.wait(lambda: plane.final("blocked") is not None)
    assert plane.states("blocked") == ["RUNNING", "SUCCEEDED"]
