"""The price of hierarchy in time (issue 9, item 9): two levels against one, in one run.

(a) **Placements/s through two levels against one.** The same pending jobs
    (the synthetic workload on ``china``, ``--batch`` of them, as one
    scheduling cycle sees them) are placed on the same snapshot by the
    scheduler alone (`schedule_cycle`, the flat plane) and by the two-level
    policy of the simulator (`computenet.sim.federation`: the national level
    picks a region, the region's own `schedule_cycle` picks the center) over
    the hubs grouped into 1, 2, 4 and all regions, with each pricing
    (``quoted``: every region quotes every job; ``declared``: the national
    plane's own cycle over the network of regions). Runs alternate, flat
    first, ``--repeats`` times; medians, and each ratio to flat.

(b) **Submit → RUNNING through the hierarchy against direct submission to the
    region**, with real processes on 127.0.0.1 (the set-up of
    tests/integration/test_federation.py): a national plane whose one center
    ``gba`` is a region, the network agent (``cnet agent --backend
    network``), the region's plane and a local agent for each of its two
    centers. Jobs (``touch MARKER; sleep S``, one H100) alternate, one at a
    time: submitted to the national plane by its user, or straight to the
    region by the region's account. Two clocks: the job's process starting
    (its marker file appears; polled every 10 ms) and the submitter seeing
    RUNNING (``GET /api/v1/jobs/{id}``, every ``--client-poll`` s). For the
    hierarchy the time is split at the regional job's creation (its name
    ``cn/ID:1`` listed by the region: national cycle, lease, network agent's
    submit). Planes: cycle every 0.2 s, heartbeat 0.3 s (the test's).

Prints the date, the cores and ``uptime`` (a high load average means other
work shared the machine), then medians and ratios.

Run: .venv/bin/python bench/federation.py [--jobs 20] [--batch 500] [--repeats 5]
     [--skip-processes | --skip-placements]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from computenet.catalog import load_network  # noqa: E402
from computenet.model import JobState  # noqa: E402
from computenet.scheduler import build_snapshot, schedule_cycle  # noqa: E402
from computenet.sim.federation import federated_policy, hub_regions  # noqa: E402
from computenet.sim.policies import SchedulerPolicy, make_policy  # noqa: E402
from computenet.sim.results import DEFAULT_EPOCH  # noqa: E402
from computenet.sim.runner import parse_workload  # noqa: E402

STARTED = (JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def uptime() -> str:
    """`uptime`'s line (load averages)."""
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except OSError:
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def med(xs: Sequence[float]) -> float:
    """Median (nan for none)."""
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------- (a)


def placements(args: argparse.Namespace) -> None:
    """Time flat and two-level placement of one cycle's jobs, alternating."""
    net = load_network("china")
    wl = parse_workload(args.workload, net)
    now = DEFAULT_EPOCH + timedelta(hours=args.at_h)
    jobs = [
        wl.request(i, DEFAULT_EPOCH) for i in range(min(args.batch, len(wl)))
    ]  # one cycle's pending set, as the simulator hands it over (max_batch 512)
    jobs = [j if j.deadline is None or j.deadline > now else _late(j, now) for j in jobs]
    snap = build_snapshot(net, now, patience_h=4.0)
    inner = make_policy(args.policy)
    assert isinstance(inner, SchedulerPolicy)
    variants: list[tuple[str, Callable[[], int]]] = []

    def flat() -> int:
        ds = schedule_cycle(snap, jobs, inner.profile, strategy=inner.strategy, explain=False)
        return sum(d.placement is not None for d in ds)

    variants.append(("flat (scheduler alone)", flat))
    for n in (1, 2, 4, None):
        regions = hub_regions(net, n)
        for pricing in ("quoted", "declared"):
            pol = federated_policy(net, regions, args.policy, pricing)

            def two(pol: Any = pol) -> int:
                # A fresh run each time: nothing kept from the last call on this snapshot.
                pol.reset()
                return sum(d.placement is not None for d in pol(snap, jobs))

            variants.append((f"two levels, {len(regions)} regions, {pricing}", two))
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    placed: dict[str, int] = {}
    for name, fn in variants:  # warm-up: filter masks and transfer estimates memoized
        placed[name] = fn()
    for _ in range(args.repeats):
        for name, fn in variants:
            t0 = time.perf_counter()
            placed[name] = fn()
            times[name].append(time.perf_counter() - t0)
    base = med(times[variants[0][0]])
    base_rate = placed[variants[0][0]] / base
    print(
        f"\n(a) one cycle of {len(jobs)} pending jobs on china ({args.workload},"
        f" {args.policy}), median of {args.repeats}"
    )
    print(f"{'placement':38s} {'placed':>6s} {'s':>8s} {'placements/s':>13s} {'vs flat':>8s}")
    for name, _ in variants:
        t = med(times[name])
        rate = placed[name] / t if t > 0 else float("nan")
        print(f"{name:38s} {placed[name]:6d} {t:8.3f} {rate:13,.0f} {rate / base_rate:7.2f}×")


def _late(job: Any, now: datetime) -> Any:
    """A job whose deadline passed before the cycle: keep it, without the deadline."""
    from dataclasses import replace

    return replace(job, deadline=None)


# --------------------------------------------------------------------------- (b)


@dataclass
class Sample:
    """One job: which way, seconds from submit to the process starting and to RUNNING seen."""

    way: str
    started_s: float
    running_s: float
    delegated_s: float = float("nan")  # hierarchy: submit → the regional job exists


def processes(args: argparse.Namespace) -> None:
    """Real national + region planes; jobs alternate through the hierarchy and direct."""
    from tests.helpers.federation import federation, job

    rng = random.Random(7)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="cnet-fedbench-"))
        fed = stack.enter_context(federation(Path(tmp)))
        samples: list[Sample] = []
        # Jobs run as another user (the local backend's run_as): their markers go to a
        # directory anyone may write to, outside the bench's private temp dir.
        marks = Path(tempfile.mkdtemp(prefix="cnet-fedbench-marks-"))
        marks.chmod(0o777)
        stack.callback(shutil.rmtree, marks, True)
        for i in range(2 * args.jobs + 2):
            way = "hierarchy" if i % 2 == 0 else "direct"
            marker = marks / f"m{i}"
            spec = job(f"touch {marker}; sleep {args.run_s}")
            spec["name"] = f"bench-{i}"
            client = fed.user if way == "hierarchy" else fed.link
            t0 = time.monotonic()
            view = client.submit(spec)
            started = running = delegated = float("nan")
            deadline = t0 + args.timeout
            next_poll = t0
            while time.monotonic() < deadline and (started != started or running != running):
                now = time.monotonic()
                if started != started and marker.exists():
                    started = now - t0
                if now >= next_poll:
                    next_poll = now + args.client_poll
                    if running != running and client.job(view.id).state in STARTED:
                        running = time.monotonic() - t0
                    if way == "hierarchy" and delegated != delegated and fed.child_jobs(view.id):
                        delegated = time.monotonic() - t0
                time.sleep(0.01)
            if started != started or running != running:
                raise TimeoutError(
                    f"job {i} ({way}) did not start in {args.timeout} s\n{fed.logs()}"
                )
            client.wait(view.id, poll_s=0.1, timeout_s=args.timeout)
            if i >= 2:  # the first of each way warms the planes and agents up
                samples.append(Sample(way, started, running, delegated))
            time.sleep(rng.uniform(0, args.gap))
    hier = [s for s in samples if s.way == "hierarchy"]
    direct = [s for s in samples if s.way == "direct"]
    print(f"\n(b) submit → RUNNING, {len(hier)} jobs each way, alternating; medians (p95) in s")
    print(f"{'':28s} {'hierarchy':>16s} {'direct':>16s} {'ratio':>7s} {'added':>7s}")
    for label, key in (
        ("process started", "started_s"),
        ("RUNNING seen by submitter", "running_s"),
    ):
        h = [getattr(s, key) for s in hier]
        d = [getattr(s, key) for s in direct]
        print(
            f"{label:28s} {med(h):8.3f} ({_p95(h):5.2f}) {med(d):8.3f} ({_p95(d):5.2f})"
            f" {med(h) / med(d):6.2f}× {med(h) - med(d):+7.3f}"
        )
    dl = [s.delegated_s for s in hier if s.delegated_s == s.delegated_s]
    print(
        f"hierarchy: submit → regional job created {med(dl):.3f} s (national cycle, lease,"
        " network agent's submit); the rest is the region's own path"
    )


def _p95(xs: Sequence[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.95 * len(s)))] if s else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Parse options, run (a) and (b), print."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", default="synthetic:jobs=5000,days=3,seed=11")
    p.add_argument("--policy", default="ours", help="the scheduler at both levels")
    p.add_argument("--batch", type=int, default=500, help="pending jobs in the timed cycle")
    p.add_argument("--at-h", type=float, default=20.0, help="the cycle's hour after the epoch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--jobs", type=int, default=20, help="jobs each way in (b)")
    p.add_argument("--run-s", type=float, default=0.3, help="how long each job of (b) runs")
    p.add_argument("--gap", type=float, default=0.3, help="random pause between jobs (s)")
    p.add_argument("--client-poll", type=float, default=0.05)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--skip-placements", action="store_true")
    p.add_argument("--skip-processes", action="store_true")
    args = p.parse_args(argv)
    print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; {os.cpu_count()} cores; {uptime()}")
    if not args.skip_placements:
        placements(args)
    if not args.skip_processes:
        with contextlib.suppress(KeyboardInterrupt):
            processes(args)
    print(f"end: {uptime()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
