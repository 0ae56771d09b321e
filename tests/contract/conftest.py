"""The backend contract suite's fixture: one `Harness` per backend.

Adding a backend is one decorated factory below (above the `harness` fixture):

    @backend_harness("slurm", marks=[pytest.mark.services])
    def _slurm(tmp_path: Path) -> Iterator[Harness]:
        cluster = start_or_find_slurm()               # fail, don't skip, when CI=true
        yield Harness(make=lambda: SlurmBackend(...), chip="CPU-node", timeout_s=120)

`make()` must build a *new* backend object over the same state each time it is
called (same state dir, same cluster): that is how the suite checks that a
restarted agent re-attaches to its jobs.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from computenet.backends.base import Backend, BackendJob, BackendState, BackendStatus
from computenet.backends.fake import FakeBackend, FakeCluster
from computenet.backends.local import LocalBackend

FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}


@dataclass
class Harness:
    """How the contract suite drives one backend."""

    make: Callable[[], Backend]
    chip: str
    poll_s: float = 0.05
    timeout_s: float = 30.0
    made: list[Backend] = field(default_factory=list)

    def backend(self) -> Backend:
        """A new backend object over the harness's state."""
        b = self.make()
        self.made.append(b)
        return b

    def job(self, command: str, *, count: int = 1, env: dict[str, str] | None = None) -> BackendJob:
        """A one-chip job with a fresh id."""
        return BackendJob(
            job_id=f"ct-{uuid.uuid4().hex[:10]}",
            attempt=1,
            command=command,
            chip=self.chip,
            count=count,
            env=env or {},
            planned_run_s=1.0,
        )

    def wait(
        self, backend: Backend, handle: str, until: Callable[[BackendStatus], bool]
    ) -> BackendStatus:
        """Poll until `until(status)` holds; fail the test after `timeout_s`."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            status = backend.poll([handle])[handle]
            if until(status):
                return status
            if time.monotonic() > deadline:
                pytest.fail(f"{handle} stuck in {status.state} ({status.message})")
            time.sleep(self.poll_s)

    def wait_final(self, backend: Backend, handle: str) -> BackendStatus:
        """Poll until the job ended."""
        return self.wait(backend, handle, lambda s: s.state in FINAL)

    def wait_running(self, backend: Backend, handle: str) -> BackendStatus:
        """Poll until the job runs (or ended)."""
        return self.wait(backend, handle, lambda s: s.state is not BackendState.PENDING)

    def all_logs(self, backend: Backend, handle: str) -> str:
        """The job's whole output, read the way the agent reads it."""
        text, offset = "", 0
        while True:
            chunk, offset = backend.logs(handle, offset)
            if not chunk:
                return text
            text += chunk


Factory = Callable[[Path], Iterator[Harness]]
HARNESSES: dict[str, Factory] = {}
BACKEND_PARAMS: list[Any] = []


def backend_harness(name: str, marks: list[pytest.MarkDecorator] | None = None) -> Any:
    """Register a harness factory for backend `name` (one more param of `harness`)."""

    def register(factory: Factory) -> Factory:
        HARNESSES[name] = factory
        BACKEND_PARAMS.append(pytest.param(name, id=name, marks=marks or []))
        return factory

    return register


@backend_harness("fake")
def _fake(tmp_path: Path) -> Iterator[Harness]:
    cluster = FakeCluster()
    yield Harness(
        make=lambda: FakeBackend({"H100": 2}, cluster=cluster, center="ct-center"),
        chip="H100",
        poll_s=0.0,
    )


@backend_harness("local")
def _local(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(
        make=lambda: LocalBackend(tmp_path / "local-state", {"CPU-node": 2}, grace_s=2.0),
        chip="CPU-node",
    )
    yield harness
    for b in harness.made:  # no job outlives the test
        with contextlib.suppress(Exception):
            b.close()


# The harnesses of backends that drive external schedulers (slurm, ray, kubernetes-fake)
# register themselves on import; it must happen before `harness` reads BACKEND_PARAMS.
from tests.contract import backends_real  # noqa: E402, F401


@pytest.fixture(params=BACKEND_PARAMS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """A harness for each registered backend."""
    yield from HARNESSES[request.param](tmp_path)
