"""Compute centers, their chip pools and time-of-use tariffs; user sites."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Tariff hours are China Standard Time; every center in the built-in networks is in it.
CST = timezone(timedelta(hours=8), "CST")


class Tariff(BaseModel):
    """Electricity price in ¥/kWh for each hour of the local day (24 values, hour 0 first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hourly: tuple[Decimal, ...]

    @field_validator("hourly")
    @classmethod
    def _twenty_four(cls, v: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if len(v) != 24:
            raise ValueError(f"needs 24 hourly prices, got {len(v)}")
        if any(p < 0 for p in v):
            raise ValueError("prices must be >= 0")
        return v

    @classmethod
    def time_of_use(
        cls,
        flat: Decimal | float | str,
        peak: float = 1.6,
        valley: float = 0.4,
        peak_hours: tuple[int, ...] = (8, 9, 10, 17, 18, 19, 20, 21),
        valley_hours: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 23),
    ) -> Tariff:
        """A typical provincial time-of-use tariff: peak and valley multiples of a flat price."""
        base = Decimal(str(flat))
        hourly = []
        for h in range(24):
            mult = (
                Decimal(str(peak))
                if h in peak_hours
                else Decimal(str(valley))
                if h in valley_hours
                else Decimal(1)
            )
            hourly.append((base * mult).quantize(Decimal("0.0001")))
        return cls(hourly=tuple(hourly))

    def price_at(self, t: datetime) -> Decimal:
        """¥/kWh at instant `t` (any timezone; converted to CST)."""
        return self.hourly[t.astimezone(CST).hour]

    @property
    def mean(self) -> Decimal:
        """Average price over the day."""
        return sum(self.hourly, Decimal(0)) / 24


class Pool(BaseModel):
    """`count` chips of one type at a center."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    chip: str = Field(min_length=1)
    count: int = Field(ge=1)


class Center(BaseModel):
    """A compute center that joins the network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9\-]*$")
    name: str = ""
    hub: str = ""
    region: str = Field(default="east", description="east or west (东数西算 side)")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    operator: str = ""
    backend: str = "local"
    pools: tuple[Pool, ...] = Field(min_length=1)
    pue: float = Field(ge=1.0, le=3.0)
    tariff: Tariff
    carbon_kg_per_kwh: float = Field(ge=0)
    service_price_per_cuh: Decimal = Field(ge=0)
    tags: tuple[str, ...] = ()

    def pool(self, chip: str) -> Pool | None:
        """The pool of `chip`, if the center has one."""
        return next((p for p in self.pools if p.chip == chip), None)

    @property
    def total_chips(self) -> int:
        """All chips in all pools."""
        return sum(p.count for p in self.pools)


class UserSite(BaseModel):
    """A place where users and their data sit (a city), linked to centers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9\-]*$")
    name: str = ""
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    region: str = "east"
