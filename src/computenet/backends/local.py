"""The local backend: jobs as process groups on this machine, with virtual chip slots.

Each job runs ``bash -c COMMAND`` under a tiny supervisor (`_supervisor.py`) in a
per-job directory under the backend's state dir; stdout and stderr go to
``output.log``. The supervisor puts the job in its own process group, records
its exit code, kills the group on cancel, and kills it when the owning agent
process disappears (even after SIGKILL), so a killed center really loses its work.

Chips are virtual slots: a pool ``{"H100": 8}`` has slots 0..7 and a job that
gets two of them sees ``CNET_CHIP=H100``, ``CNET_CHIP_IDS=0,1`` and
``CNET_VISIBLE_DEVICES=0,1``. What the backend started is kept in a small JSON
file (``local-backend.json``), so a new backend object over the same state dir
— an agent restarted while its jobs run — re-attaches to them by PID, checked
against the process start time so that a recycled PID is never mistaken for a job.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from computenet.backends._supervisor import proc_start_time
from computenet.backends.base import BackendJob, BackendState, BackendStatus, Capability
from computenet.backends.registry import parse_pools
from computenet.errors import BackendError, ValidationError
from computenet.protocol import PoolCapacity

logger = logging.getLogger(__name__)

_SUPERVISOR = Path(__file__).with_name("_supervisor.py")
_STATE_FILE = "local-backend.json"
_LOG_READ_MAX = 1 << 20
_FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}


@dataclass
class _Record:
    """What the backend remembers about one job it started (persisted as JSON)."""

    key: str
    handle: str
    job_id: str
    attempt: int
    chip: str
    chip_ids: list[int]
    jobdir: str
    submitted_unix: float
    pid: int | None = None
    pid_start: int | None = None
    final: dict[str, Any] | None = field(default=None)


def _own_identity() -> str:
    start = proc_start_time(os.getpid())
    return f"{os.getpid()} {start}" if start is not None else str(os.getpid())


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


class LocalBackend:
    """Runs jobs as supervised process groups with virtual chip slots (see module doc).

    Parameters: `state_dir` holds job dirs and the state file; `pools` maps chip
    type to slot count; `grace_s` is how long a cancelled job gets between
    SIGTERM and SIGKILL; `retention_s` is how long finished jobs stay findable.
    """

    kind = "local"
    capabilities = Capability.CANCEL | Capability.LOGS | Capability.REATTACH

    def __init__(
        self,
        state_dir: str | Path,
        pools: Mapping[str, int] | str | None = None,
        *,
        grace_s: float = 5.0,
        retention_s: float = 24 * 3600,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.jobs_dir = self.state_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.pools = parse_pools(pools)
        if not self.pools:
            raise ValidationError(
                "the local backend needs at least one chip pool",
                field="pools",
                hint="give pools like H100=8 (or --slots / --network for the agent)",
            )
        self.grace_s = grace_s
        self.retention_s = retention_s
        self._lock = threading.RLock()
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._identity = _own_identity()
        self._records: dict[str, _Record] = {}
        self._load()

    # ----------------------------------------------------------------- state file

    def _load(self) -> None:
        data = _read_json(self.state_dir / _STATE_FILE) or {}
        for raw in data.get("jobs", []):
            try:
                rec = _Record(**raw)
            except TypeError:
                logger.warning("ignoring a malformed job record in %s", self.state_dir)
                continue
            self._records[rec.handle] = rec
        # Claim the jobs still running: their supervisors now watch this process.
        for rec in self._records.values():
            if rec.final is None:
                self._write_owner(rec, self._identity)

    def _save(self) -> None:
        cutoff = time.time() - self.retention_s
        for handle, rec in list(self._records.items()):
            if rec.final is not None and rec.final.get("ended_unix", 0) < cutoff:
                del self._records[handle]
                self._children.pop(handle, None)
                shutil.rmtree(rec.jobdir, ignore_errors=True)
        data = {"version": 1, "jobs": [asdict(r) for r in self._records.values()]}
        _write_atomic(self.state_dir / _STATE_FILE, json.dumps(data, indent=1))

    @staticmethod
    def _write_owner(rec: _Record, identity: str) -> None:
        jobdir = Path(rec.jobdir)
        if jobdir.is_dir():
            _write_atomic(jobdir / "owner", identity)

    # ---------------------------------------------------------------- contract

    def capacity(self) -> list[PoolCapacity]:
        """Every pool with its total slots and the slots not held by a live job."""
        with self._lock:
            self._refresh()
            used = self._used()
            return [
                PoolCapacity(chip=chip, total=n, free=max(0, n - len(used.get(chip, set()))))
                for chip, n in self.pools.items()
            ]

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Start `job` under a supervisor (or return the handle already started for this key)."""
        with self._lock:
            existing = self.find(idempotency_key)
            if existing is not None:
                return existing
            chip_ids = self._allocate(job.chip, job.count)
            handle = f"local-{uuid.uuid4().hex[:12]}"
            jobdir = self.jobs_dir / handle
            jobdir.mkdir(parents=True)
            workdir = Path(job.workdir) if job.workdir else jobdir / "work"
            workdir.mkdir(parents=True, exist_ok=True)
            rec = _Record(
                key=idempotency_key,
                handle=handle,
                job_id=job.job_id,
                attempt=job.attempt,
                chip=job.chip,
                chip_ids=chip_ids,
                jobdir=str(jobdir),
                submitted_unix=time.time(),
            )
            _write_atomic(jobdir / "owner", self._identity)
            # Record before starting: a crash in between leaves a findable record.
            self._records[handle] = rec
            self._save()
            try:
                proc = self._spawn(job, rec, workdir)
            except OSError as exc:
                rec.final = {
                    "state": BackendState.FAILED.value,
                    "exit_code": None,
                    "ended_unix": time.time(),
                    "message": f"could not start the job: {exc}",
                }
                self._save()
                raise BackendError(f"could not start job {job.job_id}: {exc}") from exc
            self._children[handle] = proc
            rec.pid = proc.pid
            rec.pid_start = proc_start_time(proc.pid)
            self._save()
            logger.info("started %s (%s) on %s %s", job.job_id, handle, job.chip, chip_ids)
            return handle

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """Status of each handle; unknown handles are UNKNOWN."""
        with self._lock:
            changed = False
            out: dict[str, BackendStatus] = {}
            for handle in handles:
                rec = self._records.get(handle)
                if rec is None:
                    out[handle] = BackendStatus(handle, BackendState.UNKNOWN, message="no such job")
                    continue
                changed |= self._update(rec)
                out[handle] = self._status(rec)
            if changed:
                self._save()
            return out

    def cancel(self, handle: str) -> None:
        """Stop the job: SIGTERM to its process group, SIGKILL after the grace period."""
        self._stop(handle, "cancel")

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """Output from byte `offset` on (whole UTF-8 characters only) and the next offset."""
        rec = self._records.get(handle)
        if rec is None:
            return "", offset
        try:
            with open(Path(rec.jobdir) / "output.log", "rb") as f:
                f.seek(offset)
                data = f.read(_LOG_READ_MAX)
        except OSError:
            return "", offset
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(data, final=False)
        pending = decoder.getstate()[0]
        return text, offset + len(data) - len(pending)

    def find(self, idempotency_key: str) -> str | None:
        """The handle started under this key, if any."""
        with self._lock:
            for rec in self._records.values():
                if rec.key == idempotency_key:
                    return rec.handle
            return None

    # ------------------------------------------------------------ beyond contract

    def close(self, keep_jobs: bool = False) -> None:
        """Stop every live job (default), or detach them so they outlive this process.

        Detached jobs keep running; a later backend over the same state dir re-attaches.
        """
        with self._lock:
            live = [r for r in self._records.values() if r.final is None]
            if keep_jobs:
                for rec in live:
                    self._write_owner(rec, "detached")
                return
            for rec in live:
                self._stop(rec.handle, "shutdown")
        deadline = time.monotonic() + self.grace_s + 2.0
        while time.monotonic() < deadline:
            if all(s.state in _FINAL for s in self.poll([r.handle for r in live]).values()):
                break
            time.sleep(0.05)

    def pids(self, handle: str) -> dict[str, int | None]:
        """PIDs of a job's supervisor and process group (for diagnostics and tests)."""
        rec = self._records.get(handle)
        if rec is None:
            return {}
        child = _read_json(Path(rec.jobdir) / "child.json") or {}
        return {"supervisor": rec.pid, "pgid": child.get("pgid")}

    # ------------------------------------------------------------------ helpers

    def _spawn(self, job: BackendJob, rec: _Record, workdir: Path) -> subprocess.Popen[bytes]:
        ids = ",".join(str(i) for i in rec.chip_ids)
        env = dict(os.environ)
        env.update(job.env)
        env.update(
            {
                "CNET_CHIP": job.chip,
                "CNET_CHIP_COUNT": str(job.count),
                "CNET_CHIP_IDS": ids,
                "CNET_VISIBLE_DEVICES": ids,
            }
        )
        env.setdefault("CNET_JOB_ID", job.job_id)
        env.setdefault("CNET_ATTEMPT", str(job.attempt))
        env.setdefault("CNET_PLANNED_RUN_S", f"{job.planned_run_s:g}")
        with open(Path(rec.jobdir) / "output.log", "ab") as log:
            argv = [sys.executable, "-I", str(_SUPERVISOR), rec.jobdir, f"{self.grace_s:g}"]
            return subprocess.Popen(
                [*argv, job.command],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )

    def _allocate(self, chip: str, count: int) -> list[int]:
        total = self.pools.get(chip)
        if total is None:
            raise BackendError(
                f"this center has no {chip} chips",
                field="chip",
                hint=f"its pools: {', '.join(f'{c}={n}' for c, n in self.pools.items())}",
            )
        self._refresh()
        used = self._used().get(chip, set())
        free = [i for i in range(total) if i not in used]
        if count > len(free):
            raise BackendError(
                f"needs {count} {chip} slots but {len(free)} of {total} are free",
                field="count",
                hint="wait for running jobs to finish",
            )
        return free[:count]

    def _used(self) -> dict[str, set[int]]:
        used: dict[str, set[int]] = {}
        for rec in self._records.values():
            if rec.final is None:
                used.setdefault(rec.chip, set()).update(rec.chip_ids)
        return used

    def _refresh(self) -> None:
        changed = False
        for rec in self._records.values():
            if rec.final is None:
                changed |= self._update(rec)
        if changed:
            self._save()

    def _alive(self, rec: _Record) -> bool:
        proc = self._children.get(rec.handle)
        if proc is not None:
            return proc.poll() is None
        if rec.pid is None:
            return False
        try:  # our own child from an earlier backend object: reap it if it ended
            pid, _ = os.waitpid(rec.pid, os.WNOHANG)
            if pid == rec.pid:
                return False
        except ChildProcessError:
            pass
        start = proc_start_time(rec.pid)
        return start is not None and (rec.pid_start is None or start == rec.pid_start)

    def _update(self, rec: _Record) -> bool:
        """Fold the job's files into its record; True when it just became final."""
        if rec.final is not None:
            return False
        jobdir = Path(rec.jobdir)
        exit_info = _read_json(jobdir / "exit.json")
        if exit_info is None and self._alive(rec):
            return False
        if exit_info is None:
            exit_info = _read_json(jobdir / "exit.json")  # it may have written just now
        if exit_info is None:
            if rec.pid is None and time.time() - rec.submitted_unix < 5:
                return False  # still being started by a concurrent submit
            child = _read_json(jobdir / "child.json") or {}
            if isinstance(child.get("pgid"), int):
                _kill_group(child["pgid"], signal.SIGKILL)
            rec.final = {
                "state": BackendState.FAILED.value,
                "exit_code": None,
                "ended_unix": time.time(),
                "message": "the job's supervisor disappeared; its processes were killed",
            }
            return True
        stop_reason = _read_text(jobdir / "cancel") or exit_info.get("reason")
        code = exit_info.get("exit_code")
        if stop_reason in ("cancel", "shutdown") or exit_info.get("reason") == "cancel":
            state, message = BackendState.CANCELLED, f"stopped ({stop_reason})"
        elif exit_info.get("reason") == "orphaned":
            state, message = BackendState.FAILED, "stopped: its agent process went away"
        elif code == 0:
            state, message = BackendState.SUCCEEDED, ""
        else:
            state, message = BackendState.FAILED, f"exited with code {code}"
        rec.final = {
            "state": state.value,
            "exit_code": code,
            "ended_unix": exit_info.get("ended_unix", time.time()),
            "message": message,
        }
        self._children.pop(rec.handle, None)
        return True

    def _status(self, rec: _Record) -> BackendStatus:
        started = _utc(rec.submitted_unix)
        if rec.final is None:
            return BackendStatus(rec.handle, BackendState.RUNNING, started_at=started)
        return BackendStatus(
            rec.handle,
            BackendState(rec.final["state"]),
            exit_code=rec.final.get("exit_code"),
            started_at=started,
            ended_at=_utc(rec.final.get("ended_unix")),
            message=rec.final.get("message", ""),
        )

    def _stop(self, handle: str, reason: str) -> None:
        with self._lock:
            rec = self._records.get(handle)
            if rec is None or self._update(rec) or rec.final is not None:
                if rec is not None:
                    self._save()
                return
            jobdir = Path(rec.jobdir)
            if not (jobdir / "cancel").exists():
                _write_atomic(jobdir / "cancel", reason)
            if rec.pid is not None and self._alive(rec):
                # Signal only once the supervisor has its handler (it wrote child.json);
                # before that it finds the cancel file itself.
                if (jobdir / "child.json").exists():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(rec.pid, signal.SIGTERM)
                return
            # No supervisor to do it: kill the group ourselves.
            child = _read_json(jobdir / "child.json") or {}
            if isinstance(child.get("pgid"), int):
                _kill_group(child["pgid"], signal.SIGKILL)
            self._update(rec)
            self._save()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text("utf-8").strip() or None
    except OSError:
        return None


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
