"""Reasons written only where they are read make the same decisions.

The simulator reads the reasons of jobs left unplaced (deferred ones
included) and never a placement's, so its cycle asks for
`explain_placed=False` (`framework.place_explaining_later`). Against the
same cycle writing every reason: the same placements (estimates, exact cost,
sources), the same deferred jobs with the same reasons word for word, and
the same instants to decide them again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from computenet.catalog import load_network
from computenet.scheduler import build_snapshot
from computenet.scheduler.greedy import greedy_cycle
from computenet.scheduler.lookahead import lookahead_cycle
from computenet.scheduler.snapshot import JobRequest
from computenet.sim import SimConfig, synthetic


def _cycle_jobs(seed: int, n: int) -> tuple[object, list[JobRequest]]:
    net = load_network("china")
    cfg = SimConfig()
    wl = synthetic(net, jobs=n, days=1, seed=seed)
    jobs = wl.requests(cfg.epoch)
    # Every job pending at one instant after the last arrival, a busy calendar first.
    now = max(j.submitted_at for j in jobs if j.submitted_at is not None) + timedelta(minutes=7)
    snap = build_snapshot(net, now)
    return snap, jobs


@pytest.mark.parametrize("seed", [3, 11])
def test_lookahead_decides_the_same_without_reasons_for_placements(seed: int) -> None:
    snap, jobs = _cycle_jobs(seed, 600)
    full, wake_full = lookahead_cycle(snap, jobs)  # type: ignore[arg-type]
    lazy, wake_lazy = lookahead_cycle(snap, jobs, explain_placed=False)  # type: ignore[arg-type]
    assert wake_lazy == wake_full
    assert wake_full, "no job was deferred: the case does not test deferred reasons"
    placed = 0
    for a, b in zip(full, lazy, strict=True):
        assert a.job_id == b.job_id and a.rejected == b.rejected
        if a.placement is None:
            assert b.placement is None
            assert b.reasons == a.reasons  # unplaced and deferred: every reason
            continue
        placed += 1
        assert b.placement is not None and b.reasons == () and b.placement.reasons == ()
        assert b.placement == a.placement.model_copy(update={"reasons": ()})
        assert b.placement.total_cny == a.placement.total_cny
    assert placed > 0


def test_greedy_without_explain_placed_keeps_reasons_of_unplaced_jobs() -> None:
    snap, jobs = _cycle_jobs(5, 400)
    # A network this full leaves jobs unplaced (nothing frees within the horizon).
    full_snap = replace(snap, free=snap.free * 0 + 1)  # type: ignore[type-var]
    for s in (snap, full_snap):
        a = greedy_cycle(s, jobs)  # type: ignore[arg-type]
        b = greedy_cycle(s, jobs, explain_placed=False)  # type: ignore[arg-type]
        for x, y in zip(a, b, strict=True):
            if x.placement is None:
                assert y.placement is None and y.reasons == x.reasons
            else:
                assert y.placement == x.placement.model_copy(update={"reasons": ()})


def test_a_request_equals_itself_and_its_copies_by_fields() -> None:
    a = JobRequest(id="a", workload_class="llm-train", count=1, cu_hours=1.0)
    assert a == a
    assert a == replace(a) and hash(a) == hash(replace(a))
    assert a != replace(a, count=2)
    assert not a == replace(a, id="b")  # noqa: SIM201 (the __eq__ under test)
    assert a != "a"
