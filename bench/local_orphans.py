"""How long a local job outlives its agent: SIGKILL the agent, time until the job is gone.

Each round starts, as a child process, a stand-in agent — a `LocalBackend` in
its own process, as the real agent holds it — submits one job (``sleep 300``,
or with ``--escape`` one that also starts ``setsid sleep 300``, a process that
leaves the job's process group) and SIGKILLs the stand-in once the job runs.
The figure is the real time from the SIGKILL until every process of the job is
gone (a zombie counts as gone), measured by polling ``/proc`` every 10 ms.
The job dies when its supervisor notices the agent is gone (it checks every
0.5 s) and SIGTERMs its process group; with a dynamic uid (an agent running as
root) the supervisor then kills every process left with the job's uid.

    .venv/bin/python bench/local_orphans.py --rounds 10 [--escape]

Prints the median, p95 and max over the rounds, and the uid the jobs ran as.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

AGENT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {src!r})
    from computenet.backends.local import LocalBackend
    from computenet.backends.base import BackendJob
    b = LocalBackend({state!r}, {{"H100": 1}}, grace_s=5.0)
    b.submit(BackendJob("bench", 1, {command!r}, "H100", 1), "bench:1")
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pids(path: Path, want: int) -> list[int]:
    try:
        pids = [int(x) for x in path.read_text().split()]
    except (OSError, ValueError):
        return []
    return pids if len(pids) >= want else []


def one_round(escape: bool) -> tuple[float, int]:
    """(seconds from SIGKILL to the job gone, the job's uid)."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o1777)  # the job (maybe another uid) writes its pids here
        pidfile = Path(d) / "pids"
        command = f"echo $$ >> {pidfile}; sleep 300"
        if escape:
            command = f"setsid sleep 300 & echo $! >> {pidfile}; " + command
        script = AGENT.format(src=SRC, state=f"{d}/state", command=command)
        agent = subprocess.Popen([sys.executable, "-c", script])
        try:
            deadline = time.monotonic() + 30
            while not (pids := _pids(pidfile, 2 if escape else 1)):
                if time.monotonic() > deadline:
                    raise RuntimeError("the job did not start")
                time.sleep(0.01)
            uid = os.stat(f"/proc/{pids[-1]}").st_uid
            time.sleep(0.3)
            t0 = time.monotonic()
            agent.kill()
            agent.wait()
            while any(_alive(p) for p in pids):
                if time.monotonic() - t0 > 60:
                    raise RuntimeError(f"job processes {pids} outlived their agent by 60 s")
                time.sleep(0.01)
            return time.monotonic() - t0, uid
        finally:
            agent.kill()
            agent.wait()


def main() -> int:
    """Run the rounds and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--escape", action="store_true", help="the job also leaves its group")
    args = ap.parse_args()
    times, uids = [], set()
    for _ in range(args.rounds):
        dt, uid = one_round(args.escape)
        times.append(dt)
        uids.add(uid)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    print(
        f"agent SIGKILLed -> job gone ({args.rounds} rounds, escape={args.escape}, "
        f"agent uid {os.geteuid()}, job uids {sorted(uids)[:3]}{'...' if len(uids) > 3 else ''}):"
        f" median {statistics.median(times):.2f} s, p95 {p95:.2f} s, max {times[-1]:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
