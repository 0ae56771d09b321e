"""Network links between centers and user sites."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field


class Link(BaseModel):
    """A bidirectional link: bandwidth, one-way latency and price per GB moved."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    a: str = Field(min_length=1)
    b: str = Field(min_length=1)
    bandwidth_gbps: float = Field(gt=0)
    latency_ms: float = Field(ge=0)
    price_per_gb: Decimal = Field(ge=0)
