"""Checkpoint-and-preempt at the agent: $CNET_CHECKPOINT_DIR, register `preempt`, and
jobs a heartbeat reply lists in `preempt` stopped like a cancel with their checkpoint kept."""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from computenet.agent import Agent, AgentConfig
from computenet.agent.checkpoints import KEEP_S, Checkpoints, job_owner, supports_preempt
from computenet.agent.jobs import HeldJob, dump_state, load_state
from computenet.agent.loop import PREEMPTED
from computenet.backends.fake import FakeBackend
from computenet.errors import ValidationError
from tests.unit.agent.fakeplane import FakePlane, lease


class PreemptPlane(FakePlane):
    """A FakePlane whose heartbeat replies list `preempt` (as a control plane would)."""

    def __init__(self) -> None:
        super().__init__()
        self.preempt: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        reply = super().handle(request)
        if request.url.path == "/center/v1/heartbeat" and self.preempt:
            body = reply.json()
            body["preempt"] = list(self.preempt)
            return httpx.Response(200, json=body)
        return reply


class Agents:
    """Agents in threads against one plane, all stopped at the end."""

    def __init__(self, plane: FakePlane, tmp_path: Path) -> None:
        self.plane, self.tmp_path = plane, tmp_path
        self.running: list[tuple[Agent, threading.Thread, threading.Event]] = []

    def config(self, **options: object) -> AgentConfig:
        return AgentConfig(
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

    def start(self, backend: object = None, **options: object) -> Agent:
        stop = threading.Event()
        agent = Agent(
            self.config(**options),
            backend=backend,  # type: ignore[arg-type]
            stop_event=stop,
            transport=self.plane.transport,
        )
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        self.running.append((agent, thread, stop))
        return agent

    def close(self) -> None:
        for _, thread, stop in self.running:
            stop.set()
            thread.join(timeout=30)
            assert not thread.is_alive()


@pytest.fixture
def plane() -> PreemptPlane:
    return PreemptPlane()


@pytest.fixture
def agents(plane: PreemptPlane, tmp_path: Path) -> Iterator[Agents]:
    a = Agents(plane, tmp_path)
    yield a
    a.close()


def _forgotten(plane: FakePlane, job_id: str, attempt: int = 1) -> bool:
    """The agent reported the end of the job's `attempt` and no longer lists it."""
    with plane.lock:
        ended = any(
            s.attempt == attempt and s.state in ("SUCCEEDED", "FAILED", "CANCELLED")
            for s in plane.statuses.get(job_id, [])
        )
        return ended and job_id not in plane.heartbeats[-1].running


# A job that saves a checkpoint, resumes from one, and notes SIGTERM in `marker`.
_CHECKPOINTING = (
    "trap 'echo term > {marker}; exit 143' TERM; "
    'echo "dir=$CNET_CHECKPOINT_DIR mode=$(stat -c %a "$CNET_CHECKPOINT_DIR")"; '
    'if [ -e "$CNET_CHECKPOINT_DIR/step" ]; then '
    'echo "resumed from $(cat "$CNET_CHECKPOINT_DIR/step")"; '
    "echo done; exit 0; fi; "
    'echo 41 > "$CNET_CHECKPOINT_DIR/step"; touch {started}; '
    "while true; do sleep 0.05; done"
)


@pytest.mark.parametrize("run_as", ["auto", "self"])
def test_a_preempted_job_stops_on_sigterm_keeps_its_checkpoint_and_resumes_from_it(
    plane: PreemptPlane, agents: Agents, tmp_path: Path, run_as: str
) -> None:
    # As root, "auto" runs each attempt as a uid of its own: the checkpoint still carries over.
    marker, started = tmp_path / "marker", tmp_path / "started"
    command = _CHECKPOINTING.format(marker=marker, started=started)
    plane.queue.append(lease("long", command, preemptible=True))
    agents.start(run_as=run_as)
    plane.wait(lambda: plane.registrations != [], what="registration")
    assert plane.registrations[0].preempt is True  # the local backend keeps checkpoints
    plane.wait(started.exists, what="the job to save its checkpoint")
    ckpt = tmp_path / "agent" / "checkpoints" / "long"
    assert (ckpt / "step").read_text() == "41\n"
    own_uid = run_as == "self" or os.geteuid() != 0
    assert (ckpt.stat().st_uid == os.geteuid()) is own_uid  # the job's uid while it runs

    plane.preempt = ["long", "long"]  # a duplicate is one stop
    plane.wait(lambda: plane.final("long") is not None, what="the preempted job's end")
    plane.preempt = []
    final = plane.final("long")
    assert final is not None and final.state == "CANCELLED"
    assert final.message.startswith(PREEMPTED)
    assert marker.read_text() == "term\n"  # SIGTERM reached the job, which could save
    assert plane.logs["long"].startswith(f"dir={ckpt} mode=700\n")
    plane.wait(lambda: _forgotten(plane, "long"), what="the job to be forgotten")
    assert (ckpt / "step").read_text() == "41\n"  # kept for the next attempt here
    # Between attempts no job's uid owns it (a uid per job is given to other jobs later).
    assert {ckpt.stat().st_uid, (ckpt / "step").stat().st_uid} == {os.geteuid()}

    plane.queue.append(lease("long", command, attempt=2, preemptible=True))
    plane.wait(lambda: _forgotten(plane, "long", attempt=2), what="the second attempt's end")
    states = [(s.attempt, s.state) for s in plane.statuses["long"]]
    assert states == [(1, "RUNNING"), (1, "CANCELLED"), (2, "RUNNING"), (2, "SUCCEEDED")]
    assert "resumed from 41\ndone\n" in plane.logs["long"]
    plane.wait(lambda: not ckpt.exists(), what="the checkpoint to go once the job ended")


def test_a_job_that_ends_by_itself_loses_its_checkpoint_dir(
    plane: PreemptPlane, agents: Agents, tmp_path: Path
) -> None:
    plane.queue.append(lease("short", 'echo saved > "$CNET_CHECKPOINT_DIR/x"; echo ok'))
    agents.start(run_as="self")
    plane.wait(lambda: _forgotten(plane, "short"), what="the job to end")
    final = plane.final("short")
    assert final is not None and final.state == "SUCCEEDED" and final.message == ""
    ckpt = tmp_path / "agent" / "checkpoints"
    plane.wait(lambda: not (ckpt / "short").exists(), what="its checkpoint to go")
    assert stat.S_IMODE(ckpt.stat().st_mode) in (0o700, 0o711)


def test_unknown_and_unsafe_ids_in_preempt_are_ignored(
    plane: PreemptPlane, agents: Agents, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    plane.queue.append(lease("steady", f"while [ ! -e {go} ]; do sleep 0.05; done; echo fine"))
    agents.start(run_as="self")
    plane.wait(lambda: plane.states("steady") == ["RUNNING"])
    plane.preempt = ["ghost", "../steady", ""]
    n = len(plane.heartbeats)
    plane.wait(lambda: len(plane.heartbeats) > n + 3, what="heartbeats with the stale ids")
    assert plane.states("steady") == ["RUNNING"]  # not stopped; the loop goes on
    go.touch()
    plane.wait(lambda: plane.final("steady") is not None)
    final = plane.final("steady")
    assert final is not None and final.state == "SUCCEEDED" and final.message == ""


@pytest.mark.parametrize("keeps_checkpoints", [True, False])
def test_preempt_stops_only_a_preemptible_job_where_checkpoints_are_kept(
    plane: PreemptPlane, agents: Agents, tmp_path: Path, keeps_checkpoints: bool
) -> None:
    # A control plane is checked, not believed: a job that did not agree to be preempted,
    # or any job of a center that registered no `preempt`, runs on (it would lose its work).
    plane.queue.append(lease("agreed", "sleep infinity", preemptible=True))
    plane.queue.append(lease("refused", "sleep infinity"))
    backend = FakeBackend({"H100": 2})
    backend.kind = "slurm"  # jobs on other nodes: checkpoints only with a shared dir
    shared = {"checkpoint_dir": tmp_path / "shared"} if keeps_checkpoints else {}
    agents.start(backend=backend, **shared)
    plane.wait(lambda: plane.states("agreed") == plane.states("refused") == ["RUNNING"])
    assert plane.registrations[0].preempt is (True if keeps_checkpoints else None)
    plane.preempt = ["agreed", "refused"]
    n = len(plane.heartbeats)
    plane.wait(lambda: len(plane.heartbeats) > n + 3, what="heartbeats listing both")
    if keeps_checkpoints:
        final = plane.final("agreed")
        assert final is not None and final.state == "CANCELLED"
        assert final.message.startswith(PREEMPTED)
    else:
        assert plane.states("agreed") == ["RUNNING"]
    assert plane.states("refused") == ["RUNNING"]


def test_a_job_preempted_before_it_started_is_reported_with_the_reason(
    plane: PreemptPlane, agents: Agents, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="computenet.agent.loop")
    go = tmp_path / "go"
    plane.queue.append(lease("holder", f"while [ ! -e {go} ]; do sleep 0.05; done"))
    agents.start(run_as="self")
    plane.wait(lambda: plane.states("holder") == ["RUNNING"])
    # It waits for both chips.
    plane.queue.append(lease("wide", "echo never", count=2, preemptible=True))
    plane.wait(lambda: "wide" in plane.heartbeats[-1].running, what="the wide job to be held")
    plane.preempt = ["wide"]
    plane.wait(lambda: plane.final("wide") is not None)
    final = plane.final("wide")
    assert final is not None and final.state == "CANCELLED"
    assert final.message == f"{PREEMPTED} before it started"
    assert "preempting wide for a shorter job" in caplog.text
    assert "wide" not in plane.logs
    go.touch()


def test_register_says_preempt_only_where_jobs_reach_their_checkpoints(
    plane: PreemptPlane, agents: Agents, tmp_path: Path
) -> None:
    # A Slurm-like backend (jobs on other nodes) without --checkpoint-dir: field left out.
    slurmish = FakeBackend({"H100": 2})
    slurmish.kind = "slurm"
    agent = agents.start(backend=slurmish)
    plane.wait(lambda: plane.registrations != [], what="registration")
    assert plane.registrations[0].preempt is None
    assert agent.checkpoints() is None
    agents.close()
    # With a shared --checkpoint-dir it says so.
    shared = FakeBackend({"H100": 2})
    shared.kind = "slurm"
    agent = agents.start(backend=shared, checkpoint_dir=tmp_path / "shared")
    plane.wait(lambda: len(plane.registrations) > 1, what="registration")
    assert plane.registrations[1].preempt is True
    store = agent.checkpoints()
    assert store is not None and store.root == tmp_path / "shared"


def test_which_backends_keep_checkpoints() -> None:
    def backend(kind: str, **attrs: object) -> object:
        return SimpleNamespace(kind=kind, **attrs)

    assert supports_preempt(backend("local"), explicit_dir=False)
    for kind in ("slurm", "ray", "kubernetes"):
        assert not supports_preempt(backend(kind), explicit_dir=False)
        assert supports_preempt(backend(kind), explicit_dir=True)
    for kind in ("network", "uplink"):  # a region hands the job to another control plane
        assert not supports_preempt(backend(kind), explicit_dir=True)
    other = os.geteuid() + 1
    assert job_owner(backend("slurm", run_as=(other, other))) == (other, other)
    assert job_owner(backend("slurm", run_as=None)) is None
    assert job_owner(backend("kubernetes", run_as_user=other, run_as_group=7)) == (other, 7)
    assert job_owner(backend("local", run_as=SimpleNamespace(uid=other, gid=other))) is None


def test_config_checkpoint_dir_defaults_under_the_state_dir(tmp_path: Path) -> None:
    base = {"center": "east", "server": "http://x", "token": "t", "state_dir": tmp_path}
    config = AgentConfig(**base)  # type: ignore[arg-type]
    assert config.checkpoint_dir == tmp_path.absolute() / "checkpoints"
    assert not config.checkpoint_dir_set
    config = AgentConfig(**base, checkpoint_dir=Path("rel"))  # type: ignore[arg-type]
    assert config.checkpoint_dir == Path.cwd() / "rel" and config.checkpoint_dir_set
    (tmp_path / "file").write_text("")
    with pytest.raises(ValidationError) as err:
        AgentConfig(**base, checkpoint_dir=tmp_path / "file")  # type: ignore[arg-type]
    assert err.value.field == "checkpoint_dir"
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o1777)  # like /tmp: any job could plant another job's directory there
    with pytest.raises(ValidationError) as err:
        AgentConfig(**base, checkpoint_dir=open_dir)  # type: ignore[arg-type]
    assert err.value.field == "checkpoint_dir" and "chmod go-w" in (err.value.hint or "")
    open_dir.chmod(0o755)
    assert AgentConfig(**base, checkpoint_dir=open_dir).checkpoint_dir == open_dir  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "job_id", ["../x", "a/b", "..", ".", "", ".hidden", "a\nb", "x" * 300, "é" * 128]
)
def test_a_job_id_that_is_no_safe_path_part_is_refused(tmp_path: Path, job_id: str) -> None:
    store = Checkpoints(tmp_path / "ckpt")
    with pytest.raises(ValidationError) as err:
        store.prepare(job_id)
    assert err.value.field == "job_id"
    assert not store.remove(job_id)
    assert not (tmp_path / "x").exists() and not (tmp_path / "ckpt").exists()


def test_a_leased_job_with_an_unsafe_id_fails_without_running(
    plane: PreemptPlane, agents: Agents, tmp_path: Path
) -> None:
    # ("../x" is refused the same way, test above; here an id the report URLs can carry.)
    plane.queue.append(lease(".evil", f"touch {tmp_path / 'ran'}"))
    agents.start(run_as="self")
    plane.wait(lambda: plane.final(".evil") is not None)
    final = plane.final(".evil")
    assert final is not None and final.state == "FAILED" and "checkpoint" in final.message
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "agent" / "checkpoints" / ".evil").exists()


def test_removing_never_follows_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    store = Checkpoints(tmp_path / "ckpt")
    job = store.prepare("job-1")
    assert stat.S_IMODE(job.stat().st_mode) == 0o700
    (job / "link").symlink_to(outside)
    (tmp_path / "ckpt" / "job-2").symlink_to(outside)
    assert not store.remove("job-2")  # a link where a directory should be: left alone
    with pytest.raises(ValidationError):
        store.prepare("job-2")
    assert store.remove("job-1")
    assert not job.exists() and (outside / "precious").read_text() == "keep"


def test_old_checkpoints_of_jobs_not_held_are_swept(tmp_path: Path) -> None:
    store = Checkpoints(tmp_path / "ckpt")
    for job_id in ("held", "recent", "old"):
        store.prepare(job_id)
    long_ago = time.time() - KEEP_S - 60
    for job_id in ("held", "old"):
        os.utime(store.path(job_id), (long_ago, long_ago))
    assert store.sweep({"held"}) == ["old"]
    assert sorted(p.name for p in store.root.iterdir()) == ["held", "recent"]


def test_a_background_removal_sets_the_directory_aside_at_once(tmp_path: Path) -> None:
    # The agent removes an ended job's checkpoint off its loop: renamed aside now, deleted
    # by a thread; a next attempt of the job gets a fresh directory meanwhile.
    store = Checkpoints(tmp_path / "ckpt")
    job = store.prepare("job-1")
    (job / "state").write_text("old")
    assert store.remove("job-1", background=True)
    assert not job.exists()
    assert list(store.prepare("job-1").iterdir()) == []
    deadline = time.monotonic() + 10
    while sorted(p.name for p in store.root.iterdir()) != ["job-1"]:
        assert time.monotonic() < deadline, "the directory set aside was never deleted"
        time.sleep(0.02)
    left = store.root / ".removing-0123"  # set aside by an agent that died meanwhile
    left.mkdir()
    (left / "state").write_text("old")
    assert store.sweep({"job-1"}) == []
    assert sorted(p.name for p in store.root.iterdir()) == ["job-1"]


def test_a_cancel_wins_over_a_preemption(plane: PreemptPlane, agents: Agents) -> None:
    plane.queue.append(lease("both", "sleep 300", preemptible=True))
    agents.start(run_as="self")
    plane.wait(lambda: plane.states("both") == ["RUNNING"])
    ckpt = agents.tmp_path / "agent" / "checkpoints" / "both"
    assert ckpt.is_dir()
    plane.cancel.add("both")
    plane.preempt = ["both"]
    plane.wait(lambda: _forgotten(plane, "both"), what="the job to end")
    final = plane.final("both")
    assert final is not None and final.state == "CANCELLED"
    assert PREEMPTED not in final.message
    plane.wait(lambda: not ckpt.exists(), what="the cancelled job's checkpoint to go")


@pytest.mark.skipif(os.geteuid() != 0, reason="hands files to another uid")
def test_the_supervisor_hands_over_only_plain_files_and_never_follows_links(
    tmp_path: Path,
) -> None:
    from computenet.backends._supervisor import _hand_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("root's")
    ckpt = tmp_path / "ckpt"
    (ckpt / "sub").mkdir(parents=True)
    (ckpt / "sub" / "state").write_text("1")
    (ckpt / "linked").hardlink_to(outside / "precious")  # as a job could plant one
    (ckpt / "out").symlink_to(outside)
    uid = 61999
    _hand_tree(str(ckpt), uid, uid, {0})
    assert [p.stat().st_uid for p in (ckpt, ckpt / "sub", ckpt / "sub" / "state")] == [uid] * 3
    assert (ckpt / "out").lstat().st_uid == uid
    assert (outside / "precious").stat().st_uid == 0  # neither through the link nor the hardlink
    assert outside.stat().st_uid == 0
    _hand_tree(str(ckpt), 0, 0, {uid})  # and back
    assert {p.lstat().st_uid for p in ckpt.rglob("*")} | {ckpt.stat().st_uid} == {0}


def test_a_restarted_agent_remembers_a_job_was_preempted(tmp_path: Path) -> None:
    held = HeldJob.from_lease(lease("j", "true"))
    held.preempted = True
    (tmp_path / "agent-state.json").write_text(dump_state({"j": held}, {}))
    jobs, _ = load_state(tmp_path)
    assert jobs["j"].preempted
