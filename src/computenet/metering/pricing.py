"""Exact pricing of compute, energy and data transfer.

Units: money is `Decimal` ¥ rounded half-even to the fen (0.01) only at the
end of each component; energy is kWh as float with 1e-9 relative precision,
but the ¥ for energy is summed hour segment by hour segment in Decimal from
integer seconds, so a job that crosses a tariff boundary is priced exactly.
The server and the simulator both call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from computenet.model import Center, Chip, ThroughputMatrix

FEN = Decimal("0.01")


def fen(x: Decimal) -> Decimal:
    """Round ¥ to the fen, half-even."""
    return x.quantize(FEN, rounding=ROUND_HALF_EVEN)


def energy_kwh(chips: int, tdp_w: float, pue: float, seconds: float) -> float:
    """kWh drawn from the grid: chips × TDP × hours × PUE / 1000."""
    return chips * tdp_w * pue * seconds / 3600.0 / 1000.0


def cu_hours(chips: int, chip: Chip, matrix: ThroughputMatrix, cls: str, seconds: float) -> float:
    """Compute units delivered: chips × delivered PFLOPS × hours."""
    return chips * matrix.delivered_pflops(cls, chip) * seconds / 3600.0


def energy_cost_cny(
    center: Center, chips: int, tdp_w: float, start: datetime, end: datetime
) -> Decimal:
    """¥ for the energy of `chips` chips from `start` to `end`, hour by hour on the tariff."""
    if end <= start:
        return Decimal(0)
    # kW at the meter, exact in Decimal from the catalog's figures.
    kw = Decimal(chips) * Decimal(str(tdp_w)) * Decimal(str(center.pue)) / Decimal(1000)
    total = Decimal(0)
    t = start
    while t < end:
        next_hour = (t + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        seg_end = min(next_hour, end)
        seconds = Decimal((seg_end - t) // timedelta(microseconds=1)) / Decimal(1_000_000)
        total += kw * seconds / Decimal(3600) * center.tariff.price_at(t)
        t = seg_end
    return fen(total)


@dataclass(frozen=True)
class Charges:
    """What one run of a job used and costs."""

    chip_hours: float
    cu_hours: float
    kwh: float
    co2_kg: float
    energy_cny: Decimal
    service_cny: Decimal
    transfer_cny: Decimal

    @property
    def total_cny(self) -> Decimal:
        """Energy + service + transfer."""
        return self.energy_cny + self.service_cny + self.transfer_cny


def charge(
    center: Center,
    chip: Chip,
    matrix: ThroughputMatrix,
    cls: str,
    chips: int,
    start: datetime,
    end: datetime,
    transfer_gb: float = 0.0,
    transfer_price_per_gb: Decimal = Decimal(0),
) -> Charges:
    """Meter a run of `chips` × `chip` at `center` from `start` to `end`, plus data moved in."""
    seconds = max((end - start).total_seconds(), 0.0)
    cu = cu_hours(chips, chip, matrix, cls, seconds)
    kwh = energy_kwh(chips, chip.tdp_w, center.pue, seconds)
    return Charges(
        chip_hours=chips * seconds / 3600.0,
        cu_hours=cu,
        kwh=kwh,
        co2_kg=kwh * center.carbon_kg_per_kwh,
        energy_cny=energy_cost_cny(center, chips, chip.tdp_w, start, end),
        service_cny=fen(Decimal(repr(cu)) * center.service_price_per_cuh),
        transfer_cny=fen(Decimal(repr(transfer_gb)) * transfer_price_per_gb),
    )
