"""Runs one local job so that it never outlives its agent.

Started by `LocalBackend` as ``python -I _supervisor.py JOBDIR GRACE_S COMMAND`` in a
new session, with the job's environment, working directory and log file as
stdout/stderr. It runs ``bash -c COMMAND`` in a process group of its own and:

- writes ``JOBDIR/child.json`` (pid and pgid of the job) once the job started;
- watches ``JOBDIR/owner`` ("PID STARTTIME" of the agent process that owns the
  job, or "detached"): when the owner process is gone — the agent was killed,
  even with SIGKILL — it stops the job, so a killed center really loses its work;
- on SIGTERM, or when ``JOBDIR/cancel`` appears, stops the job: SIGTERM to the
  job's process group, SIGKILL after GRACE_S seconds;
- when the job ends, kills whatever the job left behind in its process group and
  writes ``JOBDIR/exit.json`` atomically: exit code (128+N for signal N), the
  signal, why it was stopped (``cancel``, ``orphaned`` or null) and the end time.

Deliberately standard-library only and free of computenet imports: it starts in
milliseconds and keeps working whatever the agent's environment does.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

_TICK_S = 0.1
_OWNER_CHECK_S = 0.5


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
    if text == "detached" or not text:
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
    child = subprocess.Popen(["bash", "-c", command], process_group=0)
    _write_json(os.path.join(jobdir, "child.json"), {"pid": child.pid, "pgid": child.pid})

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
