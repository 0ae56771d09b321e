"""The local backend beyond the contract: chip slots, process groups, orphans, restarts."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from computenet.backends.base import BackendJob, BackendState, BackendStatus
from computenet.backends.local import LocalBackend
from computenet.errors import BackendError, ValidationError
from tests.helpers.processes import pid_alive

FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}
SRC = str(Path(__file__).resolve().parents[3] / "src")


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "state", {"H100": 2, "CPU-node": 1}, grace_s=1.0)
    yield b
    b.close()


def job(command: str, chip: str = "H100", count: int = 1, job_id: str = "j1") -> BackendJob:
    return BackendJob(
        job_id=job_id, attempt=2, command=command, chip=chip, count=count, planned_run_s=12.5
    )


def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.05)


def final(backend: LocalBackend, handle: str) -> BackendStatus:
    status: list[BackendStatus] = []

    def done() -> bool:
        status[:] = [backend.poll([handle])[handle]]
        return status[0].state in FINAL

    wait_for(done)
    return status[0]


def test_job_is_told_its_chips_and_attempt_in_its_environment(backend: LocalBackend) -> None:
    names = ["CHIP", "CHIP_IDS", "VISIBLE_DEVICES", "JOB_ID", "ATTEMPT", "PLANNED_RUN_S"]
    cmd = 'echo "' + "|".join(f"$CNET_{n}" for n in names) + '"'
    handle = backend.submit(job(cmd, count=2), "j1:2")
    assert final(backend, handle).state is BackendState.SUCCEEDED
    assert backend.logs(handle)[0].strip() == "H100|0,1|0,1|j1|2|12.5"


def test_jobs_get_distinct_slots_and_a_full_pool_refuses_more(backend: LocalBackend) -> None:
    a = backend.submit(job("echo $CNET_CHIP_IDS; sleep 60", job_id="a"), "a:1")
    b = backend.submit(job("echo $CNET_CHIP_IDS; sleep 60", job_id="b"), "b:1")
    with pytest.raises(BackendError) as err:
        backend.submit(job("true", job_id="c"), "c:1")
    assert err.value.field == "count"
    assert {p.chip: p.free for p in backend.capacity()} == {"H100": 0, "CPU-node": 1}
    wait_for(lambda: bool(backend.logs(a)[0]) and bool(backend.logs(b)[0]))
    assert {backend.logs(a)[0].strip(), backend.logs(b)[0].strip()} == {"0", "1"}
    backend.cancel(a)
    final(backend, a)
    c = backend.submit(job("echo $CNET_CHIP_IDS", job_id="c"), "c:1")  # the freed slot
    final(backend, c)
    assert backend.logs(c)[0].strip() == backend.logs(a)[0].strip()


def test_a_chip_the_center_lacks_is_refused_with_its_pools(backend: LocalBackend) -> None:
    with pytest.raises(BackendError) as err:
        backend.submit(job("true", chip="Ascend-910B"), "x:1")
    assert err.value.field == "chip"
    assert "H100=2" in (err.value.hint or "")


def test_backend_needs_a_pool(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        LocalBackend(tmp_path, {})
    assert err.value.field == "pools"


def test_job_runs_in_its_own_work_dir_under_the_state_dir(
    backend: LocalBackend, tmp_path: Path
) -> None:
    handle = backend.submit(job("pwd; echo data > out.txt"), "w:1")
    final(backend, handle)
    workdir = Path(backend.logs(handle)[0].strip())
    assert workdir.is_relative_to(tmp_path / "state")
    assert (workdir / "out.txt").read_text() == "data\n"


def test_a_job_killed_by_a_signal_fails_with_128_plus_the_signal(backend: LocalBackend) -> None:
    handle = backend.submit(job("kill -9 $$"), "sig:1")
    status = final(backend, handle)
    assert (status.state, status.exit_code) == (BackendState.FAILED, 137)


def test_cancel_kills_the_whole_process_group(backend: LocalBackend, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    handle = backend.submit(job(f"sleep 300 & echo $! > {pidfile}; wait"), "pg:1")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    background = int(pidfile.read_text())
    assert pid_alive(background)
    backend.cancel(handle)
    assert final(backend, handle).state is BackendState.CANCELLED
    wait_for(lambda: not pid_alive(background))


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(
    backend: LocalBackend,
) -> None:
    handle = backend.submit(job("trap '' TERM; sleep 300 & wait; sleep 300"), "stubborn:1")
    wait_for(lambda: backend.pids(handle).get("pgid") is not None)
    backend.cancel(handle)
    assert final(backend, handle).state is BackendState.CANCELLED


def test_background_processes_die_when_the_job_ends(backend: LocalBackend, tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    handle = backend.submit(job(f"sleep 300 & echo $! > {pidfile}"), "leftover:1")
    assert final(backend, handle).state is BackendState.SUCCEEDED
    wait_for(lambda: not pid_alive(int(pidfile.read_text())))


def test_lost_supervisor_fails_the_job_and_kills_its_group(
    backend: LocalBackend, tmp_path: Path
) -> None:
    pidfile = tmp_path / "job.pid"
    handle = backend.submit(job(f"echo $$ > {pidfile}; sleep 300"), "lost:1")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    supervisor = backend.pids(handle)["supervisor"]
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    status = final(backend, handle)
    assert status.state is BackendState.FAILED
    assert "supervisor" in status.message
    wait_for(lambda: not pid_alive(int(pidfile.read_text())))


def test_logs_never_split_a_utf8_character(backend: LocalBackend) -> None:
    handle = backend.submit(job("true"), "utf8:1")
    final(backend, handle)
    log = Path(backend.state_dir / "jobs" / handle / "output.log")
    log.write_bytes("中".encode()[:2])
    assert backend.logs(handle, 0) == ("", 0)
    log.write_bytes("中文".encode())
    assert backend.logs(handle, 0) == ("中文", 6)
    assert backend.logs(handle, 3) == ("文", 6)


AGENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {src!r})
    from computenet.backends.local import LocalBackend
    from computenet.backends.base import BackendJob
    b = LocalBackend({state!r}, {{"H100": 1}}, grace_s=1.0)
    h = b.submit(BackendJob("orphan", 1, {command!r}, "H100", 1), "orphan:1")
    print(h, flush=True)
    if {detach!r}:
        b.close(keep_jobs=True)
        sys.exit(0)
    time.sleep(600)
    """
)


def _agent_process(state: Path, command: str, detach: bool) -> tuple[subprocess.Popen[str], str]:
    script = AGENT_SCRIPT.format(src=SRC, state=str(state), command=command, detach=detach)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_jobs_die_with_an_agent_killed_by_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "job.pid"
    proc, handle = _agent_process(tmp_path / "state", f"echo $$ > {pidfile}; sleep 300", False)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
        job_pid = int(pidfile.read_text())
        proc.kill()
        proc.wait()
        wait_for(lambda: not pid_alive(job_pid))
    finally:
        proc.kill()
        proc.wait()
    exit_file = tmp_path / "state" / "jobs" / handle / "exit.json"
    wait_for(exit_file.exists)
    exit_info = json.loads(exit_file.read_text())
    assert exit_info["reason"] == "orphaned"
    restarted = LocalBackend(tmp_path / "state", {"H100": 1})
    assert restarted.poll([handle])[handle].state is BackendState.FAILED


def test_detached_jobs_outlive_their_agent_and_are_reattached(tmp_path: Path) -> None:
    marker = tmp_path / "go"
    proc, handle = _agent_process(
        tmp_path / "state",
        f"echo started; while [ ! -e {marker} ]; do sleep 0.05; done; exit 5",
        True,
    )
    assert proc.wait(timeout=30) == 0
    restarted = LocalBackend(tmp_path / "state", {"H100": 1})
    try:
        assert restarted.find("orphan:1") == handle
        time.sleep(0.7)  # longer than the supervisor's owner check
        assert restarted.poll([handle])[handle].state is BackendState.RUNNING
        assert [p.free for p in restarted.capacity()] == [0]
        marker.touch()
        status = final(restarted, handle)
        assert (status.state, status.exit_code) == (BackendState.FAILED, 5)
        assert "started" in restarted.logs(handle)[0]
    finally:
        restarted.close()


def test_close_stops_every_live_job(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, {"H100": 2}, grace_s=1.0)
    handles = [b.submit(job("sleep 300", job_id=f"s{i}"), f"s{i}:1") for i in range(2)]
    b.close()
    assert {s.state for s in b.poll(handles).values()} == {BackendState.CANCELLED}


def test_finished_jobs_are_forgotten_after_the_retention_period(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path, {"H100": 1}, retention_s=0.0)
    handle = b.submit(job("true"), "old:1")
    final(b, handle)
    b.submit(job("true", job_id="new"), "new:1")  # saving prunes
    assert b.find("old:1") is None
    assert not (tmp_path / "jobs" / handle).exists()


# --------------------------------------------------------------------------- isolation

ROOT = os.geteuid() == 0


def test_a_job_gets_nothing_of_the_agents_environment(
    backend: LocalBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNET_CENTER_TOKEN", "cnc_agent_secret")
    monkeypatch.setenv("CNET_CONFIG", "/home/op/.config/computenet/config.json")
    handle = backend.submit(
        BackendJob("e", 1, "env", "H100", 1, env={"MINE": "yes"}, planned_run_s=1), "e:1"
    )
    assert final(backend, handle).state is BackendState.SUCCEEDED
    out = backend.logs(handle)[0]
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert "cnc_agent_secret" not in out and "CNET_CONFIG" not in names
    assert "MINE=yes" in out.splitlines()
    allowed = {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "SHLVL", "_", "MINE"}
    assert {n for n in names if not n.startswith("CNET_")} <= allowed, names


def test_work_dir_and_tmpdir_are_the_jobs_alone_and_the_log_the_agents(
    backend: LocalBackend,
) -> None:
    handle = backend.submit(job('echo "$(id -u) $HOME $TMPDIR"; touch "$TMPDIR/t" ~/h'), "d:1")
    assert final(backend, handle).state is BackendState.SUCCEEDED
    uid, home, tmp = backend.logs(handle)[0].split()
    jobdir = backend.state_dir / "jobs" / handle
    assert (Path(home), Path(tmp)) == (jobdir / "work", jobdir / "tmp")
    for d in (Path(home), Path(tmp)):
        st = d.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, int(uid))
    log = (jobdir / "output.log").stat()
    assert (stat.S_IMODE(log.st_mode), log.st_uid) == (0o600, os.geteuid())
    jobs_mode = stat.S_IMODE((backend.state_dir / "jobs").stat().st_mode)
    assert jobs_mode == (0o711 if ROOT else 0o700)  # never listable by others
    if ROOT:
        assert int(uid) != 0
    else:
        assert int(uid) == os.geteuid()


@pytest.fixture
def private_uids(tmp_path: Path) -> Iterator[LocalBackend]:
    """A backend with uids no other test's (or helper's) jobs use: nobody else sweeps them."""
    b = LocalBackend(tmp_path / "state", {"H100": 2}, grace_s=1.0, uid_base=59500, uid_count=4)
    yield b
    b.close()


@pytest.mark.skipif(not ROOT, reason="jobs get uids of their own only under a root agent")
def test_as_root_concurrent_jobs_get_distinct_unprivileged_uids(backend: LocalBackend) -> None:
    cmd = "id -u; grep NoNewPrivs /proc/self/status; sleep 60"
    handles = [backend.submit(job(cmd, job_id=f"u{i}"), f"u{i}:1") for i in range(2)]
    wait_for(lambda: all(len(backend.logs(h)[0].splitlines()) == 2 for h in handles))
    outs = [backend.logs(h)[0].split() for h in handles]
    uids = {int(o[0]) for o in outs}
    assert len(uids) == 2 and all(u >= 61000 for u in uids)
    assert all(o[1:] == ["NoNewPrivs:", "1"] for o in outs)


@pytest.mark.skipif(not ROOT, reason="only a uid of its own lets the backend find every process")
def test_as_root_a_process_that_left_the_jobs_group_dies_with_the_job(
    private_uids: LocalBackend, tmp_path: Path
) -> None:
    backend = private_uids
    pidfile = tmp_path / "escaped.pid"
    handle = backend.submit(job(f"setsid sleep 300 & echo $! > {pidfile}; sleep 0.5"), "esc:1")
    assert final(backend, handle).state is BackendState.SUCCEEDED
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    wait_for(lambda: not pid_alive(int(pidfile.read_text())))


def test_run_as_names_its_field_when_refused(tmp_path: Path) -> None:
    bad = "no-such-user-x" if ROOT else "dynamic"
    with pytest.raises(ValidationError) as err:
        LocalBackend(tmp_path, {"H100": 1}, run_as=bad)
    assert err.value.field == "run_as"
    if ROOT:
        with pytest.raises(ValidationError) as err:
            LocalBackend(tmp_path, {"H100": 1}, run_as="root")
        assert "root" in err.value.message


def test_stop_unheld_stops_what_no_agent_holds_and_keeps_the_rest(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "state", {"H100": 2}, grace_s=1.0)
    try:
        held = b.submit(job("sleep 300", job_id="held"), "held:1")
        orphan = b.submit(job("sleep 300", job_id="orphan"), "orphan:1")
        wait_for(lambda: all(b.pids(h).get("pgid") for h in (held, orphan)))
        assert b.stop_unheld({"held:1"}) == [orphan]
        assert final(b, orphan).state is BackendState.CANCELLED
        assert b.poll([held])[held].state is BackendState.RUNNING
    finally:
        b.close()


def test_stop_unheld_kills_a_job_whose_record_was_lost(tmp_path: Path) -> None:
    proc, handle = _agent_process(tmp_path / "state", "sleep 300", True)  # detached
    assert proc.wait(timeout=30) == 0
    child_file = tmp_path / "state" / "jobs" / handle / "child.json"
    wait_for(child_file.exists)
    child = json.loads(child_file.read_text())
    assert pid_alive(child["pid"])
    (tmp_path / "state" / "local-backend.json").unlink()  # the backend forgot it
    b = LocalBackend(tmp_path / "state", {"H100": 1}, grace_s=1.0)
    try:
        assert b.stop_unheld(set()) == [handle]
        wait_for(lambda: not pid_alive(child["pid"]))
    finally:
        b.close()


@pytest.mark.skipif(not ROOT, reason="only a uid of its own lets the backend find every process")
def test_as_root_a_lost_supervisors_escaped_process_is_killed_too(
    private_uids: LocalBackend, tmp_path: Path
) -> None:
    backend = private_uids
    pidfile = tmp_path / "escaped.pid"
    handle = backend.submit(job(f"setsid sleep 300 & echo $! > {pidfile}; sleep 300"), "lost2:1")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    escaped = int(pidfile.read_text())
    supervisor = backend.pids(handle)["supervisor"]
    assert supervisor is not None and pid_alive(escaped)
    os.kill(supervisor, signal.SIGKILL)
    assert final(backend, handle).state is BackendState.FAILED
    wait_for(lambda: not pid_alive(escaped))


def test_the_jobs_env_reaches_only_the_job_not_its_supervisor(backend: LocalBackend) -> None:
    # A tenant's LD_PRELOAD must not be loaded by the (possibly root) supervisor.
    env = {"LD_PRELOAD": "/nonexistent/evil.so", "MINE": "1"}
    # The job outlives the check, so that the supervisor is there to be read.
    handle = backend.submit(BackendJob("p", 1, "echo $MINE; sleep 1", "H100", 1, env=env), "p:1")
    wait_for(lambda: backend.pids(handle).get("pgid") is not None)
    supervisor = backend.pids(handle)["supervisor"]
    assert supervisor is not None
    # On a loaded machine it may still have ended (gone, or a zombie: ESRCH): fine.
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        environ = Path(f"/proc/{supervisor}/environ").read_bytes()
        assert b"LD_PRELOAD" not in environ and b"MINE" not in environ
    assert final(backend, handle).state is BackendState.SUCCEEDED
    # (ld.so warns, in the job, about the tenant's missing LD_PRELOAD: the job has it.)
    assert "1" in backend.logs(handle)[0].strip().splitlines()
    env_file = backend.state_dir / "jobs" / handle / "env.json"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


@pytest.mark.skipif(not ROOT, reason="directories are handed to a job's uid only as root")
def test_as_root_only_the_agents_checkpoint_dir_is_handed_to_the_job(
    backend: LocalBackend, tmp_path: Path
) -> None:
    # $CNET_CHECKPOINT_DIR in the env the user wrote names nothing the backend hands over:
    # only `BackendJob.checkpoint_dir`, which the agent sets, is the job's while it runs.
    os.chmod(tmp_path, 0o711)  # the job's uid passes through to both
    theirs, ckpt = tmp_path / "theirs", tmp_path / "ckpt"
    theirs.mkdir(mode=0o755)
    (theirs / "secret").write_text("root's")
    ckpt.mkdir(mode=0o700)
    command = f"touch {theirs}/stolen; touch {ckpt}/mine"
    j = BackendJob(
        job_id="c1",
        attempt=1,
        command=command,
        chip="H100",
        count=1,
        env={"CNET_CHECKPOINT_DIR": str(theirs)},
        checkpoint_dir=str(ckpt),
    )
    handle = backend.submit(j, "c1:1")
    final(backend, handle)
    assert not (theirs / "stolen").exists()  # never the job's, not even while it ran
    assert {p.stat().st_uid for p in (theirs, theirs / "secret")} == {0}
    assert (ckpt / "mine").exists()
    assert {p.stat().st_uid for p in (ckpt, ckpt / "mine")} == {0}  # ours again after the job


def test_a_detached_job_not_taken_back_by_its_deadline_stops_by_itself(tmp_path: Path) -> None:
    b = LocalBackend(tmp_path / "state", {"H100": 1}, grace_s=1.0)
    handle = b.submit(job("sleep 300", job_id="late"), "late:1")
    wait_for(lambda: b.pids(handle).get("pgid") is not None)
    pgid = b.pids(handle)["pgid"]
    assert pgid is not None
    b.detach_until = time.time() + 1.0  # the agent's fence, a second from now
    b.close(keep_jobs=True)
    assert pid_alive(pgid)
    wait_for(lambda: not pid_alive(pgid))
    again = LocalBackend(tmp_path / "state", {"H100": 1})
    status = final(again, handle)
    assert status.state is BackendState.FAILED and "agent" in status.message
