"""Placements: where and when a job runs, what it costs, and why."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict


class CostBreakdown(BaseModel):
    """¥ split by what it pays for; amounts are exact Decimals rounded to the fen."""

    model_config = ConfigDict(frozen=True)

    energy_cny: Decimal
    service_cny: Decimal
    transfer_cny: Decimal

    @property
    def total_cny(self) -> Decimal:
        """Sum of the three parts."""
        return self.energy_cny + self.service_cny + self.transfer_cny


class Placement(BaseModel):
    """The scheduler's answer for one job on one center: chips, times, cost, reasons."""

    model_config = ConfigDict(frozen=True)

    center: str
    chip: str
    count: int
    planned_start: datetime
    transfer_s: float
    run_s: float
    finish: datetime
    cost: CostBreakdown
    kwh: float
    co2_kg: float
    cu_hours: float
    source_replicas: dict[str, str] = {}
    reasons: tuple[str, ...] = ()

    @property
    def total_cny(self) -> Decimal:
        """Total estimated price."""
        return self.cost.total_cny
