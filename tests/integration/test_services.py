"""scripts/services.sh: start, status and stop leave nothing running.

The script runs against its own state dir (not ./var/services), so this test
neither needs nor disturbs the services the rest of the suite uses. It starts
Slurm, Ray and PostgreSQL, gives Slurm and Ray a long job each, checks that a
second start changes nothing, then stops everything and looks through /proc
for anything left: the recorded PIDs, the daemons' marked children, the jobs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.services import REPO, in_ci, read_env_file

SCRIPT = REPO / "scripts" / "services.sh"
pytestmark = [pytest.mark.integration, pytest.mark.services, pytest.mark.timeout(900)]


def _needs_install() -> list[str]:
    tools = ["munged", "slurmctld", "slurmd", "sbatch", "slurmdbd", "mariadbd"]
    missing = [t for t in tools if shutil.which(t) is None]
    if not any(Path(p).exists() for p in ("/usr/lib/postgresql/15/bin/initdb",)):
        missing.append("initdb")
    return missing


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A fresh state dir under ./var (PostgreSQL's user must be able to reach it)."""
    missing = _needs_install()
    if missing and os.geteuid() != 0:
        msg = f"services.sh would install {', '.join(missing)}, which needs root"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    path = REPO / "var" / f"test-services-{uuid.uuid4().hex[:8]}"
    yield path
    # Whatever happened, leave nothing running, then remove the state.
    _services("stop", "all", path, check=False)
    shutil.rmtree(path, ignore_errors=True)


def _services(
    cmd: str, target: str, state: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVICES_DIR": str(state)}
    for var in ("SLURM_CONF", "RAY_ADDRESS", "CNET_SERVICES_DIR"):
        env.pop(var, None)
    proc = subprocess.run(
        ["bash", str(SCRIPT), cmd, target],
        env=env,
        capture_output=True,
        text=True,
        timeout=800,
        check=False,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"services.sh {cmd} {target} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def _pids(state: Path) -> dict[str, int]:
    """Every PID file the script wrote, by path relative to the state dir."""
    out = {}
    for f in state.rglob("*.pid"):
        text = f.read_text().split()
        if text and text[0].isdigit():
            out[str(f.relative_to(state))] = int(text[0])
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _holds_open(proc: Path, prefix: str) -> bool:
    try:
        fds = list((proc / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd).startswith(prefix):
                return True
        except OSError:
            pass
    return False


def _ours(state: Path, ray_tmp: str) -> list[tuple[int, str]]:
    """Processes carrying this state dir's marker, or running in it, or our jobs' sleeps.

    Also those with a file open in the Ray head's temp dir: Ray's agents blank their
    environment (setproctitle), so only their open logs tie them to this head.
    """
    marker = f"CNET_SERVICES_DIR={state}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if not _alive(int(entry.name)):
            continue
        if (
            marker in env
            or cwd.startswith(str(state))
            or "sleep 3117" in cmd
            or _holds_open(entry, ray_tmp)
        ):
            found.append((int(entry.name), cmd.strip()))
    return found


def test_start_status_stop_leaves_no_daemon_and_no_job_running(state_dir: Path) -> None:
    _services("start", "all", state_dir)
    status = _services("status", "all", state_dir)
    for daemon in (
        "munged",
        "mariadbd",
        "slurmdbd",
        "slurmctld",
        "slurmd",
        "ray: head",
        "postgres",
    ):
        assert f"{daemon}" in status.stdout and "stopped" not in status.stdout, status.stdout
    env = read_env_file(state_dir / "env.sh")
    assert env["SLURM_CONF"] == str(state_dir / "slurm" / "slurm.conf")
    assert env["RAY_ADDRESS"].startswith("http://127.0.0.1:")
    assert env["CNET_PG_URL"].startswith("postgresql+psycopg://postgres:")
    pids = _pids(state_dir)
    assert {
        "munge/munged.pid",
        "mariadb/mariadbd.pid",
        "slurm/slurmctld.pid",
        "slurm/slurmd.pid",
        "slurm/slurmdbd.pid",
        "ray/ray.pid",
        "postgres/postgres.pid",
    } <= set(pids)

    # Work in each service: a long Slurm job, a long Ray job, a PostgreSQL connection.
    slurm_env = {**os.environ, "SLURM_CONF": env["SLURM_CONF"]}
    jobid = subprocess.run(
        ["sbatch", "--parsable", "-J", "services-test", "-o", "/dev/null", "--wrap", "sleep 3117"],
        env=slurm_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    from ray.job_submission import JobSubmissionClient

    ray = JobSubmissionClient(env["RAY_ADDRESS"])
    ray_job = ray.submit_job(entrypoint="sleep 3117")
    import sqlalchemy as sa

    engine = sa.create_engine(env["CNET_PG_URL"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("select current_database()")).scalar() == "computenet"
    engine.dispose()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        slurm_state = subprocess.run(
            ["squeue", "-h", "-j", jobid, "-o", "%T"],
            env=slurm_env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        if slurm_state == "RUNNING" and str(ray.get_job_status(ray_job)) == "RUNNING":
            break
        time.sleep(0.5)
    else:
        pytest.fail("the Slurm and Ray jobs did not both start")

    # A second start is a no-op: same daemons, same PIDs.
    _services("start", "all", state_dir)
    assert _pids(state_dir) == pids

    ray_tmp = (state_dir / "ray" / "tempdir").read_text().strip() + os.sep
    # The temp-dir check must see Ray's processes while they run, or it proves nothing below.
    assert [p for p in Path("/proc").iterdir() if p.name.isdigit() and _holds_open(p, ray_tmp)]
    _services("stop", "all", state_dir)
    assert _services("status", "all", state_dir, check=False).returncode == 3
    deadline = time.monotonic() + 30
    left = _ours(state_dir, ray_tmp)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _ours(state_dir, ray_tmp)
    assert left == [], f"still running after stop: {left}"
    assert not [p for p in pids.values() if _alive(p)]
    assert not (state_dir / "env.sh").read_text().count("SLURM_CONF")
