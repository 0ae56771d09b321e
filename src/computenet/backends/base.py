"""The backend contract every center adapter implements (local, Slurm, Ray, Kubernetes, fake).

One contract test suite (tests/contract/) runs against every implementation.
"""

from __future__ import annotations

import logging
import pwd
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Flag, StrEnum, auto
from typing import Protocol, runtime_checkable

from computenet.errors import ValidationError
from computenet.model import JobSpec
from computenet.protocol import PoolCapacity

logger = logging.getLogger(__name__)


class Capability(Flag):
    """What a backend can do, declared once and checked in one place."""

    NONE = 0
    CANCEL = auto()
    LOGS = auto()
    REATTACH = auto()  # finds its jobs again after an agent restart
    ACCELERATORS = auto()  # maps chips to real devices (GRES, resource limits)
    # Reports usage from the local scheduler's own records: a backend with it may have
    # `accounting(handle) -> protocol.center.SchedulerUsage | None`, which the agent
    # puts into the usage report (`UsageReport.scheduler`) when the job ends.
    ACCOUNTING = auto()


class BackendState(StrEnum):
    """A backend job's state as the local scheduler reports it."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class BackendJob:
    """What the agent hands a backend: a command, its environment and its chips."""

    job_id: str
    attempt: int
    command: str
    chip: str
    count: int
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    planned_run_s: float = 0.0
    tenant: str = ""  # whose job: the local backend gives it that tenant's data group
    # The job as its user wrote it: a backend that hands the job to another ComputeNet
    # network (backends/network.py) submits it there; the others need only the fields above.
    spec: JobSpec | None = None
    # The parent's absolute deadline (real unix seconds) and what is left of the budget
    # (`LeasedJob.deadline_real`, `budget_left_cny`): a region's scheduler keeps to them.
    deadline_real: float | None = None
    budget_cny: Decimal | None = None
    # The job's checkpoint directory, made by the agent (agent/checkpoints.py; also in
    # `env` as $CNET_CHECKPOINT_DIR for the job). A field, not read back from `env`,
    # which carries the user's own variables: the local backend hands this directory
    # to the job's uid while it runs, so only the agent may name it.
    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class BackendStatus:
    """One poll result."""

    handle: str
    state: BackendState
    exit_code: int | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str = ""


@runtime_checkable
class Backend(Protocol):
    """Runs jobs on one center's resources.

    Contract:
    - `capacity()` returns every chip pool with total and currently free chips.
    - `submit(job, key)` starts `job` and returns a handle; called again with the
      same `key` it returns the same handle and starts nothing new.
    - `poll(handles)` returns a status for every handle it knows; unknown handles
      map to `BackendState.UNKNOWN`, never raise.
    - `cancel(handle)` stops the job; cancelling a finished or unknown job is a no-op.
    - `logs(handle, offset)` returns (text from byte `offset`, next offset).
    - `find(key)` returns the handle for an idempotency key, so a restarted agent
      re-attaches to what it started instead of starting it twice.
    - `list_jobs()` returns {idempotency key: handle} of every job this backend
      submitted for its center that the local scheduler still knows (labels,
      job names, metadata or the backend's own records), so an agent that lost
      its state file finds the jobs it no longer holds and stops them.
    - `close(keep_jobs)` releases the backend; without `keep_jobs` the jobs it
      supervises itself (local, fake) stop. Jobs owned by an external scheduler stay.
    Raises `computenet.errors.BackendError` when the local scheduler fails.
    """

    kind: str
    capabilities: Capability

    def capacity(self) -> list[PoolCapacity]:
        """Chip pools with total and free counts."""
        ...

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Start `job` (idempotently) and return its handle."""
        ...

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """Status of each handle."""
        ...

    def cancel(self, handle: str) -> None:
        """Stop the job; idempotent."""
        ...

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """Output from byte `offset` on, and the next offset."""
        ...

    def find(self, idempotency_key: str) -> str | None:
        """The handle started under this key, if any."""
        ...

    def list_jobs(self) -> dict[str, str]:
        """Idempotency key → handle of every job this backend submitted for its center."""
        ...

    def close(self, keep_jobs: bool = False) -> None:
        """Release the backend (see the contract above)."""
        ...


def service_address(backend: object, handle: str) -> tuple[str, int] | None:
    """Where a service replica's server listens, for a backend that runs it off the agent's host.

    Optional in the contract: a backend whose replicas listen elsewhere (Kubernetes:
    the pod's IP and the container's ``$PORT``) has a method
    ``service_address(handle) -> (host, port) | None``, None while that is not known
    yet; the agent relays to it (agent/relay.py). Without the method (local, Slurm,
    Ray) the replica listens on the agent's own host and this returns None.
    """
    method = getattr(backend, "service_address", None)
    if not callable(method):
        return None
    address: tuple[str, int] | None = method(handle)
    return address


def stop_unheld(backend: Backend, keep_keys: set[str]) -> list[str]:
    """Cancel every live job `backend` lists for its center whose key is not in `keep_keys`.

    An agent calls this when it starts, before it registers: a job an earlier agent
    process started and this one does not hold (its state file was lost) must not
    run on unknown to anyone. Returns the handles stopped; finished jobs are left alone.
    """
    list_jobs = getattr(backend, "list_jobs", None)
    if not callable(list_jobs):  # a backend written before list_jobs joined the contract
        return []
    orphans = {k: h for k, h in list_jobs().items() if k not in keep_keys}
    if not orphans:
        return []
    statuses = backend.poll(list(orphans.values()))
    final = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}
    stopped = []
    for key, handle in orphans.items():
        status = statuses.get(handle)
        if status is not None and status.state in final:
            continue
        logger.warning("%s (%s): orphan from a lost state file: stopped", key, handle)
        backend.cancel(handle)
        stopped.append(handle)
    return stopped


def unprivileged_account(user: str, *, field: str = "run_as") -> pwd.struct_passwd:
    """The existing, non-root account `user` (a name or a uid) jobs may run as.

    The one rule every backend that drops privileges applies: the account must
    exist here and must not be root; anything else is a `ValidationError` on `field`.
    """
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except (KeyError, ValueError):
        raise ValidationError(
            f"no user '{user}' on this machine",
            field=field,
            hint="an existing unprivileged account, e.g. nobody",
        ) from None
    if entry.pw_uid == 0:
        raise ValidationError(
            "jobs must not run as root", field=field, hint="an unprivileged account, e.g. nobody"
        )
    return entry
