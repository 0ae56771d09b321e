"""A region's metered run is billed at the parent as the region billed it, to the fen."""

from __future__ import annotations

from decimal import Decimal

from computenet.protocol.center import MeteredCharge, UsageReport
from computenet.server.metering import metered_charges


def test_the_parent_bills_the_regions_amounts_plus_its_own_transfer() -> None:
    region = MeteredCharge(
        energy_cny=Decimal("0.84"),
        service_cny=Decimal("2.50"),
        transfer_cny=Decimal("0.10"),
        kwh=1.68,
        co2_kg=0.84,
        chip_hours=1.0,
        cu_hours=2.5,
    )
    # As the agent sends it and the control plane stores it: JSON.
    stored = UsageReport(attempt=1, run_real_s=6.0, metered=region).model_dump(mode="json")
    ch = metered_charges(stored["metered"], Decimal("0.05"))
    assert (ch.energy_cny, ch.service_cny, ch.transfer_cny) == (
        Decimal("0.84"),
        Decimal("2.50"),
        Decimal("0.15"),
    )
    assert ch.total_cny == region.total_cny + Decimal("0.05") == Decimal("3.49")
    assert (ch.kwh, ch.co2_kg, ch.chip_hours, ch.cu_hours) == (1.68, 0.84, 1.0, 2.5)


def test_an_ordinary_usage_report_carries_no_metered_field() -> None:
    assert "metered" not in UsageReport(attempt=1, run_real_s=1.0).model_dump(mode="json")
