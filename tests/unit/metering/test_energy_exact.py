"""`energy_cost_cny` (µs per hour of the day, days at once) equals the hour-by-hour sum."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.metering.cost import energy_cost_cny, fen
from computenet.model import Center
from computenet.model.center import CST

CENTERS = load_network("china").centers


def hour_by_hour(
    center: Center, chips: int, tdp_w: float, start: datetime, end: datetime
) -> Decimal:
    """The definition: every stretch within one clock hour at that hour's price."""
    kw = Decimal(chips) * Decimal(str(tdp_w)) * Decimal(str(center.pue)) / Decimal(1000)
    total, t = Decimal(0), start
    while t < end:
        seg_end = min((t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0), end)
        seconds = Decimal((seg_end - t) // timedelta(microseconds=1)) / Decimal(1_000_000)
        total += kw * seconds / Decimal(3600) * center.tariff.price_at(t)
        t = seg_end
    return fen(total) if end > start else Decimal(0)


@settings(max_examples=300, deadline=None)
@given(
    center=st.sampled_from(CENTERS),
    chips=st.integers(1, 256),
    tdp_w=st.sampled_from([75.0, 300.0, 400.0, 700.5]),
    start_s=st.integers(0, 3 * 86_400_000_000),
    length_us=st.one_of(st.integers(0, 7_200_000_000), st.integers(0, 9 * 86_400_000_000)),
)
def test_exact_energy_equals_the_hour_by_hour_sum(
    center: Center, chips: int, tdp_w: float, start_s: int, length_us: int
) -> None:
    start = datetime(2026, 12, 1, tzinfo=CST) + timedelta(microseconds=start_s)
    end = start + timedelta(microseconds=length_us)
    assert energy_cost_cny(center, chips, tdp_w, start, end) == hour_by_hour(
        center, chips, tdp_w, start, end
    )
