"""The Slurm backend: jobs as ``sbatch`` batch jobs on an existing Slurm cluster.

The agent runs where the Slurm client commands work (a login or service node):
``sbatch``, ``squeue``, ``sacct``, ``scancel``, ``scontrol`` and ``sinfo`` on
PATH (or in `bin_dir`), and ``SLURM_CONF`` set when the cluster needs it.

- **Chips.** With ``chips_as="gres"`` (the default) a job of N chips asks for
  ``--gres=GRES:N`` where GRES is ``gpu`` or the chip's entry in `chip_gres`
  (``A100=gpu:a100,Ascend-910B=npu``); with ``chips_as="cpus"`` it asks for N CPUs
  (``--cpus-per-task=N``), which is what a CPU center or a test cluster does.
  Each chip type may go to its own partition (`chip_partitions`).
- **Idempotency.** The job name is ``cnet-<key>`` (see `_external.key_name`), so
  `find` asks ``squeue`` and then ``sacct`` for that name: a restarted agent
  re-attaches to what it started, even with its state dir gone.
- **Status.** ``squeue`` for live jobs; for ended ones the exit code comes from
  ``sacct -P -n -X -o JobID,State,ExitCode`` (Slurm 22.05's ``sacct --json``
  reports wrong exit codes), or ``scontrol show job`` while accounting lags.
- **Logs.** stdout and stderr go to ``<output_dir>/<random>/<jobid>.out``; the agent
  reads that file, so `output_dir` must be visible from the compute nodes and the
  agent (a shared filesystem on a real cluster). `output_dir` is not listable by
  jobs, each job's folder is its own, and a finished job's log is handed back to
  the agent's user (mode 0600), so a later job cannot read it.
- **Isolation.** ``sbatch --export=NONE``: the job gets exactly `BackendJob.env`
  (written into the batch script as exports) plus what Slurm itself sets
  (``SLURM_*``), never the agent's environment. When the agent runs as root,
  jobs run as `run_as` (``--uid``/``--gid``; ``nobody:nogroup`` by default), so
  they cannot read the agent's files or ``/proc/<agent>/environ``.
- **Labels.** ``--comment=computenet center=<center> key=<key>`` marks every job,
  so `list_jobs` finds this center's jobs in ``squeue`` even with the state dir gone.
- **Capacity.** ``sinfo --json`` where the version has it, else ``sinfo -O``.
- **Time limit.** A job with a plan gets ``--time`` = its planned run (real
  seconds: `BackendJob.planned_run_s`, already network time / ``time_scale``)
  × (1 + `time_margin`) + `time_margin_s`, rounded up to whole minutes (Slurm's
  unit), at least `MIN_TIME_LIMIT_S`: Slurm itself kills an overrun, which then
  ends FAILED with a message naming the limit (``TIMEOUT``). A job without a plan
  gets no ``--time`` (the partition's default); ``--time`` in `sbatch_args` wins.
- **Accounting.** `usage(handle)` reads ``sacct -P -n -X`` (state, exit code,
  ``ElapsedRaw``, ``CPUTimeRAW``, ``AllocTRES``, ``Timelimit``); `accounting(handle)`
  is that as the usage report's `SchedulerUsage`, which the agent sends.
"""

from __future__ import annotations

import grp
import json
import logging
import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from computenet.backends._external import (
    is_local_host,
    job_env,
    key_name,
    parse_mapping,
    slice_log,
)
from computenet.backends.base import (
    BackendJob,
    BackendState,
    BackendStatus,
    Capability,
    unprivileged_account,
)
from computenet.backends.registry import parse_pools
from computenet.errors import BackendError, ValidationError
from computenet.model.service import SERVICE_ENV
from computenet.protocol import PoolCapacity
from computenet.protocol.center import SchedulerUsage

logger = logging.getLogger(__name__)

_LOG_READ_MAX = 1 << 20
_KEYS_FILE = "slurm-keys.jsonl"

# Slurm job states (squeue %T / sacct State) → ours. Anything not here is UNKNOWN.
_STATES: dict[str, BackendState] = {
    "PENDING": BackendState.PENDING,
    "CONFIGURING": BackendState.PENDING,
    "REQUEUED": BackendState.PENDING,
    "REQUEUE_FED": BackendState.PENDING,
    "REQUEUE_HOLD": BackendState.PENDING,
    "RESV_DEL_HOLD": BackendState.PENDING,
    "RESIZING": BackendState.RUNNING,
    "RUNNING": BackendState.RUNNING,
    "COMPLETING": BackendState.RUNNING,
    "SUSPENDED": BackendState.RUNNING,
    "STOPPED": BackendState.RUNNING,
    "SIGNALING": BackendState.RUNNING,
    "STAGE_OUT": BackendState.RUNNING,
    "COMPLETED": BackendState.SUCCEEDED,
    "CANCELLED": BackendState.CANCELLED,
    "REVOKED": BackendState.CANCELLED,
    "FAILED": BackendState.FAILED,
    "TIMEOUT": BackendState.FAILED,
    "NODE_FAIL": BackendState.FAILED,
    "OUT_OF_MEMORY": BackendState.FAILED,
    "BOOT_FAIL": BackendState.FAILED,
    "DEADLINE": BackendState.FAILED,
    "PREEMPTED": BackendState.FAILED,
    "SPECIAL_EXIT": BackendState.FAILED,
}
_FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}
# Node states whose free chips a job can use (sinfo's base state, lower case).
_USABLE_NODE = {"idle", "mixed", "allocated", "completing"}
_BAD_NODE_FLAGS = {
    "DRAIN",
    "DRAINING",
    "DRAINED",
    "DOWN",
    "FAIL",
    "NOT_RESPONDING",
    "MAINTENANCE",
    "RESERVED",
    "POWERED_DOWN",
    "POWERING_DOWN",
    "REBOOT_REQUESTED",
}
# ``--time`` = plan × (1 + TIME_MARGIN) + TIME_MARGIN_S, at least MIN_TIME_LIMIT_S:
# a plan is an estimate, and a job killed for a small overrun loses all its work.
TIME_MARGIN = 0.25
TIME_MARGIN_S = 300.0
MIN_TIME_LIMIT_S = 60.0
# How long `accounting` waits for slurmdbd to record a job slurmctld says has ended.
ACCOUNTING_WAIT_S = 3.0
# sacct's columns for `usage`, in this order (`parse_sacct_usage` reads them).
SACCT_USAGE_FIELDS = "JobID,State,ExitCode,ElapsedRaw,CPUTimeRAW,AllocTRES,Timelimit"
_MEM_UNITS = {"K": 1 / 1024, "M": 1.0, "G": 1024.0, "T": 1024.0**2, "P": 1024.0**3}
_GRES_ITEM = re.compile(r"^(?P<name>[^:(]+)(?::(?P<type>[^:(]+))?:(?P<count>\d+)")


@dataclass(frozen=True)
class SlurmUsage:
    """What Slurm's accounting recorded for one job (one ``sacct -X`` line)."""

    handle: str
    state: BackendState
    run_real_s: float  # ElapsedRaw
    cpu_s: float  # CPUTimeRAW
    alloc_tres: str  # AllocTRES as sacct prints it
    slurm_state: str = ""  # e.g. COMPLETED, TIMEOUT, CANCELLED
    exit_code: int | None = None
    cpus: int = 0
    gpus: int = 0
    mem_mb: float = 0.0
    time_limit_s: float | None = None  # None: unlimited or unknown

    def report(self) -> SchedulerUsage:
        """This record as the usage report's `SchedulerUsage`."""
        return SchedulerUsage(
            scheduler="slurm",
            job_id=self.handle,
            state=self.slurm_state,
            exit_code=self.exit_code,
            elapsed_s=self.run_real_s,
            cpu_s=self.cpu_s,
            cpus=self.cpus,
            gpus=self.gpus,
            mem_mb=self.mem_mb,
            time_limit_s=self.time_limit_s,
        )


def time_limit(
    planned_run_s: float, margin: float = TIME_MARGIN, margin_s: float = TIME_MARGIN_S
) -> str | None:
    """``sbatch --time`` for a job planned to run `planned_run_s` real seconds.

    Plan × (1 + `margin`) + `margin_s`, rounded up to whole minutes (Slurm keeps
    limits in minutes), at least `MIN_TIME_LIMIT_S`, as ``[D-]HH:MM:00``. None when
    the plan is unknown (0, negative or not finite): the job keeps the partition's limit.
    """
    if not math.isfinite(planned_run_s) or planned_run_s <= 0:
        return None
    seconds = max(MIN_TIME_LIMIT_S, planned_run_s * (1 + margin) + margin_s)
    minutes = math.ceil(seconds / 60 - 1e-9)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    hms = f"{hours:02d}:{mins:02d}:00"
    return f"{days}-{hms}" if days else hms


def _duration_s(text: str) -> float | None:
    """A Slurm duration (``[D-]HH:MM:SS``, ``MM:SS``, ``MM``) in seconds; None if unlimited."""
    text = text.strip()
    days, _, clock = text.rpartition("-") if "-" in text else ("", "", text)
    parts = clock.split(":")
    try:
        nums = [int(p) for p in parts]
        d = int(days) if days else 0
    except ValueError:
        return None  # UNLIMITED, Partition_Limit, INVALID
    if len(nums) == 1:
        h, m, sec = (nums[0], 0, 0) if days else (0, nums[0], 0)  # D-HH, or minutes alone
    elif len(nums) == 2:
        h, m, sec = (0, *nums) if not days else (*nums, 0)
    elif len(nums) == 3:
        h, m, sec = nums
    else:
        return None
    return float(((d * 24 + h) * 60 + m) * 60 + sec)


def _tres(text: str) -> tuple[int, int, float]:
    """(cpus, gpus, memory MB) from an AllocTRES string (``cpu=2,mem=1G,gres/gpu=1``)."""
    cpus = gpus = 0
    mem = 0.0
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        try:
            if key == "cpu":
                cpus = int(value)
            elif key == "gres/gpu":  # not gres/gpu:a100, which repeats the same chips
                gpus = int(value)
            elif key == "mem" and value:
                unit = value[-1].upper()
                mem = float(value[:-1]) * _MEM_UNITS[unit] if unit in _MEM_UNITS else float(value)
        except (ValueError, KeyError):
            continue
    return cpus, gpus, mem


def parse_sacct_usage(line: str, handle: str) -> SlurmUsage | None:
    """One ``sacct -P -n -X -o SACCT_USAGE_FIELDS`` line for job `handle`; None otherwise."""
    parts = line.strip().split("|")
    if len(parts) < 7 or parts[0] != handle:
        return None
    raw = parts[1].split()[0] if parts[1] else ""  # "CANCELLED by 0" → CANCELLED
    state = _STATES.get(raw, BackendState.UNKNOWN)
    try:
        elapsed, cpu_s = float(parts[3] or 0), float(parts[4] or 0)
    except ValueError:
        return None
    cpus, gpus, mem = _tres(parts[5])
    return SlurmUsage(
        handle,
        state,
        elapsed,
        cpu_s,
        parts[5],
        slurm_state=raw,
        exit_code=_exit_code(parts[2]) if state in _FINAL else None,
        cpus=cpus,
        gpus=gpus,
        mem_mb=mem,
        time_limit_s=_duration_s(parts[6]),
    )


def _ended_message(raw_state: str, time_limit_text: str = "") -> str:
    """The message a final Slurm state gives the job (TIMEOUT names the time limit)."""
    if raw_state == "TIMEOUT":
        limit = f" (--time={time_limit_text})" if time_limit_text else ""
        return f"TIMEOUT: Slurm stopped the job at its time limit{limit}"
    return raw_state


@dataclass(frozen=True)
class _Node:
    name: str
    partitions: tuple[str, ...]
    usable: bool
    cpus: int
    idle_cpus: int
    gres: str
    gres_used: str


def _gres_count(spec: str, name: str, typ: str | None) -> int:
    """How many of gres `name` (of `typ`, if given) a sinfo Gres/GresUsed string holds."""
    total = 0
    for item in spec.split(","):
        m = _GRES_ITEM.match(item.strip())
        if m is None or m["name"] != name:
            continue
        if typ is not None and m["type"] != typ:
            continue
        total += int(m["count"])
    return total


def _slurm_time(text: str) -> datetime | None:
    """A Slurm timestamp (cluster-local, no zone) as UTC; None for Unknown/N/A/None."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _exit_code(text: str) -> int | None:
    """Slurm's ``CODE:SIGNAL`` as one shell-style code (128+signal when killed by one)."""
    code, _, sig = text.strip().partition(":")
    try:
        c, s = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + s if c == 0 and s else c


class SlurmBackend:
    """Runs jobs through sbatch/squeue/sacct/scancel/sinfo (see module doc).

    Parameters: `state_dir` (batch scripts, the key map and, by default, job
    output); `pools` (chip type → count from the network, naming this center's
    chips); `partition` and `account` (``--partition``/``--account``, optional);
    `chips_as` (``gres`` or ``cpus``); `gres` (default GRES name, ``gpu``);
    `chip_gres` and `chip_partitions` (per-chip ``CHIP=VALUE,...`` overrides);
    `cpus_per_chip` (``--cpus-per-gpu`` style CPUs for each GRES chip); `qos`;
    `sbatch_args` (extra sbatch arguments, shell-quoted); `output_dir`
    (job output files; on a shared filesystem); `slurm_conf` (sets ``SLURM_CONF``
    for every command); `bin_dir` (where the Slurm commands live); `timeout_s`
    (per command); `prefix` (job name prefix, default ``cnet``); `chip` (a chip
    name to add when `pools` is empty); `find_days` (how far back `find` asks sacct);
    `center` (the center id its jobs are labelled with, see `list_jobs`); `run_as`
    (``USER[:GROUP]`` jobs run as when the agent is root; ``auto`` is
    ``nobody:nogroup`` for a root agent and the agent's own user otherwise; ``agent``
    keeps the agent's user, which lets jobs read the agent's files: not for root);
    `time_margin` and `time_margin_s` (the ``--time`` margin over the plan, see
    `time_limit`; defaults `TIME_MARGIN` and `TIME_MARGIN_S`).
    """

    kind = "slurm"
    capabilities = (
        Capability.CANCEL
        | Capability.LOGS
        | Capability.REATTACH
        | Capability.ACCELERATORS
        | Capability.ACCOUNTING
    )

    def __init__(
        self,
        state_dir: str | Path,
        pools: Mapping[str, int] | str | None = None,
        *,
        partition: str | None = None,
        account: str | None = None,
        chips_as: str = "gres",
        gres: str = "gpu",
        chip_gres: Mapping[str, str] | str | None = None,
        chip_partitions: Mapping[str, str] | str | None = None,
        cpus_per_chip: int | str = 0,
        qos: str | None = None,
        sbatch_args: str | Sequence[str] = (),
        output_dir: str | Path | None = None,
        slurm_conf: str | None = None,
        bin_dir: str | None = None,
        timeout_s: float | str = 30.0,
        prefix: str = "cnet",
        chip: str | None = None,
        find_days: int | str = 30,
        center: str = "",
        run_as: str = "auto",
        time_margin: float | str = TIME_MARGIN,
        time_margin_s: float | str = TIME_MARGIN_S,
    ) -> None:
        if chips_as not in ("gres", "cpus"):
            raise ValidationError(
                f"chips_as must be 'gres' or 'cpus', not '{chips_as}'",
                field="chips_as",
                hint="gres maps chips to --gres=gpu:N; cpus maps them to CPUs",
            )
        self.state_dir = Path(state_dir)
        self.pools = parse_pools(pools)
        if chip and chip not in self.pools:
            self.pools[chip] = 1
        if not self.pools:
            self.pools = {"CPU-node" if chips_as == "cpus" else "GPU": 1}
        self.partition = partition or None
        self.account = account or None
        self.qos = qos or None
        self.chips_as = chips_as
        self.gres = gres
        self.chip_gres = parse_mapping(chip_gres, "chip_gres")
        self.chip_partitions = parse_mapping(chip_partitions, "chip_partitions")
        self.cpus_per_chip = int(cpus_per_chip)
        self.sbatch_args = (
            shlex.split(sbatch_args) if isinstance(sbatch_args, str) else list(sbatch_args)
        )
        self.output_dir = Path(output_dir) if output_dir else self.state_dir / "output"
        self.scripts_dir = self.state_dir / "scripts"
        self.timeout_s = float(timeout_s)
        self.prefix = prefix
        self.find_days = int(find_days)
        self.center = center
        self.run_as = _resolve_run_as(run_as)
        self.time_margin = float(time_margin)
        self.time_margin_s = float(time_margin_s)
        if not (self.time_margin >= 0 and self.time_margin_s >= 0):
            raise ValidationError(
                "time_margin and time_margin_s must be 0 or more",
                field="time_margin",
                hint="e.g. time_margin=0.25,time_margin_s=300 (plan × 1.25 + 5 min)",
            )
        self._env = dict(os.environ)
        if slurm_conf:
            self._env["SLURM_CONF"] = str(slurm_conf)
        self._bin_dir = bin_dir
        self._lock = threading.RLock()
        self._keys: dict[str, str] = {}
        self._outputs: dict[str, str] = {}  # handle → output file
        self._sealed: set[str] = set()
        for d in (self.state_dir, self.output_dir, self.scripts_dir):
            d.mkdir(parents=True, exist_ok=True)
        # Scripts hold the jobs' env: the agent's only. Output: jobs may enter, not list.
        self.scripts_dir.chmod(0o700)
        self.output_dir.chmod(0o711)
        self._load_keys()
        self._json_sinfo: bool | None = None

    # ---------------------------------------------------------------- commands

    def _cmd(self, name: str) -> str:
        if self._bin_dir:
            return str(Path(self._bin_dir) / name)
        found = shutil.which(name, path=self._env.get("PATH"))
        if found is None:
            raise BackendError(
                f"'{name}' is not on PATH", hint="install the Slurm client or pass bin_dir=..."
            )
        return found

    def _run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [self._cmd(name), *args]
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=self._env,
                timeout=self.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BackendError(
                f"{name} did not answer in {self.timeout_s:g}s", hint="is slurmctld up?"
            ) from exc
        except OSError as exc:
            raise BackendError(f"could not run {name}: {exc}") from exc
        if check and proc.returncode != 0:
            raise BackendError(
                f"{name} failed (exit {proc.returncode}): "
                f"{proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    # ---------------------------------------------------------------- key map

    def _load_keys(self) -> None:
        path = self.state_dir / _KEYS_FILE
        try:
            lines = path.read_text("utf-8").splitlines()
        except OSError:
            return
        for line in lines:
            try:
                rec = json.loads(line)
                self._keys[str(rec["key"])] = str(rec["handle"])
                if rec.get("output"):
                    self._outputs[str(rec["handle"])] = str(rec["output"])
            except (ValueError, KeyError, TypeError):
                continue

    def _remember(self, key: str, handle: str, output: str | None = None) -> None:
        self._keys[key] = handle
        rec = {"key": key, "handle": handle}
        if output:
            self._outputs[handle] = output
            rec["output"] = output
        with open(self.state_dir / _KEYS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    # ---------------------------------------------------------------- contract

    def job_name(self, idempotency_key: str) -> str:
        """The Slurm job name that carries `idempotency_key`."""
        return key_name(self.prefix, idempotency_key)

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """``sbatch`` the job (or return the job id already started under this key)."""
        if job.chip not in self.pools:
            raise ValidationError(
                f"this center has no {job.chip} pool",
                field="chip",
                hint=f"pools: {', '.join(self.pools)}",
            )
        with self._lock:
            existing = self.find(idempotency_key)
            if existing is not None:
                return existing
            name = self.job_name(idempotency_key)
            script = self.scripts_dir / f"{name}.sh"
            script.write_text(self._script(job), "utf-8")
            script.chmod(0o600)  # sbatch reads it as the agent and sends its text
            if self.run_as is not None:
                _check_reachable(self.output_dir, self.run_as)
            # A folder of its own, under a name other jobs cannot guess or list.
            jobdir = self.output_dir / secrets.token_hex(16)
            jobdir.mkdir(mode=0o700)
            if self.run_as is not None:
                os.chown(jobdir, self.run_as[0], self.run_as[1])
            args = [
                *self._replica_args(job),
                "--parsable",
                f"--job-name={name}",
                f"--comment={self._label(idempotency_key)}",
                f"--output={jobdir}/%j.out",
                "--open-mode=append",
                "--ntasks=1",
                "--export=NONE",
                f"--chdir={job.workdir or jobdir}",
                *self._user_args(),
                *self._resource_args(job),
                *self.sbatch_args,
                str(script),
            ]
            proc = self._run("sbatch", *args)
            handle = proc.stdout.strip().split(";")[0]
            if not handle.isdigit():
                raise BackendError(f"sbatch printed no job id: {proc.stdout.strip()!r}")
            self._remember(idempotency_key, handle, str(jobdir / f"{handle}.out"))
            logger.info("sbatch %s as %s (%s × %s)", job.job_id, handle, job.count, job.chip)
            return handle

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """squeue for live jobs; sacct (then scontrol) for the exit of ended ones."""
        out = {h: BackendStatus(h, BackendState.UNKNOWN, message="no such job") for h in handles}
        ids = sorted({h for h in handles if h.isdigit()}, key=int)
        if not ids:
            return out
        queued = self._squeue(ids)
        need_exit = [i for i in ids if i not in queued or queued[i].state in _FINAL]
        for i, st in queued.items():
            if st.state not in _FINAL:
                out[i] = st
        if need_exit:
            acct = self._sacct(need_exit)
            for i in need_exit:
                rec = acct.get(i)
                if rec is not None and rec.state in _FINAL:
                    out[i] = rec
                elif i in queued:
                    # Ended, but accounting has not caught up: scontrol still knows the exit.
                    out[i] = self._scontrol(i) or queued[i]
                elif rec is not None:
                    out[i] = rec
        for i in ids:
            if out[i].state in _FINAL:
                self._seal(i)
        return out

    def cancel(self, handle: str) -> None:
        """``scancel`` the job; a finished or unknown job is a no-op."""
        if not handle.isdigit():
            return
        proc = self._run("scancel", handle, check=False)
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).lower()
            if "invalid job id" in err or "already completing or completed" in err:
                return
            raise BackendError(f"scancel {handle} failed: {proc.stderr.strip()}")

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """The job's output file from byte `offset` on, and the next offset."""
        if not handle.isdigit():
            return "", offset
        try:
            with open(self._output(handle), "rb") as f:
                f.seek(offset)
                data = f.read(_LOG_READ_MAX)
        except OSError:
            return "", offset
        return slice_log(data, offset)

    def find(self, idempotency_key: str) -> str | None:
        """The job id started under this key: from the key map, squeue, or sacct."""
        with self._lock:
            if idempotency_key in self._keys:
                return self._keys[idempotency_key]
            name = self.job_name(idempotency_key)
            # A failing squeue raises: answering "not found" would start the job twice.
            proc = self._run("squeue", "-h", "-t", "all", f"--name={name}", "-o", "%i")
            ids = [line.strip() for line in proc.stdout.splitlines() if line.strip().isdigit()]
            if not ids:
                since = (datetime.now() - timedelta(days=self.find_days)).strftime(
                    "%Y-%m-%dT%H:%M:%S"
                )
                out = self._sacct_out(f"--name={name}", "-S", since, "-o", "JobID")
                ids = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
            if not ids:
                return None
            handle = max(ids, key=int)
            self._remember(idempotency_key, handle, self._stdout_of(handle))
            return handle

    def list_jobs(self) -> dict[str, str]:
        """Key → job id of the jobs labelled for this center that squeue still shows.

        Finished jobs leave squeue after Slurm's MinJobAge (300 s by default); live
        ones, the ones that matter to an agent that lost its state, stay listed.
        """
        prefix = f"computenet center={urllib.parse.quote(self.center, safe='')} key="
        proc = self._run("squeue", "-h", "-t", "all", "-o", "%i|%j|%k")
        out: dict[str, str] = {}
        for line in proc.stdout.splitlines():
            jid, _, rest = line.strip().partition("|")
            name, _, comment = rest.partition("|")
            if not jid.isdigit() or not comment.startswith(prefix):
                continue
            key = urllib.parse.unquote(comment[len(prefix) :])
            if name == self.job_name(key) and int(jid) > int(out.get(key, "0")):
                out[key] = jid
        return out

    def capacity(self) -> list[PoolCapacity]:
        """Each chip pool's total and free chips, from sinfo."""
        nodes = self._nodes()
        out = []
        for chip in self.pools:
            partition = self.chip_partitions.get(chip, self.partition)
            mine = [n for n in nodes if partition is None or partition in n.partitions]
            if self.chips_as == "cpus":
                total = sum(n.cpus for n in mine)
                free = sum(n.idle_cpus for n in mine if n.usable)
            else:
                name, _, typ = self.chip_gres.get(chip, self.gres).partition(":")
                t = typ or None
                total = sum(_gres_count(n.gres, name, t) for n in mine)
                free = sum(
                    max(0, _gres_count(n.gres, name, t) - _gres_count(n.gres_used, name, t))
                    for n in mine
                    if n.usable
                )
            # The network planned with what it declared; offer no more than that.
            total = min(total, self.pools[chip])
            out.append(PoolCapacity(chip=chip, total=total, free=min(free, total)))
        return out

    # ------------------------------------------------------------ beyond contract

    def usage(self, handle: str) -> SlurmUsage | None:
        """What Slurm's accounting recorded for the job (None without a record)."""
        if not handle.isdigit():
            return None
        out = self._sacct_out("-j", handle, "-o", SACCT_USAGE_FIELDS)
        for line in out.splitlines():
            rec = parse_sacct_usage(line, handle)
            if rec is not None:
                return rec
        return None

    def accounting(self, handle: str) -> SchedulerUsage | None:
        """The ended job's sacct record for the usage report.

        slurmdbd can lag a moment behind slurmctld (poll then took the exit from
        scontrol): wait up to `ACCOUNTING_WAIT_S` for the record, then give None,
        so a report never waits long on accounting.
        """
        deadline = time.monotonic() + ACCOUNTING_WAIT_S
        while True:
            rec = self.usage(handle)
            if rec is not None and rec.state in _FINAL:
                return rec.report()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.5)

    def close(self, keep_jobs: bool = False) -> None:
        """Nothing to release: the jobs belong to Slurm (the agent cancels them if it must)."""

    # ------------------------------------------------------------------ helpers

    def _label(self, key: str) -> str:
        """The ``--comment`` that marks a job as this center's, with its key."""
        center, k = (urllib.parse.quote(x, safe="") for x in (self.center, key))
        return f"computenet center={center} key={k}"

    def _replica_args(self, job: BackendJob) -> list[str]:
        """A service replica runs on the node that is the agent's own host (``--nodelist``).

        The agent probes the replica's port and advertises it at its own host
        (agent/serving.py): on any other node the probe could never answer.
        """
        if SERVICE_ENV not in job.env:
            return []
        proc = self._run("scontrol", "show", "node", "-o")
        for line in proc.stdout.splitlines():
            fields = dict(w.partition("=")[::2] for w in line.split() if "=" in w)
            name = fields.get("NodeName", "")
            if name and any(is_local_host(fields.get(k, "")) for k in ("NodeAddr", "NodeHostName")):
                return [f"--nodelist={name}"]
        raise BackendError(
            "the Slurm backend cannot run a service replica here: no Slurm node is the "
            "agent's own host, and the agent can probe and advertise a replica only there",
            hint="run the agent on a compute node of the cluster (or deploy elsewhere)",
        )

    def _user_args(self) -> list[str]:
        if self.run_as is None:
            return []
        return [f"--uid={self.run_as[0]}", f"--gid={self.run_as[1]}"]

    def _output(self, handle: str) -> Path:
        """The job's output file: as recorded, else as scontrol knows it, else the old layout."""
        known = self._outputs.get(handle) or self._stdout_of(handle)
        if known:
            self._outputs[handle] = known
            return Path(known)
        return self.output_dir / f"{handle}.out"

    def _stdout_of(self, handle: str) -> str | None:
        proc = self._run("scontrol", "show", "job", "-o", handle, check=False)
        for token in proc.stdout.split():
            k, sep, v = token.partition("=")
            if sep and k == "StdOut" and v.startswith("/"):
                return v
        return None

    def _seal(self, handle: str) -> None:
        """Hand a finished job's log and folder back to the agent's user: no later job reads it."""
        if self.run_as is None or handle in self._sealed:
            return
        path = self._output(handle)
        if path.parent.parent != self.output_dir:
            return  # not a folder of its own (an older layout): leave it
        try:
            for p, mode in ((path, 0o600), (path.parent, 0o700)):
                os.chown(p, os.geteuid(), os.getegid())
                p.chmod(mode)
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not seal the log of %s: %s", handle, exc)
            return
        self._sealed.add(handle)

    def _script(self, job: BackendJob) -> str:
        env = job_env(job)
        lines = ["#!/bin/bash", "# Written by the ComputeNet agent (computenet.backends.slurm)."]
        # --export=NONE leaves no PATH; job steps (srun) inherit this script's env.
        if "PATH" not in env:
            lines.append("export PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
        lines.append("export SLURM_EXPORT_ENV=ALL")
        lines += [
            f"export {k}={shlex.quote(v)}"
            for k, v in sorted(env.items())
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)
        ]
        # Device ids: what Slurm bound (GPUs), else 0..N-1 as the local backend numbers slots.
        ids = ",".join(str(i) for i in range(job.count))
        bound = f"${{CUDA_VISIBLE_DEVICES:-${{ASCEND_RT_VISIBLE_DEVICES:-{ids}}}}}"
        lines.append(f'export CNET_CHIP_IDS="{bound}"')
        lines.append('export CNET_VISIBLE_DEVICES="$CNET_CHIP_IDS"')
        lines.append(f"exec /bin/bash -c {shlex.quote(job.command)}")
        return "\n".join(lines) + "\n"

    def _resource_args(self, job: BackendJob) -> list[str]:
        args: list[str] = []
        partition = self.chip_partitions.get(job.chip, self.partition)
        if partition:
            args.append(f"--partition={partition}")
        if self.account:
            args.append(f"--account={self.account}")
        if self.qos:
            args.append(f"--qos={self.qos}")
        limit = time_limit(job.planned_run_s, self.time_margin, self.time_margin_s)
        if limit is not None:
            args.append(f"--time={limit}")  # Slurm enforces it; sbatch_args come later and win
        if self.chips_as == "cpus":
            args.append(f"--cpus-per-task={job.count}")
        else:
            args.append(f"--gres={self.chip_gres.get(job.chip, self.gres)}:{job.count}")
            if self.cpus_per_chip:
                args.append(f"--cpus-per-task={self.cpus_per_chip * job.count}")
        return args

    def _sacct_out(self, *args: str) -> str:
        """``sacct -P -n -X ARGS``; empty without accounting, BackendError when it fails."""
        proc = self._run("sacct", "-P", "-n", "-X", *args, check=False)
        if proc.returncode != 0:
            if "accounting storage is disabled" in proc.stderr.lower():
                return ""
            raise BackendError(
                f"sacct failed (exit {proc.returncode}): {proc.stderr.strip()}",
                hint="is slurmdbd up?",
            )
        return proc.stdout

    def _squeue(self, ids: list[str]) -> dict[str, BackendStatus]:
        proc = self._run(
            "squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%S|%e|%r", check=False
        )
        # squeue exits 1 when none of the ids is still in slurmctld's memory: that is no error.
        if proc.returncode != 0 and "invalid job id" not in proc.stderr.lower():
            raise BackendError(
                f"squeue failed (exit {proc.returncode}): {proc.stderr.strip()}",
                hint="is slurmctld up?",
            )
        out: dict[str, BackendStatus] = {}
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 5 or parts[0] not in ids:
                continue
            state = _STATES.get(parts[1], BackendState.UNKNOWN)
            started = _slurm_time(parts[2]) if state is not BackendState.PENDING else None
            ended = _slurm_time(parts[3]) if state in _FINAL else None
            reason = parts[4] if parts[4] not in ("None", "") else ""
            out[parts[0]] = BackendStatus(parts[0], state, None, started, ended, reason)
        return out

    def _sacct(self, ids: list[str]) -> dict[str, BackendStatus]:
        text = self._sacct_out(
            "-j", ",".join(ids), "-o", "JobID,State,ExitCode,Start,End,Timelimit"
        )
        out: dict[str, BackendStatus] = {}
        for line in text.splitlines():
            parts = line.strip().split("|")
            if len(parts) < 6 or parts[0] not in ids:
                continue
            raw = parts[1].split()[0] if parts[1] else ""
            state = _STATES.get(raw, BackendState.UNKNOWN)
            code = _exit_code(parts[2]) if state in _FINAL else None
            if state is BackendState.CANCELLED:
                code = None
            out[parts[0]] = BackendStatus(
                parts[0],
                state,
                code,
                _slurm_time(parts[3]),
                _slurm_time(parts[4]),
                _ended_message(raw, parts[5]) if state is not BackendState.SUCCEEDED else "",
            )
        return out

    def _scontrol(self, handle: str) -> BackendStatus | None:
        proc = self._run("scontrol", "show", "job", "-o", handle, check=False)
        fields: dict[str, str] = {}
        for token in proc.stdout.split():
            k, sep, v = token.partition("=")
            if sep and k not in fields:
                fields[k] = v
        if fields.get("JobId") != handle:
            return None
        state = _STATES.get(fields.get("JobState", ""), BackendState.UNKNOWN)
        code = _exit_code(fields.get("ExitCode", "")) if state in _FINAL else None
        return BackendStatus(
            handle,
            state,
            None if state is BackendState.CANCELLED else code,
            _slurm_time(fields.get("StartTime", "")),
            _slurm_time(fields.get("EndTime", "")),
            ""
            if state is BackendState.SUCCEEDED
            else _ended_message("TIMEOUT", fields.get("TimeLimit", ""))
            if fields.get("JobState") == "TIMEOUT"
            else fields.get("Reason", ""),
        )

    def _nodes(self) -> list[_Node]:
        if self._json_sinfo is not False:
            proc = self._run("sinfo", "--json", check=False)
            if proc.returncode == 0 and proc.stdout.lstrip().startswith("{"):
                self._json_sinfo = True
                return self._nodes_from_json(json.loads(proc.stdout))
            self._json_sinfo = False
        proc = self._run(
            "sinfo",
            "-h",
            "-N",
            "-O",
            "NodeList:|,Partition:|,StateLong:|,CPUsState:|,Gres:|,GresUsed:",
        )
        merged: dict[str, dict[str, Any]] = {}
        for line in proc.stdout.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 6:
                continue
            name, part, state, cpus, gres, used = parts[:6]
            n = merged.setdefault(
                name, {"partitions": [], "state": state, "cpus": cpus, "gres": gres, "used": used}
            )
            n["partitions"].append(part.rstrip("*"))
        nodes = []
        for name, n in merged.items():
            try:
                _alloc, idle, _other, total = (int(x) for x in n["cpus"].split("/"))
            except ValueError:
                idle = total = 0
            base = n["state"].rstrip("*~#!%$@^-").split("+")[0].lower()
            flags = {f.upper() for f in n["state"].rstrip("*~#!%$@^-").split("+")[1:]}
            nodes.append(
                _Node(
                    name,
                    tuple(n["partitions"]),
                    base in _USABLE_NODE
                    and not flags & _BAD_NODE_FLAGS
                    and not n["state"].endswith("*"),
                    total,
                    idle,
                    "" if n["gres"] == "(null)" else n["gres"],
                    "" if n["used"] == "(null)" else n["used"],
                )
            )
        return nodes

    @staticmethod
    def _nodes_from_json(data: dict[str, Any]) -> list[_Node]:
        nodes = []
        for n in data.get("nodes", []):
            state = n.get("state", "")
            if isinstance(state, list):  # newer versions: a list of flags
                flags = {str(s).upper() for s in state}
                base = next((s.lower() for s in flags if s.lower() in _USABLE_NODE), "down")
            else:
                flags = {str(s).upper() for s in n.get("state_flags", [])}
                base = str(state).lower()
            cpus = int(n.get("cpus", 0) or 0)
            idle = n.get("idle_cpus")
            if idle is None:
                idle = cpus - int(n.get("alloc_cpus", 0) or 0)
            nodes.append(
                _Node(
                    str(n.get("name", "")),
                    tuple(n.get("partitions", []) or ()),
                    base in _USABLE_NODE and not flags & _BAD_NODE_FLAGS,
                    cpus,
                    int(idle),
                    str(n.get("gres", "") or ""),
                    str(n.get("gres_used", "") or ""),
                )
            )
        return nodes


def _resolve_run_as(run_as: str) -> tuple[int, int] | None:
    """(uid, gid) for ``--uid``/``--gid``, or None to run jobs as the agent's user."""
    spec = (run_as or "agent").strip()
    if spec == "auto":
        if os.geteuid() != 0:
            return None
        spec = "nobody:nogroup"
    if spec == "agent":
        return None
    user, _, group = spec.partition(":")
    entry = unprivileged_account(user)
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
        except KeyError:
            raise ValidationError(
                f"no group '{group}' here",
                field="run_as",
                hint="USER[:GROUP] of an unprivileged account, e.g. nobody:nogroup",
            ) from None
    return entry.pw_uid, gid


def _check_reachable(path: Path, ids: tuple[int, int]) -> None:
    """ValidationError unless user `ids` may enter every folder down to `path`."""
    uid, gid = ids
    for p in [*reversed(path.resolve().parents), path.resolve()]:
        st = p.stat()
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
        if not st.st_mode & bit:
            raise ValidationError(
                f"jobs run as uid {uid} cannot enter {p}, so they cannot write their output",
                field="output_dir",
                hint="put output_dir (or the state dir) where that user can reach, e.g. chmod o+x",
            )
