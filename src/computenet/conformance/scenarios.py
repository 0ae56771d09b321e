"""The scenarios of the conformance kit: each drives the center and judges what it did.

A scenario takes the running `Kit` and returns a line saying what passed, or
raises `Failed` saying what the center did wrong. They run in `SCENARIOS`
order; the four of `BATCH` share jobs submitted at once (they fit the center's
chips together). docs/center-protocol.md ("Conformance") is their contract.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from computenet.conformance.kit import (
    HEARTBEAT_INTERVAL_S,
    INPUT_BYTES,
    PEER,
    TESTED,
    TESTED_POOLS,
    Failed,
    Kit,
    event_states,
    trace_mtime,
)

# What the kit's main job prints: several appends, multibyte characters.
_OK_LINES = ("conformance: héllo, 世界 ✓", "line 2 — ünïcödé", "done")
_RETRY_LINES = ("retry α", "retry β", "retry γ")

SCENARIOS = (
    "register-and-heartbeat",
    "lease-stage-run",
    "exit-code",
    "corrupt-source-refused",
    "retries-idempotent",
    "cancel",
    "stale-attempt-refused",
    "lease-lost-when-cut-off",
    "center-killed",
    "unknown-protocol-version",
)
"""Every scenario, in the order they run."""


def register_and_heartbeat(kit: Kit) -> str:
    """The center registers (protocol 1, declared capacity, a data URL) and heartbeats."""
    assert kit.proxy is not None
    t0 = time.time()
    regs = kit.until(
        "a successful register",
        lambda: kit.answered(r"/center/v1/register$"),
    )
    body = regs[0].body or {}
    version = str(body.get("protocol_version", "1"))
    if version.split(".")[0] != "1":
        raise Failed(f"registered with protocol_version {version!r}, not 1")
    chips = {p.get("chip") for p in body.get("capacity", [])}
    if not chips or not chips <= set(TESTED_POOLS):
        raise Failed(
            f"registered capacity {body.get('capacity')} is not the declared {TESTED_POOLS}"
        )
    since = regs[0].received
    beats = kit.until(
        "three acknowledged heartbeats",
        lambda: (lambda hb: hb if len(hb) >= 3 else None)(
            kit.answered(r"/center/v1/heartbeat$", since)
        ),
    )
    gaps = [b.received - a.received for a, b in itertools.pairwise(beats)]
    slowest = max(gaps)
    if slowest > kit.rule.fence_after_s:
        raise Failed(
            f"heartbeats {slowest:.1f}s apart, over fence_after_s {kit.rule.fence_after_s}"
        )
    online = kit.until(
        "the control plane to show the center online",
        lambda: any(c.id == TESTED and c.online for c in kit.user.centers()),
    )
    assert online
    return (
        f"registered {regs[0].received - t0:.1f}s after the first check, protocol {version},"
        f" capacity {sorted(chips)}; heartbeats every ≤{slowest:.2f}s"
    )


def submit_batch(kit: Kit) -> None:
    """The jobs of the run scenarios, all at once (they fit the center's chips together)."""
    assert kit.proxy is not None
    ok = "; sleep 0.5; ".join(f"printf '%s\\n' '{line}'" for line in _OK_LINES)
    kit.submit("run", ok, inputs=["corpus"])
    kit.submit("exit-code", "printf 'failing\\n'; exit 3")
    assert kit.traces is not None
    kit.submit("corrupt", f"touch {kit.traces / 'corrupt.ran'}; echo ran", inputs=["corrupt"])
    retry = "; sleep 0.6; ".join(f"printf '%s\\n' '{line}'" for line in _RETRY_LINES)
    rid = kit.submit("retry", retry)
    kit.proxy.lose_reply_once(rf"/center/v1/jobs/{rid}/(logs|status|usage)$")


def lease_stage_run(kit: Kit) -> str:
    """Lease → STAGING → fetch from the peer with a ticket → replica → RUNNING → SUCCEEDED."""
    assert kit.proxy is not None and kit.peer is not None
    jid = kit.jobs["run"]
    done = kit.wait_state(jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the staged job to end")
    if done.state.value != "SUCCEEDED":
        raise Failed(f"ended {done.state.value} ({'; '.join(done.reasons)})")
    states = event_states(done)
    tail = [s for s in states if s in ("STAGING", "RUNNING", "SUCCEEDED")]
    if tail != ["STAGING", "RUNNING", "SUCCEEDED"]:
        raise Failed(
            f"reported {tail}; a job with inputs to fetch goes STAGING, RUNNING, SUCCEEDED"
        )
    if done.exit_code not in (0, None):
        raise Failed(f"SUCCEEDED with exit code {done.exit_code}")
    fetched = [f for f in kit.peer.fetches if f.dataset == "corpus" and f.status == 200]
    if not fetched:
        refused = [f.problem for f in kit.peer.fetches if f.dataset == "corpus"]
        raise Failed(f"never fetched the input from the peer with a valid ticket ({refused})")
    if fetched[0].center != TESTED:
        raise Failed(f"fetched naming itself {fetched[0].center!r} in X-CNet-Center")
    (ds,) = [d for d in kit.user.datasets() if d.id == "corpus"]
    if TESTED not in {r.get("center") for r in ds.replicas}:
        raise Failed("did not report its verified copy (POST /center/v1/datasets/corpus/replicas)")
    want = "".join(f"{line}\n" for line in _OK_LINES)
    got = kit.logs(jid)
    if got != want:
        raise Failed(f"log is {got!r}, the job printed {want!r}")
    appends = [c for c in kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/logs$") if c.status]
    if any(c.status != 200 for c in appends):
        bad = next(c for c in appends if c.status != 200)
        raise Failed(f"a log append was refused {bad.status}: {bad.answer}")
    usage = [
        c.body for c in kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/usage$") if c.status == 200
    ]
    if not usage:
        raise Failed("no usage report (POST /center/v1/jobs/{id}/usage) before the final state")
    u = usage[-1]
    staged = int(u.get("bytes_staged", 0)) or sum(
        int(t.get("bytes", 0)) for t in u.get("transfers", [])
    )
    if staged != INPUT_BYTES:
        raise Failed(f"usage says {staged} bytes staged; it fetched {INPUT_BYTES}")
    sources = {u.get("staged_from")} | {t.get("source") for t in u.get("transfers", [])}
    if PEER not in sources:
        raise Failed(f"usage does not name the source center {PEER!r}: {u}")
    run_s = float(u.get("run_real_s") or 0)
    return (
        f"staged {INPUT_BYTES} bytes from {PEER} (ticket checked, sha256 verified, replica"
        f" reported), {len(appends)} log append(s), usage run {run_s:.2f}s"
    )


def exit_code(kit: Kit) -> str:
    """A command that exits 3 ends FAILED with exit code 3 and its output."""
    jid = kit.jobs["exit-code"]
    done = kit.wait_state(jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the failing job to end")
    if (done.state.value, done.exit_code) != ("FAILED", 3):
        raise Failed(f"ended {done.state.value} with exit code {done.exit_code}; want FAILED, 3")
    if kit.logs(jid) != "failing\n":
        raise Failed(f"log is {kit.logs(jid)!r}, want 'failing\\n'")
    return "FAILED with exit code 3 and its output"


def corrupt_source_refused(kit: Kit) -> str:
    """An input whose only source sends wrong bytes: the job never runs, no replica."""
    assert kit.traces is not None
    jid = kit.jobs["corrupt"]
    done = kit.wait_state(jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the corrupt-input job")
    if done.state.value != "FAILED":
        raise Failed(f"ended {done.state.value}; a job whose inputs cannot be had is FAILED")
    if "RUNNING" in event_states(done) or (kit.traces / "corrupt.ran").exists():
        raise Failed("ran the job on an input whose sha256 does not match")
    (ds,) = [d for d in kit.user.datasets() if d.id == "corrupt"]
    if TESTED in {r.get("center") for r in ds.replicas}:
        raise Failed("reported the corrupt copy as a replica")
    why = "; ".join(done.reasons)
    return f"FAILED before running ({why if len(why) <= 120 else why[:119] + '…'})"


def retries_idempotent(kit: Kit) -> str:
    """The first answer to each log, status and usage call is lost: the center resends."""
    assert kit.proxy is not None
    jid = kit.jobs["retry"]
    done = kit.wait_state(
        jid, {"SUCCEEDED", "FAILED", "CANCELLED"}, "the job whose answers are lost"
    )
    if done.state.value != "SUCCEEDED":
        raise Failed(f"ended {done.state.value} ({'; '.join(done.reasons)})")
    want = "".join(f"{line}\n" for line in _RETRY_LINES)
    got = kit.logs(jid)
    if got != want:
        raise Failed(f"log is {got!r} after resent appends, want {want!r}")
    calls = kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/")
    lost = [c for c in calls if c.lost == "lose-once"]
    kinds = {c.path.rsplit("/", 1)[1] for c in lost}
    for kind in ("logs", "status"):
        if kind not in kinds:
            raise Failed(f"made no {kind} call whose answer could be lost")
    for c in lost:
        # A resend may come after the job is final (the lost answer was the final status's).
        if not _resent(kit, c, within_s=5.0):
            raise Failed(
                f"did not resend {c.path.rsplit('/', 1)[1]} {c.body} after losing its answer"
            )
    return f"{len(lost)} answers lost, each call resent, log and state exactly once"


def _resent(kit: Kit, lost: Any, within_s: float) -> bool:
    """Whether the call whose answer was `lost` is sent again and answered within `within_s`."""
    assert kit.proxy is not None
    deadline = time.monotonic() + within_s
    while True:
        again = kit.proxy.calls_to(re.escape(lost.path) + "$", lost.received + 1e-6)
        if any(d.status == 200 and _resends(lost.body, d.body) for d in again):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _resends(lost: Any, later: Any) -> bool:
    """Whether call body `later` repeats `lost`: the same report, or logs that cover it."""
    if not isinstance(lost, dict) or not isinstance(later, dict):
        return False
    if lost.get("attempt") != later.get("attempt"):
        return False
    if "offset" in lost:  # a log append may be resent with more text behind it
        start, end = int(lost["offset"]), int(lost["offset"]) + len(str(lost["text"]).encode())
        at = int(later.get("offset", -1))
        return at <= start and at + len(str(later.get("text", "")).encode()) >= end
    if "state" in lost:
        return bool(lost["state"] == later.get("state"))
    return True  # usage: the same attempt's usage again


def cancel(kit: Kit) -> str:
    """A user cancels a running job: the center stops it and reports CANCELLED."""
    jid = kit.submit("cancel", kit.looping("cancel"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("cancel")
    asked = time.time()
    kit.user.cancel(jid)
    bound = 2 * HEARTBEAT_INTERVAL_S + kit.rule.stop_grace_s + 2.0
    stopped = kit.stopped_at("cancel", bound + 3.0)
    if stopped is None or stopped - asked > bound:
        ran = "still runs" if stopped is None else f"ran {stopped - asked:.1f}s"
        raise Failed(f"the job {ran} after the cancel (bound {bound:.1f}s)")
    done = kit.wait_state(jid, {"CANCELLED", "SUCCEEDED", "FAILED"}, "CANCELLED")
    if done.state.value != "CANCELLED":
        raise Failed(f"ended {done.state.value} after a cancel")
    return f"stopped {max(0.0, stopped - asked):.1f}s after the cancel (bound {bound:.1f}s)"


def stale_attempt_refused(kit: Kit) -> str:
    """The control plane takes a running job back: reports of the old attempt get 409, it stops."""
    assert kit.proxy is not None
    jid = kit.submit("stale", kit.looping("stale"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("stale")
    switched = time.time()
    _take_back(kit, jid)
    bound = 2 * HEARTBEAT_INTERVAL_S + kit.rule.stop_grace_s + 2.0
    stopped = kit.stopped_at("stale", bound + 3.0)
    if stopped is None or stopped - switched > bound:
        ran = "still runs" if stopped is None else f"ran {stopped - switched:.1f}s"
        raise Failed(f"the job {ran} after its lease was taken back (bound {bound:.1f}s)")
    time.sleep(2 * HEARTBEAT_INTERVAL_S)
    late = switched + bound
    listed = [
        c for c in kit.proxy.calls_to(r"/center/v1/heartbeat$", late)
        if jid in (c.body or {}).get("running", [])
    ]  # fmt: skip
    if listed:
        raise Failed(f"still lists the job in heartbeats {time.time() - switched:.1f}s later")
    reports = kit.proxy.calls_to(rf"/center/v1/jobs/{jid}/", switched)
    accepted = [c for c in reports if c.status is not None and 200 <= c.status < 300]
    if accepted:
        raise Failed(f"the control plane accepted {accepted[0].path} of the old attempt")
    if len(reports) > 10:
        raise Failed(f"sent {len(reports)} refused reports of the old attempt: stop on 409")
    view = kit.job(jid)
    if view.state.value != "CANCELLED":
        raise Failed(f"the job is {view.state.value} after the old attempt's reports")
    codes = sorted({c.status for c in reports if c.status})
    return (
        f"stopped {max(0.0, stopped - switched):.1f}s after the lease moved;"
        f" old attempt's reports answered {codes or 'none sent'}"
    )


def _take_back(kit: Kit, job_id: str) -> None:
    """What a lost lease does at the control plane, now: the job leaves this center.

    Then it is cancelled in the same transaction, so that nothing leases it again.
    """
    from computenet.model import JobState
    from computenet.server.reconciler import lose
    from computenet.store import jobs as job_store
    from computenet.store.db import Database

    now = datetime.fromisoformat(str(kit.user.network()["now"]))
    db = Database(kit.db_url)
    try:
        with db.write() as s:
            job = job_store.get_job(s, job_id, for_update=True)
            assert job is not None
            lose(s, job, TESTED, now, "taken back by the conformance kit")
            job.cancel_requested = True
            job.finished_at = now
            job_store.transition(s, job, JobState.CANCELLED, now, "cancelled by the kit")
    finally:
        db.dispose()


def lease_lost_when_cut_off(kit: Kit) -> str:
    """Cut off mid-run: the center stops the job before the control plane may lease it again."""
    assert kit.proxy is not None
    jid = kit.submit("cut", kit.looping("cut"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("cut")
    kit.proxy.set_mode("cut")
    cut_at = time.time()
    try:
        last = _last_acked_heartbeat(kit, cut_at)
        rule = kit.rule
        stopped = kit.stopped_at("cut", rule.requeue_after_s + 3.0)
        if stopped is None or stopped - last >= rule.requeue_after_s:
            ran = "still runs" if stopped is None else f"ran {stopped - last:.1f}s"
            raise Failed(
                f"the job {ran} after the last acknowledged heartbeat: the control plane may"
                f" lease it again after {rule.requeue_after_s:g}s (fence_after_s"
                f" {rule.fence_after_s:g} + stop_grace_s {rule.stop_grace_s:g})"
            )
        kit.wait_state(jid, {"PENDING"}, "the control plane to take the job back")
        kit.user.cancel(jid)
    finally:
        kit.proxy.set_mode("pass")
    back = time.time()
    kit.until(
        "an acknowledged heartbeat after the link came back",
        lambda: kit.answered(r"/center/v1/heartbeat$", back),
    )
    time.sleep(1.0)
    if time.time() - trace_mtime(kit.trace("cut")) < 1.0:
        raise Failed("the job runs again after the link came back")
    return (
        f"stopped {stopped - last:.1f}s after the last acknowledged heartbeat (fence"
        f" {rule.fence_after_s:g}s + grace {rule.stop_grace_s:g}s; requeue at"
        f" {rule.requeue_after_s:g}s); back online after the cut"
    )


def _last_acked_heartbeat(kit: Kit, before: float) -> float:
    """When the center's last answered heartbeat before `before` arrived (else `before`).

    The fencing rule counts from there: the center knows the control plane heard it.
    """
    assert kit.proxy is not None
    acked = [
        c.received
        for c in kit.proxy.calls_to(r"/center/v1/heartbeat$")
        if c.delivered and c.received <= before
    ]
    return acked[-1] if acked else before


def center_killed(kit: Kit) -> str:
    """SIGKILL the center's process mid-run: its job still stops in time; restarted, it
    joins again and does not bring the job back."""
    assert kit.proxy is not None and kit.center is not None
    jid = kit.submit("killed", kit.looping("killed"))
    kit.wait_state(jid, {"RUNNING"}, "the job to run")
    kit.running_trace("killed")
    killed_at = time.time()
    kit.center.kill()  # the main process only: what it started must notice by itself
    kit.center.wait()
    last = _last_acked_heartbeat(kit, killed_at)
    rule = kit.rule
    stopped = kit.stopped_at("killed", rule.requeue_after_s + 3.0)
    if stopped is None or stopped - last >= rule.requeue_after_s:
        ran = "still runs" if stopped is None else f"ran {stopped - last:.1f}s"
        raise Failed(
            f"the job {ran} after its center was SIGKILLed (last acknowledged heartbeat):"
            f" the control plane may lease it again after {rule.requeue_after_s:g}s"
        )
    # Cancelled while its center is down: never leased again, so nothing may run it now.
    kit.user.cancel(jid)
    back = time.time()
    kit.start_center()
    kit.until(
        "an acknowledged heartbeat from the restarted center",
        lambda: kit.answered(r"/center/v1/heartbeat$", back),
    )
    kit.wait_state(jid, {"CANCELLED"}, "the job to end CANCELLED")
    time.sleep(1.0)
    if time.time() - trace_mtime(kit.trace("killed")) < 1.0:
        raise Failed("the restarted center runs the job again")
    return (
        f"the job stopped {stopped - last:.1f}s after the last acknowledged heartbeat"
        f" (requeue at {rule.requeue_after_s:g}s); restarted, it joined again without it"
    )


def unknown_protocol_version(kit: Kit) -> str:
    """Restarted against a control plane of protocol 2 — one that refuses register with 422
    ``protocol_version``, then one whose register reply says ``"2"`` — it stops, non-zero."""
    assert kit.proxy is not None
    answers = kit.answered(r"/center/v1/register$")
    reply = answers[-1].answer if answers and isinstance(answers[-1].answer, dict) else {}
    refused = {
        "error": "protocol version 1 is not supported",
        "field": "protocol_version",
        "hint": "this control plane speaks center protocol 2",
    }
    codes = []
    for status, body, what in (
        (422, refused, "register was refused with 422 protocol_version"),
        (200, {**reply, "protocol_version": "2"}, "the register reply said protocol 2"),
    ):
        codes.append(_stops_on_register_answer(kit, status, body, what))
    return f"exited with status {codes[0]} after a 422, {codes[1]} after a reply of protocol 2"


def _stops_on_register_answer(kit: Kit, status: int, body: dict[str, Any], what: str) -> int:
    """Restart the center with register answered `status` `body`; its exit status."""
    assert kit.proxy is not None
    kit.stop_center()
    kit.proxy.answer(r"/center/v1/register$", status, body)
    since = time.time()
    kit.start_center()
    assert kit.center is not None
    wait_s = min(kit.timeout_s, 30.0)
    try:
        code = kit.center.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        raise Failed(f"still running {wait_s:g}s after {what}") from None
    finally:
        kit.proxy.clear_faults()
    if code == 0:
        raise Failed(f"exited 0 after {what}")
    later = kit.proxy.calls_to(r"/center/v1/(lease|heartbeat|jobs/)", since)
    if later:
        raise Failed(f"called {later[0].path} after {what}")
    return code


RUNNERS: dict[str, Callable[[Kit], str]] = {
    "register-and-heartbeat": register_and_heartbeat,
    "lease-stage-run": lease_stage_run,
    "exit-code": exit_code,
    "corrupt-source-refused": corrupt_source_refused,
    "retries-idempotent": retries_idempotent,
    "cancel": cancel,
    "stale-attempt-refused": stale_attempt_refused,
    "lease-lost-when-cut-off": lease_lost_when_cut_off,
    "center-killed": center_killed,
    "unknown-protocol-version": unknown_protocol_version,
}
BATCH = {"lease-stage-run", "exit-code", "corrupt-source-refused", "retries-idempotent"}
