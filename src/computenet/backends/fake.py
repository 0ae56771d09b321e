"""The fake backend: in memory and deterministic, for tests of everything above a backend.

Time does not pass by the wall clock but by polls. A submitted job is PENDING
for `polls_to_start` polls, then RUNNING, and ends after `polls_to_finish`
more polls (or more, see ``sleep``). The command is read as a tiny shell script
— statements split on newlines, ``;`` and ``&&``:

- ``echo WORDS`` writes a line to the job's log (``$VAR`` and ``${VAR}`` expand
  from the job's environment and ``CNET_*``);
- ``exit N`` ends the job with code N (non-zero → FAILED); ``false`` is ``exit 1``;
- ``sleep S`` keeps it running S more polls (``sleep infinity`` until cancelled);
- anything else is logged as ``fake: ran …`` and succeeds.

Backend objects built over the same `FakeCluster` see the same jobs, which is how
a test re-creates the backend to check re-attachment.
"""

from __future__ import annotations

import math
import re
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from computenet.backends.base import BackendJob, BackendState, BackendStatus, Capability
from computenet.backends.registry import parse_pools
from computenet.errors import BackendError
from computenet.protocol import PoolCapacity

_FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}
_SPLIT = re.compile(r"\s*(?:\n|;|&&)\s*")
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class _FakeJob:
    handle: str
    key: str
    center: str
    job: BackendJob
    env: dict[str, str]
    output: str
    exit_code: int
    run_polls: float
    state: BackendState = BackendState.PENDING
    polls: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class FakeCluster:
    """The fake's 'local scheduler': jobs by handle, handles by key. Share it to re-attach."""

    jobs: dict[str, _FakeJob] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    submits: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)


def _interpret(command: str, env: Mapping[str, str]) -> tuple[str, int, float]:
    """(output, exit code, extra running polls) of a fake command."""
    out: list[str] = []
    extra = 0.0

    def expand(text: str) -> str:
        return _VAR.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)

    for stmt in filter(None, _SPLIT.split(command.strip())):
        try:
            words = shlex.split(expand(stmt))
        except ValueError:
            words = expand(stmt).split()
        if not words:
            continue
        verb, args = words[0], words[1:]
        if verb == "echo":
            out.append(" ".join(args))
        elif verb == "exit":
            code = int(args[0]) if args and args[0].lstrip("-").isdigit() else 0
            return "".join(f"{line}\n" for line in out), code % 256, extra
        elif verb == "false":
            return "".join(f"{line}\n" for line in out), 1, extra
        elif verb == "sleep":
            arg = args[0] if args else "0"
            try:
                extra += float(arg)
            except ValueError:
                extra = math.inf if arg == "infinity" else extra
        elif verb not in (":", "true"):
            out.append(f"fake: ran {stmt}")
    return "".join(f"{line}\n" for line in out), 0, extra


class FakeBackend:
    """In-memory deterministic backend (see module doc)."""

    kind = "fake"
    capabilities = Capability.CANCEL | Capability.LOGS | Capability.REATTACH

    def __init__(
        self,
        pools: Mapping[str, int] | str | None = None,
        *,
        cluster: FakeCluster | None = None,
        polls_to_start: int = 1,
        polls_to_finish: int = 2,
        state_dir: str | Path | None = None,
        center: str = "",
    ) -> None:
        self.pools = parse_pools(pools) or {"H100": 8}
        self.center = center  # the label its jobs carry (list_jobs)
        self.cluster = cluster if cluster is not None else FakeCluster()
        self.polls_to_start = polls_to_start
        self.polls_to_finish = polls_to_finish
        self.state_dir = state_dir  # accepted for symmetry with other backends; unused

    def capacity(self) -> list[PoolCapacity]:
        """Pools with totals and the chips not held by PENDING or RUNNING jobs."""
        with self.cluster.lock:
            used: dict[str, int] = {}
            for fj in self.cluster.jobs.values():
                if fj.state not in _FINAL:
                    used[fj.job.chip] = used.get(fj.job.chip, 0) + fj.job.count
            return [
                PoolCapacity(chip=c, total=n, free=max(0, n - used.get(c, 0)))
                for c, n in self.pools.items()
            ]

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Queue `job` (idempotently by key)."""
        with self.cluster.lock:
            if idempotency_key in self.cluster.keys:
                return self.cluster.keys[idempotency_key]
            total = self.pools.get(job.chip)
            if total is None:
                raise BackendError(f"this center has no {job.chip} chips", field="chip")
            free = next(p.free for p in self.capacity() if p.chip == job.chip)
            if job.count > free:
                raise BackendError(
                    f"needs {job.count} {job.chip} chips but {free} of {total} are free",
                    field="count",
                )
            self.cluster.submits += 1
            handle = f"fake-{self.cluster.submits}"
            env = {
                "CNET_JOB_ID": job.job_id,
                "CNET_ATTEMPT": str(job.attempt),
                "CNET_CHIP": job.chip,
                "CNET_CHIP_COUNT": str(job.count),
                "CNET_PLANNED_RUN_S": f"{job.planned_run_s:g}",
                **job.env,
            }
            output, code, extra = _interpret(job.command, env)
            self.cluster.jobs[handle] = _FakeJob(
                handle=handle,
                key=idempotency_key,
                center=self.center,
                job=job,
                env=env,
                output=output,
                exit_code=code,
                run_polls=max(self.polls_to_finish, extra),
            )
            self.cluster.keys[idempotency_key] = handle
            if self.polls_to_start <= 0:
                self._start(self.cluster.jobs[handle])
            return handle

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """Advance each job by one poll and report it; unknown handles are UNKNOWN."""
        with self.cluster.lock:
            out: dict[str, BackendStatus] = {}
            for handle in handles:
                fj = self.cluster.jobs.get(handle)
                if fj is None:
                    out[handle] = BackendStatus(handle, BackendState.UNKNOWN, message="no such job")
                    continue
                if fj.state not in _FINAL:
                    fj.polls += 1
                    if fj.state is BackendState.PENDING and fj.polls >= self.polls_to_start:
                        self._start(fj)
                    elif fj.state is BackendState.RUNNING and (
                        fj.polls - self.polls_to_start >= fj.run_polls
                    ):
                        fj.state = (
                            BackendState.SUCCEEDED if fj.exit_code == 0 else BackendState.FAILED
                        )
                        fj.ended_at = datetime.now(UTC)
                out[handle] = BackendStatus(
                    handle,
                    fj.state,
                    exit_code=fj.exit_code if fj.state in _FINAL else None,
                    started_at=fj.started_at,
                    ended_at=fj.ended_at,
                    message=f"exited with code {fj.exit_code}"
                    if fj.state is BackendState.FAILED
                    else "",
                )
            return out

    def cancel(self, handle: str) -> None:
        """Cancel; a no-op for finished or unknown jobs."""
        with self.cluster.lock:
            fj = self.cluster.jobs.get(handle)
            if fj is not None and fj.state not in _FINAL:
                fj.state = BackendState.CANCELLED
                fj.exit_code = 143
                fj.ended_at = datetime.now(UTC)

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """The job's output from byte `offset` (all of it appears once it runs)."""
        with self.cluster.lock:
            fj = self.cluster.jobs.get(handle)
            if fj is None or fj.started_at is None:
                return "", offset
            data = fj.output.encode()
            return data[offset:].decode(errors="replace"), max(offset, len(data))

    def find(self, idempotency_key: str) -> str | None:
        """The handle submitted under this key, if any."""
        with self.cluster.lock:
            return self.cluster.keys.get(idempotency_key)

    def list_jobs(self) -> dict[str, str]:
        """Key → handle of every job submitted for this backend's center."""
        with self.cluster.lock:
            return {fj.key: h for h, fj in self.cluster.jobs.items() if fj.center == self.center}

    def close(self, keep_jobs: bool = False) -> None:
        """Cancel every live job unless `keep_jobs`."""
        if keep_jobs:
            return
        with self.cluster.lock:
            for handle in list(self.cluster.jobs):
                self.cancel(handle)

    @staticmethod
    def _start(fj: _FakeJob) -> None:
        fj.state = BackendState.RUNNING
        fj.started_at = datetime.now(UTC)
