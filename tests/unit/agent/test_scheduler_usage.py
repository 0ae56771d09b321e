"""The agent puts a backend's own accounting (`accounting(handle)`) into the usage report."""

from __future__ import annotations

import threading
from pathlib import Path

from computenet.agent import Agent, AgentConfig
from computenet.backends.local import LocalBackend
from computenet.protocol.center import SchedulerUsage
from tests.unit.agent.fakeplane import FakePlane, lease


class _Accounted(LocalBackend):
    """A local backend that also answers `accounting`, as the Slurm backend does."""

    fail = False

    def accounting(self, handle: str) -> SchedulerUsage | None:
        if self.fail:
            raise RuntimeError("slurmdbd is down")
        return SchedulerUsage(scheduler="test", job_id=handle, state="COMPLETED", elapsed_s=7)


def _run(tmp_path: Path, backend: LocalBackend) -> FakePlane:
    plane = FakePlane()
    plane.queue.append(lease("job-1", "true"))
    stop = threading.Event()
    config = AgentConfig(
        center="east",
        server="http://control.test",
        token="tok",
        state_dir=tmp_path / "agent",
        tick_s=0.03,
        lease_interval_s=0.05,
        max_backoff_s=0.3,
    )
    agent = Agent(config, backend=backend, stop_event=stop, transport=plane.transport)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        plane.wait(
            lambda: bool(plane.usage.get("job-1")) and plane.final("job-1") is not None,
            what="the usage report and the final state",
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    return plane


def test_the_backends_accounting_rides_in_the_usage_report(tmp_path: Path) -> None:
    plane = _run(tmp_path, _Accounted(tmp_path / "local", {"H100": 2}))
    (usage,) = plane.usage["job-1"]
    assert usage.scheduler is not None
    assert (usage.scheduler.scheduler, usage.scheduler.elapsed_s) == ("test", 7)


def test_failing_accounting_leaves_the_report_as_it_was(tmp_path: Path) -> None:
    backend = _Accounted(tmp_path / "local", {"H100": 2})
    backend.fail = True
    plane = _run(tmp_path, backend)
    (usage,) = plane.usage["job-1"]
    assert usage.scheduler is None and usage.run_real_s >= 0
    final = plane.final("job-1")
    assert final is not None and final.state == "SUCCEEDED"
