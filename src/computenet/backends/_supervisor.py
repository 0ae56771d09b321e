"""Runs one local job so that it never outlives its agent.

Started by `LocalBackend` as ``python -I _supervisor.py JOBDIR GRACE_S COMMAND`` in a
new session, with the job's environment, working directory and log file as
stdout/stderr. It runs ``bash -c COMMAND`` in a process group of its own and:

- writes ``JOBDIR/child.json`` (pid and pgid of the job) once the job started;
- watches ``JOBDIR/owner`` ("PID STARTTIME" of the agent process that owns the
  job, or "detached [UNTIL]"): when the owner process is gone — the agent was
  killed, even with SIGKILL — or a detached job was not taken back by UNTIL
  (unix seconds: the agent's fence), it stops the job, so a killed center
  really loses its work and a job never runs on after its lease is gone;
- on SIGTERM, or when ``JOBDIR/cancel`` appears, stops the job: SIGTERM to the
  job's process group, SIGKILL after GRACE_S seconds;
- when the job ends, kills whatever the job left behind in its process group and
  writes ``JOBDIR/exit.json`` atomically: exit code (128+N for signal N), the
  signal, why it was stopped (``cancel``, ``orphaned`` or null) and the end time.

Run-as (``JOBDIR/run.json``, written by the backend; absent: run as ourselves).
The supervisor stays root so that it can always kill the job; the job itself runs
with the uid, gid and groups given there, ``PR_SET_NO_NEW_PRIVS`` set, and the
work dir (made 0700 and owned by the job's uid) as its current directory — entered
before the privileges are dropped, so it works whatever the modes above it are.
With ``"dynamic": true`` the uid is taken from a range, like systemd's
DynamicUser: the supervisor holds an ``flock`` on ``LOCK_DIR/<uid>`` for the
job's whole life (released by the kernel even if the supervisor is SIGKILLed),
so two jobs on one machine — of one agent or of several — never share a uid;
before the job starts and after it ends, every process left with that uid is
killed (``kill(-1)`` from a child that became the uid), so nothing a job
started, even one that left its process group, outlives it.

Deliberately standard-library only and free of computenet imports: it starts in
milliseconds and keeps working whatever the agent's environment does.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
from typing import Any

_TICK_S = 0.1
_OWNER_CHECK_S = 0.5
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: the forked child must not search


def proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live process, None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _owner_alive(jobdir: str) -> bool:
    try:
        with open(os.path.join(jobdir, "owner"), encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return True  # no owner file: nobody asked us to watch anyone
    if not text:
        return True
    if text.startswith("detached"):  # "detached [UNTIL]": no owner; stop at UNTIL (unix s)
        until = text[len("detached") :].strip()
        try:
            return not until or time.time() < float(until)
        except ValueError:
            return True
    pid_s, _, start_s = text.partition(" ")
    try:
        pid = int(pid_s)
        start = int(start_s) if start_s else None
    except ValueError:
        return True
    if not os.path.exists("/proc/self/stat"):  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    now = proc_start_time(pid)
    return now is not None and (start is None or now == start)


def _write_json(path: str, data: dict[str, object]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class SetupError(Exception):
    """The job cannot be given its identity or directories."""


def _read_env(jobdir: str) -> dict[str, str] | None:
    """The job's environment (``JOBDIR/env.json``); None (inherit ours) when absent."""
    try:
        with open(os.path.join(jobdir, "env.json"), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


def _read_run(jobdir: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(jobdir, "run.json"), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None


def _take_identity(run: dict[str, Any]) -> tuple[int, int, int | None]:
    """(uid, gid, lock fd): the fixed identity, or a free uid of the dynamic range, locked."""
    if not run.get("dynamic"):
        return int(run["uid"]), int(run["gid"]), None
    base, count, lock_dir = int(run["uid_base"]), int(run["uid_count"]), str(run["lock_dir"])
    _private_dir(lock_dir)
    # Start at a random place in the range, so that a uid just given back is rarely
    # reused at once (files a job left in /tmp stay its own a while longer).
    start = random.randrange(count)
    for i in range(count):
        uid = base + (start + i) % count
        fd = os.open(
            os.path.join(lock_dir, str(uid)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return uid, uid, fd
    raise SetupError(f"no free uid in {base}..{base + count - 1}: too many jobs on this machine")


def _private_dir(path: str) -> None:
    """Create `path` 0700; refuse one that someone else owns or others can write."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SetupError(f"{path} must be a directory owned by uid {os.geteuid()}, mode 0700")


def _prepare_dirs(run: dict[str, Any], uid: int, gid: int) -> None:
    """The job's work dir and TMPDIR: created by the backend, handed to the job's uid, 0700."""
    for key in ("workdir", "tmpdir"):
        path = run.get(key)
        if not path:
            continue
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chown(path, uid, gid, follow_symlinks=False)
        os.chmod(path, 0o700)
    checkpoint = run.get("checkpoint")
    if checkpoint:  # kept across attempts, which may run as other uids (agent/checkpoints.py)
        top = os.lstat(checkpoint).st_uid
        _hand_tree(checkpoint, uid, gid, {os.geteuid(), top})


def _hand_tree(path: str, uid: int, gid: int, owners: set[int]) -> None:
    """Give the directory `path`, and what in it one of `owners` owns, to uid:gid.

    For a job's checkpoint directory: handed to the job's uid before it starts, and
    back to us once it ended, before its uid is freed for another job. Symlinks are
    never followed, and a regular file with other links, or a device, is left as it
    is: a job cannot make us hand it a file it merely linked in.
    """
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise SetupError(f"{path} is not a directory")
    os.chown(path, uid, gid, follow_symlinks=False)  # first: the old uid is locked out
    os.chmod(path, 0o700)
    for _, dirs, files, dirfd in os.fwalk(path, follow_symlinks=False):
        for name in dirs + files:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                plain = stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)
                plain = plain or (stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
                if st.st_uid in owners and plain:
                    os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue


def _kill_uid(uid: int, gid: int) -> None:
    """SIGKILL every process running as `uid` (from a child that takes that uid)."""
    for _ in range(2):  # a second pass catches what forked during the first
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child
            try:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)  # all processes we may signal: that uid's
            finally:
                os._exit(0)
        os.waitpid(pid, 0)


def _lock_down() -> None:  # pragma: no cover - runs in the job's child before exec
    """In the job's process, after the uid change: no regaining privileges; die with us."""
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def main(argv: list[str]) -> int:
    """Run the job described by argv = [JOBDIR, GRACE_S, COMMAND] and record its exit."""
    jobdir, grace_s, command = argv[0], float(argv[1]), argv[2]
    why: list[str] = []

    def on_term(signum: int, frame: object) -> None:
        if not why:
            why.append("cancel")

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if os.path.exists(os.path.join(jobdir, "cancel")):  # cancelled before it started
        _write_json(
            os.path.join(jobdir, "exit.json"),
            {"exit_code": 143, "signal": None, "reason": "cancel", "ended_unix": time.time()},
        )
        return 0
    run = _read_run(jobdir)
    lock_fd: int | None = None
    uid: int | None = None
    popen_kw: dict[str, Any] = {}
    if run is not None:
        try:
            uid, gid, lock_fd = _take_identity(run)
            _prepare_dirs(run, uid, gid)
        except (OSError, ValueError, KeyError, SetupError) as exc:
            print(f"computenet: could not set the job up: {exc}", file=sys.stderr, flush=True)
            _write_json(
                os.path.join(jobdir, "exit.json"),
                {
                    "exit_code": 126,
                    "signal": None,
                    "reason": "setup",
                    "ended_unix": time.time(),
                    "message": f"could not set the job up: {exc}",
                },
            )
            return 0
        groups = [int(g) for g in run.get("groups", [])]
        if run.get("dynamic"):
            _kill_uid(uid, gid)  # whatever an earlier holder of this uid left behind
        popen_kw = {
            "user": uid,
            "group": gid,
            "extra_groups": groups,
            "preexec_fn": _lock_down,
            "cwd": run.get("cwd") or None,
        }
    # The job's environment is for the job's shell only (never this process's own,
    # which may be root: think LD_PRELOAD); bash is found on our own, plain PATH.
    bash = shutil.which("bash") or "/bin/bash"
    child = subprocess.Popen(
        [bash, "-c", command], process_group=0, env=_read_env(jobdir), **popen_kw
    )
    _write_json(
        os.path.join(jobdir, "child.json"),
        {"pid": child.pid, "pgid": child.pid, "start": proc_start_time(child.pid), "uid": uid},
    )

    kill_at: float | None = None
    next_check = 0.0
    while True:
        rc = child.poll()
        if rc is not None:
            break
        now = time.monotonic()
        if not why and now >= next_check:
            next_check = now + _OWNER_CHECK_S
            if os.path.exists(os.path.join(jobdir, "cancel")):
                why.append("cancel")
            elif not _owner_alive(jobdir):
                why.append("orphaned")
        if why and kill_at is None:
            _killpg(child.pid, signal.SIGTERM)
            kill_at = now + grace_s
        elif kill_at is not None and now >= kill_at:
            _killpg(child.pid, signal.SIGKILL)
            kill_at = float("inf")
        time.sleep(_TICK_S)

    # Background processes the job started die with it: no orphans.
    _killpg(child.pid, signal.SIGKILL)
    if run is not None and run.get("dynamic") and uid is not None:
        _kill_uid(uid, int(run.get("gid", uid)))  # even those that left the process group
    if run is not None and run.get("checkpoint") and uid is not None:
        with contextlib.suppress(OSError, SetupError):  # ours again before its uid is freed
            _hand_tree(str(run["checkpoint"]), os.geteuid(), os.getegid(), {uid})
    if lock_fd is not None:
        os.close(lock_fd)
    sig = -rc if rc < 0 else None
    _write_json(
        os.path.join(jobdir, "exit.json"),
        {
            "exit_code": 128 + sig if sig is not None else rc,
            "signal": sig,
            "reason": why[0] if why else None,
            "ended_unix": time.time(),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
