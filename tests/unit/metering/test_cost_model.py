"""The one cost model: its vector form (the scheduler's) equals its exact form (the bill's)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.metering import TransferLot, Usage, price
from computenet.metering.cost import (
    cumulative_tariff,
    meter_kw,
    option_costs,
    transfer_cny_vec,
)
from computenet.model import Center, Pool, Tariff
from computenet.model.center import CST

FEN = Decimal("0.01")
MIDNIGHT = datetime(2026, 12, 1, 0, 0, tzinfo=CST)

prices = st.integers(min_value=0, max_value=30_000).map(lambda n: Decimal(n) / 10_000)
lots = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=5_000, allow_nan=False, allow_infinity=False),
        st.integers(min_value=0, max_value=2_000).map(lambda n: Decimal(n) / 10_000),
    ),
    max_size=4,
)


def center(hourly: list[Decimal], pue: float, service: Decimal) -> Center:
    return Center(
        id="c",
        lat=30,
        lon=110,
        pools=(Pool(chip="H100", count=8),),
        pue=pue,
        tariff=Tariff(hourly=tuple(hourly)),
        carbon_kg_per_kwh=0.5,
        service_price_per_cuh=service,
    )


@settings(max_examples=300, deadline=None)
@given(
    hourly=st.lists(prices, min_size=24, max_size=24),
    pue=st.floats(min_value=1.0, max_value=2.0).map(lambda x: round(x, 2)),
    tdp_w=st.sampled_from([100.0, 350.0, 400.0, 560.0, 700.0, 1000.0]),
    chips=st.integers(min_value=1, max_value=512),
    start_s=st.integers(min_value=0, max_value=3 * 86_400),
    run_s=st.integers(min_value=0, max_value=5 * 86_400),
    cu_hours=st.floats(min_value=1e-3, max_value=1e5).map(lambda x: round(x, 6)),
    service=prices,
    moved=lots,
)
def test_the_vector_form_prices_an_option_as_the_bill_does_to_the_fen(
    hourly: list[Decimal],
    pue: float,
    tdp_w: float,
    chips: int,
    start_s: int,
    run_s: int,
    cu_hours: float,
    service: Decimal,
    moved: list[tuple[float, Decimal]],
) -> None:
    c = center(hourly, pue, service)
    start = MIDNIGHT + timedelta(seconds=start_s)
    usage = Usage(
        chips,
        tdp_w,
        start,
        start + timedelta(seconds=run_s),
        cu_hours,
        tuple(TransferLot.of_gb(gb, f"s{k}", p) for k, (gb, p) in enumerate(moved)),
    )
    exact = price(c, usage)

    tariff = np.array([[float(x) for x in hourly]])
    kw = meter_kw(chips, np.array([tdp_w / 1000.0]), np.array([pue]))
    transfer = sum((transfer_cny_vec(gb, np.array([float(p)])) for gb, p in moved), np.zeros(1))
    energy, svc, tr = option_costs(
        kw,
        cumulative_tariff(tariff),
        np.array([0]),
        np.array([start_s / 3600.0]),
        np.array([run_s / 3600.0]),
        cu_hours,
        np.array([float(service)]),
        transfer,
    )
    for vec, ex in ((energy, exact.energy_cny), (svc, exact.service_cny), (tr, exact.transfer_cny)):
        # Equal to the fen: floats round the other way only on a half-fen boundary.
        assert abs(Decimal(repr(float(vec[0]))).quantize(FEN) - ex) <= FEN
        assert abs(float(vec[0]) - float(ex)) <= 0.005 + 1e-9 * max(1.0, abs(float(ex)))


def test_each_transfer_lot_is_billed_at_its_own_path_price() -> None:
    c = center([Decimal("0.5")] * 24, 1.0, Decimal("1"))
    near = TransferLot.of_bytes(40_000_000_000, "near", Decimal("0.01"))
    far = TransferLot.of_bytes(10_000_000_000, "far", Decimal("0.20"))
    cost = price(c, Usage(1, 700.0, MIDNIGHT, MIDNIGHT, 0.0, (near, far)))
    # 40 GB × 0.01 + 10 GB × 0.20 = 2.40, not 50 GB at the price of the bigger sender (0.50).
    assert cost.transfer_cny == Decimal("2.40")
    assert cost.total_cny == Decimal("2.40")


def test_measured_bytes_scale_with_the_network_data_scale() -> None:
    lot = TransferLot.of_bytes(5_000_000, "s", Decimal("0.05"), data_scale=1000.0)
    assert lot.gb == Decimal(5) and lot.cny == Decimal("0.25")
