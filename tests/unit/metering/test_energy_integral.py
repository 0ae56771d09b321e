"""`energy_cost_cny` as the tariff's integral equals the per-hour count it replaced, exactly.

The version before (cost.py at eef9c5f) counted the microseconds spent in each
local hour of the day and priced the 24 counts one by one; now the integral
of the tariff from local midnight is taken at the end less at the start. Both
are exact in Decimal, so the results must be the same Decimal, on random
tariffs (prices of up to six decimals), PUEs, chips, TDPs, starts and
lengths from a microsecond to weeks.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.metering.cost import energy_cost_cny, fen
from computenet.model import Center
from computenet.model.center import CST, Tariff

_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
CENTERS = load_network("china").centers


def per_hour_count(
    center: Center, chips: int, tdp_w: float, start: datetime, end: datetime
) -> Decimal:
    """cost.energy_cost_cny at eef9c5f, unchanged."""
    if end <= start:
        return Decimal(0)
    kw = Decimal(chips) * Decimal(str(tdp_w)) * Decimal(str(center.pue)) / Decimal(1000)
    local = start.astimezone(CST)
    pos = (local.hour * 3600 + local.minute * 60 + local.second) * 1_000_000 + local.microsecond
    days, left = divmod((end - start) // timedelta(microseconds=1), _DAY_US)
    us = [days * _HOUR_US] * 24
    while left > 0:
        hour, into = divmod(pos, _HOUR_US)
        seg = min(_HOUR_US - into, left)
        us[hour % 24] += seg
        pos += seg
        left -= seg
    hourly = center.tariff.hourly
    total = sum((Decimal(u) * hourly[h] for h, u in enumerate(us) if u), Decimal(0))
    return fen(kw * total / Decimal(_HOUR_US))


prices = st.decimals(min_value=0, max_value=5, places=6, allow_nan=False, allow_infinity=False)


@settings(max_examples=400, deadline=None)
@given(
    base=st.sampled_from(CENTERS),
    hourly=st.one_of(st.none(), st.lists(prices, min_size=24, max_size=24)),
    pue=st.floats(1.0, 2.0),
    chips=st.integers(1, 4096),
    tdp_w=st.one_of(st.sampled_from([75.0, 300.0, 700.5]), st.floats(1.0, 2000.0)),
    start_us=st.integers(0, 7 * _DAY_US),
    length_us=st.one_of(
        st.integers(-5, 3 * _HOUR_US), st.integers(0, 3 * _DAY_US), st.integers(0, 60 * _DAY_US)
    ),
)
def test_the_integral_equals_the_per_hour_count(
    base: Center,
    hourly: list[Decimal] | None,
    pue: float,
    chips: int,
    tdp_w: float,
    start_us: int,
    length_us: int,
) -> None:
    center = base.model_copy(
        update={"pue": pue} | ({"tariff": Tariff(hourly=tuple(hourly))} if hourly else {})
    )
    start = datetime(2026, 12, 1, tzinfo=CST) + timedelta(microseconds=start_us)
    end = start + timedelta(microseconds=length_us)
    got = energy_cost_cny(center, chips, tdp_w, start, end)
    want = per_hour_count(center, chips, tdp_w, start, end)
    assert got == want and str(got) == str(want)
