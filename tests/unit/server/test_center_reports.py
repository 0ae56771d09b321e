"""A center's job reports are checked, not believed: states agree with exit codes and cancels,
the state-change table holds, and log appends leave no gap (docs/center-protocol.md).

Through the HTTP API on the demo network, where ``zhongwei`` has H100s. Jobs start now
(patience 0), so every test leases its job in the first cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit.server.conftest import Net, job_spec, make_net

CID = "zhongwei"
H100 = {"count": 1, "types": ["H100"]}


@pytest.fixture
def net(db_url: str) -> Iterator[Net]:
    """The demo control plane with jobs started at once (no waiting for a cheaper hour)."""
    yield from make_net(db_url, patience_h=0)


def _leased(net: Net) -> tuple[str, int]:
    net.register(CID)
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    (leased,) = net.lease(CID)
    assert leased["job_id"] == job_id
    return job_id, int(leased["attempt"])


def _running(net: Net) -> tuple[str, int]:
    job_id, attempt = _leased(net)
    assert net.report(CID, job_id, attempt, "RUNNING").status_code == 200
    return job_id, attempt


def _error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json().get("field", "")


def _log(net: Net, job_id: str, attempt: int, offset: int, text: str) -> Any:
    return net.client.post(
        f"/center/v1/jobs/{job_id}/logs",
        json={"attempt": attempt, "offset": offset, "text": text},
        headers=net.center(CID),
    )


def _user_log(net: Net, job_id: str) -> str:
    r = net.client.get(f"/api/v1/jobs/{job_id}/logs", headers=net.user())
    assert r.status_code == 200, r.text
    return str(r.json()["text"])


def test_succeeded_with_a_nonzero_exit_code_is_refused_and_the_job_keeps_running(
    net: Net,
) -> None:
    job_id, attempt = _running(net)
    r = net.report(CID, job_id, attempt, "SUCCEEDED", exit_code=3)
    assert _error(r) == (422, "exit_code"), r.text
    assert "FAILED" in r.json()["hint"]
    assert net.job(job_id)["state"] == "RUNNING"
    assert net.report(CID, job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    assert (net.job(job_id)["state"], net.job(job_id)["exit_code"]) == ("SUCCEEDED", 0)


def test_failed_needs_a_nonzero_exit_code_or_a_message_saying_why(net: Net) -> None:
    job_id, attempt = _running(net)
    for bare in ({}, {"exit_code": 0}, {"message": "   "}):
        r = net.report(CID, job_id, attempt, "FAILED", **bare)
        assert _error(r) == (422, "exit_code"), (bare, r.text)
    assert net.job(job_id)["state"] == "RUNNING"
    r = net.report(CID, job_id, attempt, "FAILED", exit_code=137, message="killed by signal 9")
    assert r.status_code == 200, r.text
    assert (net.job(job_id)["state"], net.job(job_id)["exit_code"]) == ("FAILED", 137)


def test_failed_with_a_message_and_no_exit_code_is_a_job_that_never_ran(net: Net) -> None:
    job_id, attempt = _leased(net)
    r = net.report(CID, job_id, attempt, "FAILED", message="staging failed: no source")
    assert r.status_code == 200, r.text
    job = net.job(job_id)
    assert (job["state"], job["exit_code"]) == ("FAILED", None)


def test_cancelled_for_a_job_nobody_cancelled_is_refused(net: Net) -> None:
    job_id, attempt = _running(net)
    r = net.report(CID, job_id, attempt, "CANCELLED")
    assert _error(r) == (409, "state"), r.text
    assert "heartbeat" in r.json()["hint"]
    assert net.job(job_id)["state"] == "RUNNING"
    cancel = net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=net.user())
    assert cancel.status_code == 200, cancel.text
    assert net.report(CID, job_id, attempt, "CANCELLED").status_code == 200
    assert net.job(job_id)["state"] == "CANCELLED"


@pytest.mark.parametrize(
    ("path", "state", "code"),
    [
        pytest.param([], "SUCCEEDED", 409, id="succeeded-straight-after-the-lease"),
        pytest.param(["RUNNING"], "STAGING", 409, id="staging-after-running"),
        pytest.param(["RUNNING"], "RUNNING", 200, id="running-again-is-a-repeat"),
        pytest.param(["STAGING"], "RUNNING", 200, id="running-after-staging"),
        pytest.param([], "RUNNING", 200, id="running-without-staging"),
    ],
)
def test_the_state_change_table_after_a_lease(
    net: Net, path: list[str], state: str, code: int
) -> None:
    job_id, attempt = _leased(net)
    for step in path:
        assert net.report(CID, job_id, attempt, step).status_code == 200
    r = net.report(CID, job_id, attempt, state, exit_code=0 if state == "SUCCEEDED" else None)
    assert r.status_code == code, r.text
    if code == 409:
        assert r.json()["field"] == "state"


def test_a_final_job_takes_no_other_final_state(net: Net) -> None:
    job_id, attempt = _running(net)
    assert net.report(CID, job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    r = net.report(CID, job_id, attempt, "FAILED", exit_code=1)
    assert _error(r) == (409, "state"), r.text
    assert net.report(CID, job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200


def test_a_log_append_past_the_end_is_refused_naming_the_offset_to_send_from(net: Net) -> None:
    job_id, attempt = _running(net)
    assert _log(net, job_id, attempt, 0, "héllo\n").json() == {"appended": 7}
    r = _log(net, job_id, attempt, 10, "gap")
    assert _error(r) == (422, "offset"), r.text
    assert "from byte 7" in r.json()["hint"]
    assert _user_log(net, job_id) == "héllo\n"
    assert _log(net, job_id, attempt, 7, "next\n").json() == {"appended": 5}
    assert _user_log(net, job_id) == "héllo\nnext\n"


def test_a_resent_or_overlapping_append_keeps_the_first_bytes(net: Net) -> None:
    job_id, attempt = _running(net)
    assert _log(net, job_id, attempt, 0, "abc\n").json() == {"appended": 4}
    assert _log(net, job_id, attempt, 0, "abc\n").json() == {"appended": 0}  # a resend
    assert _log(net, job_id, attempt, 2, "XYmore\n").json() == {"appended": 5}  # "XY" overlaps
    assert _user_log(net, job_id) == "abc\nmore\n"


def test_a_center_that_is_not_a_region_cannot_bill_its_own_prices(net: Net) -> None:
    job_id, attempt = _running(net)
    usage = {"attempt": attempt, "run_real_s": 1.0, "staging_real_s": 0.0, "bytes_staged": 0}
    own_bill = {**usage, "metered": {"energy_cny": "999999.00", "service_cny": "0.00"}}
    r = net.client.post(f"/center/v1/jobs/{job_id}/usage", json=own_bill, headers=net.center(CID))
    assert _error(r) == (422, "metered"), r.text
    # Without it, the same report is taken and the run is billed by the network's meter.
    r = net.client.post(f"/center/v1/jobs/{job_id}/usage", json=usage, headers=net.center(CID))
    assert r.status_code == 200, r.text
