"""Exact pricing: energy across tariff boundaries, fen rounding, units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from computenet.catalog import load_chips, load_throughput
from computenet.metering import TransferLot, charge, energy_cost_cny
from computenet.model import Center, Pool, Tariff
from computenet.model.center import CST


def center(tariff: Tariff, pue: float = 1.0) -> Center:
    return Center(
        id="c",
        lat=30,
        lon=110,
        pools=(Pool(chip="H100", count=8),),
        pue=pue,
        tariff=tariff,
        carbon_kg_per_kwh=0.5,
        service_price_per_cuh=Decimal("2"),
    )


def test_energy_priced_exactly_across_a_tariff_boundary() -> None:
    hourly = [Decimal("1.00")] * 24
    hourly[23] = Decimal("0.30")  # valley from 23:00
    c = center(Tariff(hourly=tuple(hourly)))
    start = datetime(2026, 12, 1, 22, 30, tzinfo=CST)
    # 1 chip × 1000 W for one hour: 0.5 kWh at 1.00 + 0.5 kWh at 0.30 = 0.65 ¥.
    assert energy_cost_cny(c, 1, 1000.0, start, start + timedelta(hours=1)) == Decimal("0.65")


def test_energy_cost_uses_pue_and_local_time_of_any_timezone() -> None:
    hourly = [Decimal("0.10")] * 24
    hourly[12] = Decimal("1.00")
    c = center(Tariff(hourly=tuple(hourly)), pue=1.5)
    noon_utc = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)
    # 04:00 UTC is 12:00 CST: priced at the noon rate. 2 chips × 500 W × 1.5 × 1 h = 1.5 kWh.
    assert energy_cost_cny(c, 2, 500.0, noon_utc, noon_utc + timedelta(hours=1)) == Decimal("1.50")


def test_charge_adds_up_to_the_fen() -> None:
    c = center(Tariff.time_of_use("0.5"))
    chip = load_chips()["H100"]
    start = datetime(2026, 12, 1, 6, 0, tzinfo=CST)
    ch = charge(
        c,
        chip,
        load_throughput(),
        "llm-train",
        4,
        start,
        start + timedelta(hours=3),
        transfers=[TransferLot.of_gb(10, "elsewhere", Decimal("0.05"))],
    )
    assert ch.chip_hours == 12
    assert abs(ch.cu_hours - 4 * 0.989 * 0.36 * 3) < 1e-9
    assert ch.transfer_cny == Decimal("0.50")
    assert ch.total_cny == ch.energy_cny + ch.service_cny + ch.transfer_cny
    for part in (ch.energy_cny, ch.service_cny, ch.transfer_cny):
        assert part == part.quantize(Decimal("0.01"))
    # 06:00-07:00 valley (0.2), 07:00-08:00 flat (0.5), 08:00-09:00 peak (0.8): 2.8 kW each hour.
    assert ch.energy_cny == Decimal("4.20")
