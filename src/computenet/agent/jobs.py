"""The jobs an agent holds, and the small JSON file that lets a restarted agent go on.

A held job moves through phases — ``leased`` → ``staging`` → ``ready`` →
``submitted`` → ``finished`` — and carries an *outbox*: the status, usage and
replica reports still to deliver, in order, plus log text read from the backend
but not yet shipped. Reports are removed only once the control plane took them,
so nothing is lost while it is down, and a job is forgotten only when finished
and fully reported.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from computenet.agent.checkpoints import CHECKPOINT_ENV
from computenet.agent.data import STAGING_DIR, env_name
from computenet.backends.local import BASE_ENV
from computenet.protocol import LeasedJob
from computenet.protocol.datapaths import name_problem, tenant_area

STATE_FILE = "agent-state.json"
PHASES = ("leased", "staging", "ready", "submitted", "finished")
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass
class HeldJob:
    """One leased job as the agent tracks it (persisted)."""

    job_id: str
    attempt: int
    leased: dict[str, Any]
    phase: str = "leased"
    handle: str | None = None
    outbox: list[dict[str, Any]] = field(default_factory=list)
    queued_states: list[str] = field(default_factory=list)
    log_offset: int = 0
    log_sent: int = 0
    log_buffer: str = ""
    input_paths: dict[str, str] = field(default_factory=dict)
    staging_real_s: float = 0.0
    bytes_staged: int = 0
    staged_from: str | None = None
    bytes_from: dict[str, int] = field(default_factory=dict)  # staging source → bytes it sent
    submitted_unix: float | None = None
    started_unix: float | None = None
    ended_unix: float | None = None
    errors: int = 0
    cancel_sent: bool = False
    service_port: int | None = None  # a service replica's port (agent/serving.py)
    # Stopped for preemption (heartbeat reply `preempt`): its checkpoint dir is kept.
    preempted: bool = False

    @classmethod
    def from_lease(cls, job: LeasedJob) -> HeldJob:
        """A new record for a job just leased."""
        return cls(
            job_id=job.job_id,
            attempt=job.attempt,
            leased=job.model_dump(mode="json", by_alias=True),
        )

    @property
    def key(self) -> str:
        """The backend idempotency key: one backend job per (job, attempt)."""
        return f"{self.job_id}:{self.attempt}"

    def lease(self) -> LeasedJob:
        """The lease as the control plane sent it."""
        return LeasedJob.model_validate(self.leased)

    def queue_status(
        self,
        state: str,
        *,
        exit_code: int | None = None,
        message: str = "",
        at: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Queue a status report once per state (`endpoint`: a ready service replica's)."""
        if state in self.queued_states:
            return
        self.queued_states.append(state)
        item: dict[str, Any] = {
            "kind": "status",
            "state": state,
            "exit_code": exit_code,
            "message": message,
            "at": at,
        }
        if endpoint is not None:
            item["endpoint"] = endpoint
        self.outbox.append(item)

    @property
    def done(self) -> bool:
        """Finished and fully reported: the agent can forget it."""
        return self.phase == "finished" and not self.outbox and not self.log_buffer

    @property
    def final_queued(self) -> bool:
        """A final state was queued."""
        return any(s in FINAL_STATES for s in self.queued_states)


def job_env(
    job: LeasedJob,
    center: str,
    data_dir: Path,
    input_paths: dict[str, str],
    time_scale: float,
    checkpoint_dir: Path | None = None,
) -> dict[str, str]:
    """The whole environment a job gets from the agent: an allow-list, nothing inherited.

    A plain ``PATH`` and ``LANG``, then the job's own ``spec.env``, then
    ``CNET_JOB_ID``, ``CNET_ATTEMPT``, ``CNET_CENTER``, ``CNET_CHIP``,
    ``CNET_CHIP_COUNT``, ``CNET_PLANNED_RUN_S``, ``CNET_TIME_SCALE``,
    ``CNET_DATA_DIR``, ``CNET_CHECKPOINT_DIR`` (where the center keeps checkpoints,
    agent/checkpoints.py) and one ``CNET_INPUT_<DATASET>`` per input. Backends add
    only the chip ids they assign (``CNET_CHIP_IDS``, ``CNET_VISIBLE_DEVICES``) and
    the job's ``HOME``/``TMPDIR``; none adds the agent's own environment, which
    holds the agent's credentials.
    """
    env = dict(BASE_ENV)
    env.update(job.spec.env)
    env.update(
        {
            "CNET_JOB_ID": job.job_id,
            "CNET_ATTEMPT": str(job.attempt),
            "CNET_CENTER": center,
            "CNET_CHIP": job.placement.chip,
            "CNET_CHIP_COUNT": str(job.placement.count),
            "CNET_PLANNED_RUN_S": f"{job.planned_run_s:g}",
            "CNET_TIME_SCALE": f"{time_scale:g}",
            "CNET_DATA_DIR": str(data_dir),
        }
    )
    if checkpoint_dir is not None:
        env[CHECKPOINT_ENV] = str(checkpoint_dir)
    for dataset, path in input_paths.items():
        env[env_name(dataset)] = path
    return env


def seal_tenant_area(data_root: Path, tenant: str, backend: object) -> None:
    """Make `tenant`'s replicas under `data_root` readable by that tenant's jobs only.

    Only for a backend whose jobs carry their tenant's data group (the local
    backend under a root agent, `tenant_gid`): the area ``tenants/<tenant>/``
    becomes root:<tenant gid> 0750, so other tenants' jobs — other uids, without
    that group — can neither enter nor list it, whatever the files' own modes.
    ``tenants/`` itself is 0711. Other backends' jobs keep the modes they had.
    """
    gid_of = getattr(backend, "tenant_gid", None)
    if not tenant or not callable(gid_of) or os.geteuid() != 0:
        return
    if name_problem(tenant) is not None:  # "..", "a/b": never a path outside the areas
        return
    area = data_root / tenant_area(tenant)
    if not area.is_dir() or area.is_symlink():
        return
    gid = int(gid_of(tenant))
    st = area.lstat()
    if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (0, gid, 0o750):
        os.chown(area, 0, gid, follow_symlinks=False)
        os.chmod(area, 0o750)
    os.chmod(area.parent, 0o711)


def load_state(state_dir: Path) -> tuple[dict[str, HeldJob], dict[str, Any]]:
    """Held jobs and other remembered values from the state file (empty when absent)."""
    try:
        data = json.loads((state_dir / STATE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return {}, {}
    jobs: dict[str, HeldJob] = {}
    for raw in data.get("jobs", []):
        try:
            held = HeldJob(**raw)
            held.lease()
        except (TypeError, ValueError):
            continue
        jobs[held.job_id] = held
    return jobs, dict(data.get("meta", {}))


def dump_state(jobs: dict[str, HeldJob], meta: dict[str, Any]) -> str:
    """The state file's text."""
    return json.dumps({"version": 1, "meta": meta, "jobs": [asdict(j) for j in jobs.values()]})


def write_state(state_dir: Path, text: str) -> None:
    """Write the state file atomically, readable by the agent's user only (0600).

    It holds other tenants' leases and the tickets to fetch their data.
    """
    tmp = state_dir / f"{STATE_FILE}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a left-over may have other modes: O_EXCL below creates it afresh
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, state_dir / STATE_FILE)


def prepare_state_dir(state_dir: Path, data_root: Path | None = None) -> None:
    """Create the agent's state dir (and data root) with modes that keep jobs out.

    0700 when the agent is not root. When it is, local jobs run as other uids and
    must reach their own work dirs and input files below these dirs, so they are
    0711: enterable, never listable; what is inside has its own, narrower modes.
    The data root's staging folder (every tenant's partial downloads) is 0700.
    """
    mode = 0o711 if os.geteuid() == 0 else 0o700
    state_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(state_dir, mode)
    # A data root the operator made (a shared dataset dir) keeps its modes.
    if data_root is not None and not data_root.exists():
        data_root.mkdir(parents=True)
        os.chmod(data_root, mode)
    if data_root is not None:  # partial downloads of every tenant: the agent's alone
        staging = data_root / STAGING_DIR
        staging.mkdir(mode=0o700, exist_ok=True)
        if not staging.is_symlink():
            os.chmod(staging, 0o700)
