"""`standing_key` orders jobs exactly as the cycle's `order_key` does, at any clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.scheduler import JobRequest
from computenet.scheduler.ordering import order_key, standing_key

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def jobs(draw: st.DrawFn) -> list[JobRequest]:
    n = draw(st.integers(1, 30))
    out = []
    for k in range(n):
        due = draw(st.none() | st.integers(-48, 24 * 400))  # hours from T0; some past
        out.append(
            JobRequest(
                id=f"j{draw(st.integers(0, 5))}-{k}",
                workload_class="llm-train",
                count=1,
                cu_hours=1.0,
                priority=draw(st.integers(0, 3)),
                # Few distinct values, so ties on every part of the key occur.
                deadline=None if due is None else T0 + timedelta(hours=due),
                submitted_at=T0 + timedelta(hours=draw(st.integers(-5, 5))),
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(jobs(), st.integers(-100, 24 * 365))
def test_the_standing_order_is_the_cycles_order_at_any_clock(js: list[JobRequest], h: int) -> None:
    now = T0 + timedelta(hours=h)
    assert sorted(js, key=standing_key) == sorted(js, key=lambda j: order_key(j, now))


def test_a_job_without_a_submit_time_is_refused() -> None:
    job = JobRequest(id="j", workload_class="llm-train", count=1, cu_hours=1.0)
    with pytest.raises(ValueError, match="no submit time"):
        standing_key(job)
