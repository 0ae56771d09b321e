"""The local backend: jobs as process groups on this machine, with virtual chip slots.

Each job runs ``bash -c COMMAND`` under a tiny supervisor (`_supervisor.py`) in a
per-job directory under the backend's state dir; stdout and stderr go to
``output.log``. The supervisor puts the job in its own process group, records
its exit code, kills the group on cancel, and kills it when the owning agent
process disappears (even after SIGKILL), so a killed center really loses its work.

A job's environment is exactly what the agent put in `BackendJob.env` plus its
chip slots, ``HOME`` (its work dir), ``TMPDIR`` and a plain ``PATH``/``LANG`` —
nothing of the agent's own environment. Who the job runs as (`run_as`):
``"dynamic"`` (the default when the agent is root) gives each job a uid of its
own from ``uid_base``..``uid_base+uid_count-1``, like systemd's DynamicUser; a
user name runs every job as that existing user; ``"self"`` (the default when the
agent is not root) runs jobs as the agent's own user — then jobs are not isolated
from each other or from the agent, and the backend says so in its log. Job dirs
are 0711 (0700 without run-as), work dirs and TMPDIR 0700 owned by the job, and
the output log 0600 owned by the agent, so one job cannot read another's.

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
import fcntl
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
from computenet.backends.base import (
    BackendJob,
    BackendState,
    BackendStatus,
    Capability,
    unprivileged_account,
)
from computenet.backends.registry import parse_pools
from computenet.errors import BackendError, ValidationError
from computenet.protocol import PoolCapacity

logger = logging.getLogger(__name__)

_SUPERVISOR = Path(__file__).with_name("_supervisor.py")
_STATE_FILE = "local-backend.json"
_LOG_READ_MAX = 1 << 20
_FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}
UID_BASE = 61000  # below systemd's DynamicUser range (61184-65519), inside 16 bits
UID_COUNT = 184
UID_LOCK_DIR = "/run/computenet/uid-locks"
# One group per tenant, machine-wide and persistent (the data files keep it).
TENANT_GID_BASE = 60000
TENANT_GID_COUNT = 1000
TENANT_GID_FILE = "/var/lib/computenet/tenant-gids.json"
# What a job gets when the agent gave no value: a plain, fixed PATH and LANG, never
# the agent's (see agent/jobs.py, where the job's environment is allow-listed).
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_ENV = {"PATH": BASE_PATH, "LANG": "C.UTF-8"}


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


def _write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunAs:
    """Who a job runs as: a fixed uid/gid/groups, a dynamic uid, or the agent itself."""

    mode: str  # "dynamic", "user" or "self"
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()
    uid_base: int = UID_BASE
    uid_count: int = UID_COUNT
    lock_dir: str = UID_LOCK_DIR

    @property
    def isolated(self) -> bool:
        """Jobs run as a uid other than the agent's."""
        return self.mode != "self"


def resolve_run_as(
    run_as: str | None,
    *,
    uid_base: int = UID_BASE,
    uid_count: int = UID_COUNT,
    lock_dir: str = UID_LOCK_DIR,
) -> RunAs:
    """Check a ``run_as`` option: ``auto`` (default), ``dynamic``, ``self`` or a user name."""
    value = (run_as or "auto").strip()
    root = os.geteuid() == 0
    if value == "auto":
        value = "dynamic" if root else "self"
    if value == "self":
        return RunAs("self")
    if not root:
        raise ValidationError(
            f"--run-as {value} needs an agent running as root (this one is uid {os.geteuid()})",
            field="run_as",
            hint="run the agent as root, or leave --run-as out to run jobs as the agent's user",
        )
    if value == "dynamic":
        if not (uid_base >= 1000 and uid_count >= 1 and uid_base + uid_count <= 2**31):
            raise ValidationError(
                f"uid range {uid_base}+{uid_count} is not usable",
                field="uid_base",
                hint="e.g. uid_base=61000 uid_count=184",
            )
        return RunAs("dynamic", uid_base=uid_base, uid_count=uid_count, lock_dir=lock_dir)
    entry = unprivileged_account(value)
    groups = tuple(g for g in os.getgrouplist(entry.pw_name, entry.pw_gid) if g != 0)
    return RunAs("user", uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def tenant_gid(tenant: str, registry: str | Path = TENANT_GID_FILE) -> int:
    """The group id of `tenant`'s data on this machine (allocated once, then remembered).

    Kept in `registry` (a root-owned 0600 JSON file, locked while it is read and
    extended), so every agent on the machine agrees and a gid never moves to
    another tenant while files carry it.
    """
    path = Path(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            known = json.loads(f.read() or "{}")
        except ValueError:
            raise BackendError(f"{path} is not valid JSON: fix or remove it") from None
        if tenant in known:
            return int(known[tenant])
        used = {int(g) for g in known.values()}
        span = range(TENANT_GID_BASE, TENANT_GID_BASE + TENANT_GID_COUNT)
        gid = next((g for g in span if g not in used), None)
        if gid is None:
            raise BackendError(f"no free tenant group left in {path}")
        known[tenant] = gid
        f.seek(0)
        f.truncate()
        f.write(json.dumps(known, indent=1, sort_keys=True))
        f.flush()
        os.fsync(f.fileno())
        return gid


def closed_ancestor(path: Path) -> Path | None:
    """The first directory above or at `path` that other users cannot traverse, if any."""
    for d in [*reversed(path.resolve().parents), path.resolve()]:
        try:
            if not d.stat().st_mode & 0o001:
                return d
        except OSError:
            return d
    return None


class LocalBackend:
    """Runs jobs as supervised process groups with virtual chip slots (see module doc).

    Parameters: `state_dir` holds job dirs and the state file; `pools` maps chip
    type to slot count; `grace_s` is how long a cancelled job gets between
    SIGTERM and SIGKILL; `retention_s` is how long finished jobs stay findable;
    `run_as` is who jobs run as (``auto``, ``dynamic``, ``self`` or a user name; see
    the module doc), with the dynamic uids ``uid_base``..``uid_base+uid_count-1``.
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
        run_as: str | None = "auto",
        uid_base: int | str = UID_BASE,
        uid_count: int | str = UID_COUNT,
        uid_lock_dir: str = UID_LOCK_DIR,
        tenant_gid_file: str = TENANT_GID_FILE,
    ) -> None:
        self._tenant_gid_file = tenant_gid_file
        self.detach_until: float | None = None  # see close(keep_jobs=True)
        self.run_as = resolve_run_as(
            run_as, uid_base=int(uid_base), uid_count=int(uid_count), lock_dir=uid_lock_dir
        )
        self.state_dir = Path(state_dir)
        self.jobs_dir = self.state_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        # Jobs running as other uids must reach their work dirs (traverse, never list).
        dir_mode = 0o711 if self.run_as.isolated else 0o700
        for d in (self.state_dir, self.jobs_dir):
            os.chmod(d, dir_mode)
        self._dir_mode = dir_mode
        self._warn_about_isolation()
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

    def tenant_gid(self, tenant: str) -> int | None:
        """The group that gives a job `tenant`'s data (None: jobs are not isolated)."""
        if not self.run_as.isolated or not tenant:
            return None
        return tenant_gid(tenant, self._tenant_gid_file)

    def _warn_about_isolation(self) -> None:
        if not self.run_as.isolated:
            if os.geteuid() == 0:
                logger.warning("local jobs run as root (run_as=self): they are not isolated")
            else:
                logger.warning(
                    "local jobs run as this agent's user (uid %d): they can read each other's "
                    "files and the agent's; isolation between jobs needs an agent running as "
                    "root",
                    os.geteuid(),
                )
            return
        closed = closed_ancestor(self.jobs_dir)
        if closed is not None:
            logger.warning(
                "jobs run as other users but cannot reach %s (%s is not searchable by others): "
                "their HOME and TMPDIR paths will not work; chmod o+x %s or choose a state dir "
                "under /var/lib",
                self.jobs_dir,
                closed,
                closed,
            )

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
            jobdir.mkdir(mode=self._dir_mode)
            os.chmod(jobdir, self._dir_mode)
            workdir = Path(job.workdir) if job.workdir else jobdir / "work"
            workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def list_jobs(self) -> dict[str, str]:
        """Idempotency key → handle of every job this backend still has a record of."""
        with self._lock:
            return {rec.key: rec.handle for rec in self._records.values()}

    # ------------------------------------------------------------ beyond contract

    def close(self, keep_jobs: bool = False) -> None:
        """Stop every live job (default), or detach them so they outlive this process.

        Detached jobs keep running; a later backend over the same state dir re-attaches.
        With `detach_until` set (unix seconds: the agent's fence), a detached job no
        backend took back by then stops by itself — its lease is gone by then.
        """
        with self._lock:
            live = [r for r in self._records.values() if r.final is None]
            if keep_jobs:
                until = self.detach_until
                owner = "detached" if until is None else f"detached {until:.3f}"
                for rec in live:
                    self._write_owner(rec, owner)
                return
            for rec in live:
                self._stop(rec.handle, "shutdown")
        deadline = time.monotonic() + self.grace_s + 2.0
        while time.monotonic() < deadline:
            if all(s.state in _FINAL for s in self.poll([r.handle for r in live]).values()):
                break
            time.sleep(0.05)

    def stop_unheld(self, keep_keys: set[str]) -> list[str]:
        """Stop every live job whose key is not in `keep_keys`; the handles stopped.

        An agent calls this when it starts, before it registers: what an earlier
        agent process left running and this one does not hold — its state file was
        lost or is older than the jobs — must not run on unknown to anyone. Job dirs
        without a record (the backend's own state file was lost) are stopped too.
        """
        stopped: list[str] = []
        with self._lock:
            self._refresh()
            for rec in list(self._records.values()):
                if rec.final is None and rec.key not in keep_keys:
                    logger.warning("stopping %s (%s): no agent holds it", rec.job_id, rec.handle)
                    self._stop(rec.handle, "orphaned")
                    stopped.append(rec.handle)
            known = {Path(r.jobdir).name for r in self._records.values()}
            for jobdir in self.jobs_dir.iterdir():
                if jobdir.name in known or not jobdir.is_dir() or (jobdir / "exit.json").exists():
                    continue
                if _stop_unrecorded(jobdir):
                    logger.warning("stopped the unrecorded job in %s", jobdir)
                    stopped.append(jobdir.name)
        return stopped

    def pids(self, handle: str) -> dict[str, int | None]:
        """PIDs of a job's supervisor and process group (for diagnostics and tests)."""
        rec = self._records.get(handle)
        if rec is None:
            return {}
        child = _read_json(Path(rec.jobdir) / "child.json") or {}
        return {"supervisor": rec.pid, "pgid": child.get("pgid")}

    # ------------------------------------------------------------------ helpers

    def job_environment(
        self, job: BackendJob, chip_ids: list[int], workdir: Path, tmpdir: Path
    ) -> dict[str, str]:
        """The job's whole environment: `job.env`, its chips, HOME and TMPDIR — no more."""
        ids = ",".join(str(i) for i in chip_ids)
        env = dict(BASE_ENV)
        env.update(job.env)
        env.update(
            {
                "CNET_CHIP": job.chip,
                "CNET_CHIP_COUNT": str(job.count),
                "CNET_CHIP_IDS": ids,
                "CNET_VISIBLE_DEVICES": ids,
                "HOME": str(workdir),
                "TMPDIR": str(tmpdir),
            }
        )
        env.setdefault("CNET_JOB_ID", job.job_id)
        env.setdefault("CNET_ATTEMPT", str(job.attempt))
        env.setdefault("CNET_PLANNED_RUN_S", f"{job.planned_run_s:g}")
        return env

    def _spawn(self, job: BackendJob, rec: _Record, workdir: Path) -> subprocess.Popen[bytes]:
        jobdir = Path(rec.jobdir)
        tmpdir = jobdir / "tmp"
        tmpdir.mkdir(mode=0o700, exist_ok=True)
        env = self.job_environment(job, rec.chip_ids, workdir, tmpdir)
        ra = self.run_as
        if ra.isolated:
            run: dict[str, Any] = {"cwd": str(workdir), "tmpdir": str(tmpdir)}
            if not job.workdir:
                run["workdir"] = str(workdir)  # ours to hand over; a given one is not
            if ra.mode == "dynamic":
                run.update(
                    dynamic=True, uid_base=ra.uid_base, uid_count=ra.uid_count,
                    lock_dir=ra.lock_dir,
                )  # fmt: skip
            else:
                run.update(uid=ra.uid, gid=ra.gid, groups=list(ra.groups))
            if job.checkpoint_dir:  # the job's while it runs, ours between (agent/checkpoints.py)
                run["checkpoint"] = job.checkpoint_dir
            group = self.tenant_gid(job.tenant)
            if group is not None:  # its tenant's data (agent/jobs.py seal_tenant_area)
                run["groups"] = [*run.get("groups", []), group]
            _write_atomic(jobdir / "run.json", json.dumps(run))
        # The log is the agent's: 0600, so no other job's uid can read it; the job
        # writes to it through the descriptor it inherits.
        fd = os.open(jobdir / "output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # The job's environment goes to the supervisor in a 0600 file, not as the
        # supervisor's own: it may run as root, and a tenant's env (LD_PRELOAD=...)
        # must reach only the job's shell, which runs as the job's uid.
        _write_atomic(jobdir / "env.json", json.dumps(env))
        with os.fdopen(fd, "ab") as log:
            argv = [sys.executable, "-I", str(_SUPERVISOR), rec.jobdir, f"{self.grace_s:g}"]
            return subprocess.Popen(
                [*argv, job.command],
                cwd=workdir,
                env=dict(BASE_ENV),
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
            _sweep_uid(jobdir, child)  # and what left the group, if the uid was its own
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
        elif exit_info.get("reason") == "setup":
            state, message = BackendState.FAILED, str(exit_info.get("message", "setup failed"))
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


def _stop_unrecorded(jobdir: Path) -> bool:
    """Stop a job whose record is lost: tell its supervisor, and kill its group if alive."""
    child = _read_json(jobdir / "child.json") or {}
    _write_atomic(jobdir / "cancel", "orphaned")  # its supervisor, if alive, stops the job
    pgid, start = child.get("pgid"), child.get("start")
    if isinstance(pgid, int) and start is not None and proc_start_time(pgid) == start:
        _kill_group(pgid, signal.SIGKILL)  # the same process, not a recycled pid
        _sweep_uid(jobdir, child)
        return True
    return False


def _sweep_uid(jobdir: Path, child: dict[str, Any]) -> None:
    """Kill every process of a dead supervisor's dynamic uid, unless a new job holds it.

    The supervisor does this itself when its job ends; when the supervisor was
    killed, the uid's lock went with it, so take the lock first: if another
    job's supervisor holds it now, it already swept the uid before starting.
    """
    run = _read_json(jobdir / "run.json") or {}
    uid = child.get("uid")
    if not run.get("dynamic") or not isinstance(uid, int) or os.geteuid() != 0:
        return
    try:
        fd = os.open(Path(str(run["lock_dir"])) / str(uid), os.O_RDWR | os.O_NOFOLLOW)
    except (OSError, KeyError):
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return
    try:  # `kill -9 -1` as that uid: every process it may signal, i.e. that uid's
        subprocess.run(
            ["kill", "-9", "-1"], user=uid, group=uid, extra_groups=[], check=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={"PATH": BASE_PATH}, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not sweep uid %d: %s", uid, exc)
    finally:
        os.close(fd)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
