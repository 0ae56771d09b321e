"""The fake backend: deterministic by polls, reads its commands like a tiny shell."""

from __future__ import annotations

import pytest

from computenet.backends.base import BackendJob, BackendState
from computenet.backends.fake import FakeBackend
from computenet.errors import BackendError


def job(command: str, count: int = 1, env: dict[str, str] | None = None) -> BackendJob:
    return BackendJob("j", 1, command, "H100", count, env=env or {})


def states(backend: FakeBackend, handle: str, polls: int) -> list[BackendState]:
    return [backend.poll([handle])[handle].state for _ in range(polls)]


def test_a_job_starts_and_ends_after_the_configured_polls() -> None:
    backend = FakeBackend({"H100": 1}, polls_to_start=2, polls_to_finish=3)
    handle = backend.submit(job("echo hi"), "k")
    assert states(backend, handle, 6) == [
        BackendState.PENDING,
        BackendState.RUNNING,
        BackendState.RUNNING,
        BackendState.RUNNING,
        BackendState.SUCCEEDED,
        BackendState.SUCCEEDED,
    ]


def test_exit_sets_the_code_and_stops_the_script() -> None:
    backend = FakeBackend(polls_to_start=0, polls_to_finish=1)
    handle = backend.submit(job("echo before; exit 7; echo after"), "k")
    status = backend.poll([handle])[handle]
    assert (status.state, status.exit_code) == (BackendState.FAILED, 7)
    assert backend.logs(handle) == ("before\n", 7)


def test_echo_expands_the_environment() -> None:
    backend = FakeBackend(polls_to_start=0)
    handle = backend.submit(job('echo "$WHO on ${CNET_CHIP}"', env={"WHO": "me"}), "k")
    assert backend.logs(handle)[0] == "me on H100\n"


def test_sleep_keeps_a_job_running_for_that_many_polls() -> None:
    backend = FakeBackend(polls_to_start=0, polls_to_finish=1)
    handle = backend.submit(job("sleep 4 && echo done"), "k")
    running, done = BackendState.RUNNING, BackendState.SUCCEEDED
    assert states(backend, handle, 5) == [running, running, running, done, done]


def test_sleep_infinity_runs_until_cancelled() -> None:
    backend = FakeBackend(polls_to_start=0)
    handle = backend.submit(job("sleep infinity"), "k")
    assert set(states(backend, handle, 50)) == {BackendState.RUNNING}
    backend.cancel(handle)
    assert backend.poll([handle])[handle].state is BackendState.CANCELLED


def test_a_full_pool_refuses_a_job() -> None:
    backend = FakeBackend({"H100": 2})
    backend.submit(job("sleep infinity", count=2), "a")
    with pytest.raises(BackendError):
        backend.submit(job("true"), "b")
    assert backend.capacity()[0].free == 0
