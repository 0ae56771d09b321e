"""Exact pricing of compute, energy and data transfer.

Units: money is `Decimal` ¥ rounded half-even to the fen (0.01) only at the
end of each component; energy is kWh as float with 1e-9 relative precision,
but the ¥ for energy is summed hour segment by hour segment in Decimal from
integer seconds, so a job that crosses a tariff boundary is priced exactly.
The ¥ come from `metering.cost` (the one cost model); the server and the
simulator both meter with `charge`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from computenet.metering.cost import TransferLot, Usage, energy_cost_cny, fen, price
from computenet.model import Center, Chip, ThroughputMatrix

__all__ = ["Charges", "charge", "cu_hours", "energy_cost_cny", "energy_kwh", "fen"]


def energy_kwh(chips: int, tdp_w: float, pue: float, seconds: float) -> float:
    """kWh drawn from the grid: chips × TDP × hours × PUE / 1000."""
    return chips * tdp_w * pue * seconds / 3600.0 / 1000.0


def cu_hours(chips: int, chip: Chip, matrix: ThroughputMatrix, cls: str, seconds: float) -> float:
    """Compute units delivered: chips × delivered PFLOPS × hours."""
    return chips * matrix.delivered_pflops(cls, chip) * seconds / 3600.0


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
    transfers: Sequence[TransferLot] = (),
) -> Charges:
    """Meter a run of `chips` × `chip` at `center` from `start` to `end`, plus data moved in.

    The ¥ come from `metering.cost.price`, the one cost model: each transfer
    lot is billed at its own path's price.
    """
    seconds = max((end - start).total_seconds(), 0.0)
    cu = cu_hours(chips, chip, matrix, cls, seconds)
    kwh = energy_kwh(chips, chip.tdp_w, center.pue, seconds)
    cost = price(center, Usage(chips, chip.tdp_w, start, end, cu, tuple(transfers)))
    return Charges(
        chip_hours=chips * seconds / 3600.0,
        cu_hours=cu,
        kwh=kwh,
        co2_kg=kwh * center.carbon_kg_per_kwh,
        energy_cny=cost.energy_cny,
        service_cny=cost.service_cny,
        transfer_cny=cost.transfer_cny,
    )
