"""A job never sees the network's credentials: Slurm, Ray (real services) and the Kubernetes fake.

The test process plays the agent. It holds a center token in its own environment
(which the backend's commands inherit) and starts a child "agent" process with
another token in its environment; it writes the agent's state file (0600, owned by
the test's user, root here) and runs one job that prints a secret to its log. Then
a job prints its environment and tries ``/proc/<agent>/environ``, the state file
and the first job's log: it must get none of them, and must have really tried
(each attempt ends in "Permission denied", not in a missing file).

Jobs run as another user only when the agent runs as root (Slurm ``--uid``, the
Kubernetes pod's ``runAsUser``, the Ray cluster's own user), so without root only
the environment is checked. On Ray every job runs as the Ray cluster's user, so a
job's log is not private from another job's: that check is Slurm's and Kubernetes'
(docs/backends.md says what is and is not defended for each backend).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.backends.base import Backend, BackendState
from tests.contract.conftest import HARNESSES, Harness

PARAMS = [
    pytest.param("slurm", marks=[pytest.mark.services]),
    pytest.param("ray", marks=[pytest.mark.services]),
    pytest.param("kubernetes-fake"),
]


@pytest.fixture(params=PARAMS)
def isolated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Harness]]:
    """(backend name, harness) for each backend whose jobs must be isolated here."""
    for harness in HARNESSES[request.param](tmp_path):
        yield request.param, harness


@pytest.fixture
def agent_pid() -> Iterator[tuple[int, str]]:
    """A child "agent" process with a center token in its environment: (pid, token)."""
    token = f"cnc_agent_{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)"],
        env={**os.environ, "CNET_CENTER_TOKEN": token},
    )
    yield proc.pid, token
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def state_file() -> Iterator[tuple[Path, str]]:
    """The agent's state file, 0600, in a folder anyone may enter: (path, secret in it)."""
    folder = Path(tempfile.mkdtemp(prefix="cnet-agent-state-"))
    folder.chmod(0o755)  # only the file's own mode stands between a job and it
    secret = f"lease-ticket-{uuid.uuid4().hex}"
    path = folder / "agent-state.json"
    path.write_text(f'{{"ticket": "{secret}"}}')
    path.chmod(0o600)
    yield path, secret
    path.unlink()
    folder.rmdir()


def _other_log(name: str, backend: Backend, handle: str, tmp_path: Path, secret: str) -> Path:
    """Where the backend keeps the first job's log (as the agent sees it)."""
    if name == "slurm":
        return Path(backend._output(handle))  # type: ignore[attr-defined]
    hits = [p for p in (tmp_path / "k8s").glob("*.log") if secret in p.read_text()]
    assert len(hits) == 1, hits
    return hits[0]


def test_a_job_gets_its_own_env_and_none_of_the_agents_secrets(
    isolated: tuple[str, Harness],
    agent_pid: tuple[int, str],
    state_file: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name, harness = isolated
    own_token = f"cnc_self_{uuid.uuid4().hex}"
    monkeypatch.setenv("CNET_CENTER_TOKEN", own_token)  # the agent's own environment
    monkeypatch.setenv("CNET_CONFIG", str(state_file[0]))
    backend = harness.backend()
    as_root = os.geteuid() == 0

    log_secret = f"other-tenant-output-{uuid.uuid4().hex}"
    first = backend.submit(harness.job(f"echo {log_secret}"), f"k-iso-a-{uuid.uuid4().hex[:6]}")
    assert harness.wait_final(backend, first).state is BackendState.SUCCEEDED
    assert log_secret in harness.all_logs(backend, first)

    pid, agent_token = agent_pid
    path, state_secret = state_file
    tries = [f"/proc/{pid}/environ", str(path)]
    if name != "ray":  # Ray jobs all run as the Ray cluster's user (see module doc)
        other = _other_log(name, backend, first, tmp_path, log_secret)
        assert other.is_file()
        tries.append(str(other))
    # Markers printed from pieces: Ray's own env holds the command's text (its runtime env).
    script = ["echo BEGIN-'ENV'", "env", "echo END-'ENV'", "id"]
    for target in tries:
        script.append(f"echo TRY {target}; tr '\\0' '\\n' < {target} 2>&1 || true")
    script.append("echo DO'NE'")
    job = harness.job("; ".join(script), env={"OWN_SETTING": "mine"})
    second = backend.submit(job, f"k-iso-b-{uuid.uuid4().hex[:6]}")
    assert harness.wait_final(backend, second).state is BackendState.SUCCEEDED
    out = harness.all_logs(backend, second)

    assert "DONE" in out, out
    if name == "ray" and as_root and "uid=0(" in out:
        pytest.fail(
            "the Ray cluster runs its jobs as root, so they can read the agent's files and "
            "/proc: run Ray as an unprivileged user (scripts/services.sh does: stop and "
            f"start ray again)\n{out}"
        )
    env_part = out.split("BEGIN-ENV", 1)[1].split("END-ENV", 1)[0]
    assert "OWN_SETTING=mine" in env_part
    assert f"CNET_JOB_ID={job.job_id}" in env_part
    for secret in (own_token, agent_token):
        assert secret not in out, f"{name}: a job saw a center token:\n{out}"
    assert "CNET_CENTER_TOKEN" not in env_part and "CNET_CONFIG" not in env_part
    if not as_root:
        return  # jobs run as the agent's own user: its files are its jobs' (see module doc)
    for secret in (state_secret, log_secret):
        assert secret not in out, f"{name}: a job read the agent's files:\n{out}"
    assert "uid=0(" not in out, f"{name}: the job ran as root:\n{out}"
    assert out.count("Permission denied") == len(tries), out
