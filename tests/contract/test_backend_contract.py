"""The backend contract (backends/base.py), checked on every backend the same way."""

from __future__ import annotations

import uuid

from computenet.backends.base import Backend, BackendState, Capability, stop_unheld
from tests.contract.conftest import Harness


def test_backend_declares_its_kind_and_capabilities(harness: Harness) -> None:
    backend = harness.backend()
    assert isinstance(backend, Backend)
    assert backend.kind
    assert Capability.CANCEL in backend.capabilities


def test_job_runs_to_success_with_its_logs_and_exit_code(harness: Harness) -> None:
    backend = harness.backend()
    handle = backend.submit(harness.job("echo hello-contract; exit 0"), "k-success")
    status = harness.wait_final(backend, handle)
    assert status.state is BackendState.SUCCEEDED
    assert status.exit_code == 0
    assert "hello-contract" in harness.all_logs(backend, handle)


def test_logs_continue_from_the_offset_they_returned(harness: Harness) -> None:
    backend = harness.backend()
    handle = backend.submit(harness.job("echo first; echo second"), "k-offsets")
    harness.wait_final(backend, handle)
    text, offset = backend.logs(handle, 0)
    assert "first" in text and "second" in text
    assert backend.logs(handle, offset) == ("", offset)


def test_failing_job_is_failed_with_its_exit_code(harness: Harness) -> None:
    backend = harness.backend()
    handle = backend.submit(harness.job("echo oops; exit 3"), "k-fail")
    status = harness.wait_final(backend, handle)
    assert status.state is BackendState.FAILED
    assert status.exit_code == 3
    assert "oops" in harness.all_logs(backend, handle)


def test_job_sees_the_environment_it_was_given(harness: Harness) -> None:
    backend = harness.backend()
    job = harness.job('echo "greeting=$GREETING"', env={"GREETING": "ni-hao"})
    handle = backend.submit(job, "k-env")
    assert harness.wait_final(backend, handle).state is BackendState.SUCCEEDED
    assert "greeting=ni-hao" in harness.all_logs(backend, handle)


def test_cancel_stops_a_running_job_and_is_idempotent(harness: Harness) -> None:
    backend = harness.backend()
    handle = backend.submit(harness.job("sleep 600"), "k-cancel")
    assert harness.wait_running(backend, handle).state is BackendState.RUNNING
    backend.cancel(handle)
    backend.cancel(handle)
    assert harness.wait_final(backend, handle).state is BackendState.CANCELLED
    backend.cancel(handle)  # cancelling a finished job is a no-op
    assert backend.poll([handle])[handle].state is BackendState.CANCELLED


def test_cancel_of_an_unknown_handle_is_a_no_op(harness: Harness) -> None:
    harness.backend().cancel("no-such-handle")


def test_poll_of_an_unknown_handle_is_unknown(harness: Harness) -> None:
    status = harness.backend().poll(["no-such-handle"])["no-such-handle"]
    assert status.state is BackendState.UNKNOWN


def test_capacity_lists_the_pools_and_counts_a_running_job(harness: Harness) -> None:
    backend = harness.backend()
    pools = {p.chip: p for p in backend.capacity()}
    assert harness.chip in pools
    assert all(p.total >= p.free >= 0 for p in pools.values())
    before = pools[harness.chip].free
    handle = backend.submit(harness.job("sleep 600"), "k-capacity")
    harness.wait_running(backend, handle)
    harness.wait(
        backend, handle, lambda _: _free(backend, harness.chip) == before - 1
    )  # backends may report capacity with a lag
    backend.cancel(handle)
    harness.wait_final(backend, handle)
    harness.wait(backend, handle, lambda _: _free(backend, harness.chip) == before)


def test_same_idempotency_key_twice_starts_one_job(harness: Harness) -> None:
    backend = harness.backend()
    marker = f"once-{uuid.uuid4().hex[:8]}"
    job = harness.job(f"echo {marker}")
    first = backend.submit(job, "k-idem")
    second = backend.submit(job, "k-idem")
    assert first == second
    assert backend.find("k-idem") == first
    harness.wait_final(backend, first)
    assert backend.submit(job, "k-idem") == first  # not even after it finished
    assert harness.all_logs(backend, first).count(marker) == 1


def test_find_of_an_unknown_key_is_none(harness: Harness) -> None:
    assert harness.backend().find("never-submitted") is None


def test_restarted_backend_reattaches_to_its_running_job(harness: Harness) -> None:
    first = harness.backend()
    job = harness.job("sleep 600")
    handle = first.submit(job, "k-reattach")
    harness.wait_running(first, handle)

    again = harness.backend()  # the agent restarted
    assert again.find("k-reattach") == handle
    assert again.poll([handle])[handle].state is BackendState.RUNNING
    assert again.submit(job, "k-reattach") == handle  # no duplicate
    again.cancel(handle)
    assert harness.wait_final(again, handle).state is BackendState.CANCELLED


def test_close_keeping_jobs_leaves_a_running_job_to_the_next_backend(harness: Harness) -> None:
    # The agent's `--keep-jobs` stop: close(keep_jobs=True), then a restarted agent takes over.
    first = harness.backend()
    handle = first.submit(harness.job("sleep 600"), "k-close-keep")
    harness.wait_running(first, handle)
    first.close(keep_jobs=True)

    again = harness.backend()
    assert again.find("k-close-keep") == handle
    assert again.poll([handle])[handle].state is BackendState.RUNNING
    again.cancel(handle)
    assert harness.wait_final(again, handle).state is BackendState.CANCELLED


def test_restarted_backend_still_knows_a_finished_job(harness: Harness) -> None:
    first = harness.backend()
    handle = first.submit(harness.job("echo finished-before; exit 4"), "k-finished")
    harness.wait_final(first, handle)

    again = harness.backend()
    assert again.find("k-finished") == handle
    status = again.poll([handle])[handle]
    assert (status.state, status.exit_code) == (BackendState.FAILED, 4)
    assert "finished-before" in harness.all_logs(again, handle)


def _free(backend: Backend, chip: str) -> int:
    return next(p.free for p in backend.capacity() if p.chip == chip)


def test_a_fresh_backend_lists_this_centers_jobs_by_label(harness: Harness) -> None:
    first = harness.backend()
    keys = [f"k-list-{uuid.uuid4().hex[:6]}", f"k-list-{uuid.uuid4().hex[:6]}"]
    handles = {k: first.submit(harness.job("sleep 600"), k) for k in keys}

    again = harness.backend()  # an agent that lost its state file: only the labels are left
    listed = again.list_jobs()
    assert {k: listed.get(k) for k in keys} == handles
    for h in handles.values():
        again.cancel(h)
    for h in handles.values():
        harness.wait_final(again, h)


def test_stop_unheld_stops_only_the_live_jobs_no_agent_holds(harness: Harness) -> None:
    backend = harness.backend()
    tag = uuid.uuid4().hex[:6]
    finished = backend.submit(harness.job("echo done"), f"k-done-{tag}")
    harness.wait_final(backend, finished)
    held = backend.submit(harness.job("sleep 600"), f"k-held-{tag}")
    orphan = backend.submit(harness.job("sleep 600"), f"k-orphan-{tag}")
    harness.wait_running(backend, orphan)

    again = harness.backend()  # restarted with a state file that names only `held`
    keep = {k for k in again.list_jobs() if not k.endswith(tag)} | {f"k-held-{tag}"}
    assert stop_unheld(again, keep) == [orphan]
    assert harness.wait_final(again, orphan).state is BackendState.CANCELLED
    assert again.poll([held])[held].state in (BackendState.PENDING, BackendState.RUNNING)
    assert again.poll([finished])[finished].state is BackendState.SUCCEEDED
    again.cancel(held)
    harness.wait_final(again, held)
