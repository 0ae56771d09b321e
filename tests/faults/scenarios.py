"""The fault scenarios, each a function of a fresh `Cluster` returning (outcome, what was injected).

Shared by the tests (tests/faults/test_faults.py, which `check` every outcome)
and bench/faults_report.py (which prints the table in docs/reliability.md).
Sizes are bounded: tens of jobs of a few seconds, lease timeouts of a few seconds.
"""

from __future__ import annotations

import random
import shutil
import signal
import time

from tests.faults.harness import Cluster, Outcome


def agents_killed(
    c: Cluster, *, jobs: int = 30, kills: int = 4, seed: int = 1
) -> tuple[Outcome, str]:
    """(a) SIGKILL the busiest agent every 2 s while jobs run; restart it a second later."""
    rnd = random.Random(seed)
    c.start()
    ids = c.submit(jobs, run_s=4.0)
    c.until("the first jobs to run", lambda: c.running_at(ids), timeout=60)
    done = 0
    for _ in range(kills):
        time.sleep(1.0)  # the fault's schedule (a kill every 2 s) is what is tested, not a wait
        busy = c.running_at(ids)
        victim = max(c.centers, key=lambda x: (len(busy.get(x, [])), rnd.random()))
        c.kill_agent(victim)
        done += 1
        time.sleep(1.0)  # the agent stays dead this long: part of the fault
        c.start_agent(victim)
    c.wait_final(ids)
    return c.outcome(ids), f"{done} agent SIGKILLs, 2 s apart, each restarted 1 s later"


def server_killed(c: Cluster, *, jobs: int = 30, down_s: float = 1.0) -> tuple[Outcome, str]:
    """(b) SIGKILL the control plane while it dispatches, restart it `down_s` later.

    With a 10 s lease timeout the agents fence after 5 s without an acknowledged
    heartbeat: a restart (a few seconds here) should cost no running job.
    """
    c.lease_timeout = 10.0
    c.start()
    ids = c.submit(jobs, run_s=3.0)
    # Mid-dispatch: some jobs leased and running, others still being placed and leased.
    c.until("the first jobs to run", lambda: c.running_at(ids), timeout=60)
    c.kill_server()
    t0 = time.monotonic()
    time.sleep(down_s)  # the outage's length is the fault under test
    c.start_server()
    outage = time.monotonic() - t0
    c.wait_final(ids)
    return c.outcome(ids), f"control plane SIGKILLed mid-dispatch, back after {outage:.1f} s"


def partition(c: Cluster, mode: str, *, jobs: int = 8) -> tuple[Outcome, str]:
    """(c) Cut one agent off the control plane (`mode`) past the lease timeout, then heal."""
    c.start(proxied=("east",))
    ids = c.submit(jobs, run_s=4.0)
    c.until("jobs running at east", lambda: c.running_at(ids).get("east"), timeout=60)
    proxy = c.proxies["east"]
    proxy.set_mode(mode)
    held = c.lease_timeout * 1.25 + 2.0  # past the requeue: east's jobs run elsewhere
    time.sleep(held)  # the partition's length is the fault under test
    proxy.set_mode("pass")
    c.wait_final(ids)
    return c.outcome(ids), f"east partitioned ({mode}) for {held:.1f} s, then healed"


def slow_link(c: Cluster, *, jobs: int = 8, delay_s: float = 0.1) -> tuple[Outcome, str]:
    """(c) A slow link (each chunk held `delay_s`) between one agent and the control plane."""
    c.lease_timeout = 8.0  # fence at 4 s: room for slow calls on a loaded machine
    c.start(proxied=("east",))
    proxy = c.proxies["east"]
    ids = c.submit(jobs, run_s=3.0)
    c.until("jobs running at east", lambda: c.running_at(ids).get("east"), timeout=60)
    proxy.set_mode("delay", delay_s=delay_s)
    time.sleep(6.0)  # how long the link stays slow is the fault under test
    proxy.set_mode("pass")
    c.wait_final(ids)
    return c.outcome(ids), f"east's link delayed {delay_s:g} s per chunk for 6 s (T = 8 s)"


def brief_outage(c: Cluster, *, jobs: int = 8) -> tuple[Outcome, str]:
    """A control-plane outage shorter than the fence (T/2): no running job may be stopped."""
    c.lease_timeout = 8.0  # fence at 4 s
    c.start(proxied=c.centers)
    ids = c.submit(jobs, run_s=6.0)
    c.until("all jobs running", lambda: sum(len(v) for v in c.running_at(ids).values()) == jobs)
    # Half the fence: the other half covers the heartbeat interval and the retry backoff.
    outage = c.lease_timeout / 2 * 0.5
    for p in c.proxies.values():
        p.set_mode("drop")
    time.sleep(outage)  # the outage's length (under the fence) is what is tested
    for p in c.proxies.values():
        p.set_mode("pass")
    c.wait_final(ids)
    return c.outcome(
        ids
    ), f"every agent cut off for {outage:.1f} s (< T/2 = {c.lease_timeout / 2:g} s)"


def lease_reply_lost(c: Cluster) -> tuple[Outcome, str]:
    """(d) The reply to a lease call never reaches the agent (half-open link during the lease)."""
    c.start(proxied=c.centers)
    for p in c.proxies.values():
        # Lease requests arrive and are acted on; their replies never come back.
        p.set_mode("lose-replies", match=b"POST /center/v1/lease ")
    ids = c.submit(3, run_s=1.0)

    def leased() -> bool:
        return all(
            any("leased by" in e["message"] for e in c.get(f"/api/v1/jobs/{j}")["events"])
            for j in ids
        )

    c.until("the lease calls to be answered (into the void)", leased, timeout=60)
    for p in c.proxies.values():
        p.set_mode("pass")
    c.wait_final(ids)
    return c.outcome(ids), "the replies of the lease calls for 3 jobs were lost"


def agent_state_lost(c: Cluster, *, jobs: int = 4) -> tuple[Outcome, str]:
    """(f) An agent stopped with --keep-jobs (its jobs live on), restarted without its state."""
    for center in c.centers:
        c.agent_args[center] = ["--keep-jobs"]
    c.start()
    ids = c.submit(jobs * len(c.centers), run_s=6.0)
    c.until("jobs running at east", lambda: c.running_at(ids).get("east"), timeout=60)
    c.kill_agent("east", signal.SIGTERM)  # --keep-jobs: its jobs keep running, detached
    state = c.tmp / "east" / "state"
    for name in ("agent-state.json",):
        (state / name).unlink(missing_ok=True)
    shutil.rmtree(state / "tmp", ignore_errors=True)
    c.start_agent("east")
    ids_left = ids
    c.wait_final(ids_left)
    return c.outcome(ids), "east restarted with its state file deleted, its jobs still running"


def _slurm_env(conf: str) -> dict[str, str]:
    import os

    return {**os.environ, "SLURM_CONF": conf, "CNET_SERVICE": "slurm"}


def slurmctld_up(conf: str) -> bool:
    """Whether slurmctld answers `scontrol ping`."""
    import subprocess

    try:
        out = subprocess.run(
            ["scontrol", "ping"], env=_slurm_env(conf), capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "UP" in out.stdout


def restart_slurmctld(conf: str) -> float:
    """Stop slurmctld (by its pid file) and start it again; seconds it was down.

    Only slurmctld: slurmd keeps running the jobs and slurmdbd keeps the
    accounting, as in a controller failover. Other tests share this Slurm, so
    the caller makes sure it is back (`ensure_slurmctld`).
    """
    import os
    import subprocess
    from pathlib import Path

    from tests.helpers.processes import pid_alive

    pidfile = Path(conf).parent / "slurmctld.pid"
    pid = int(pidfile.read_text().strip())
    t0 = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the controller is away a moment while jobs run
    subprocess.run(
        ["slurmctld"],
        env=_slurm_env(conf),
        stdin=subprocess.DEVNULL,
        check=True,
        timeout=60,
    )
    deadline = time.monotonic() + 60
    while not slurmctld_up(conf) and time.monotonic() < deadline:
        time.sleep(0.2)
    return time.monotonic() - t0


def ensure_slurmctld(conf: str) -> None:
    """Start slurmctld again if it is not answering (other helpers and tests share it)."""
    import subprocess
    from pathlib import Path

    if slurmctld_up(conf):
        return
    repo = Path(__file__).resolve().parents[2]
    subprocess.run(["bash", str(repo / "scripts" / "services.sh"), "start", "slurm"], timeout=300)


def slurmctld_restarted(c: Cluster, conf: str, *, jobs: int = 4) -> tuple[Outcome, str]:
    """(e) slurmctld restarted while a Slurm center's jobs run: each completes exactly once."""
    import uuid

    out = c.tmp / "slurm-out"
    out.mkdir(exist_ok=True)
    out.chmod(0o711)
    opts = {
        "partition": "debug",
        "account": "cnet",
        "chips_as": "cpus",
        "slurm_conf": conf,
        "output_dir": str(out),
        "prefix": f"flt{uuid.uuid4().hex[:6]}",
    }
    args = ["--backend", "slurm"]
    for k, v in opts.items():
        args += ["--backend-opt", f"{k}={v}"]
    c.agent_args[c.centers[0]] = args
    c.lease_timeout = 8.0  # fence at 4 s; slurmctld is away a few seconds
    c.start()
    ids = c.submit(jobs, run_s=8.0)
    c.until(
        "the Slurm jobs to run",
        lambda: len(c.running_at(ids).get(c.centers[0], [])) == jobs,
        timeout=120,
    )
    try:
        down = restart_slurmctld(conf)
    finally:
        ensure_slurmctld(conf)
    c.wait_final(ids)
    return c.outcome(ids), f"slurmctld stopped and restarted mid-job ({down:.1f} s)"
