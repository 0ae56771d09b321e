"""Tenancy on the wire: quotas, a tenant's share settings and its standing (GET /tenancy)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class QuotaView(BaseModel):
    """One quota of a tenant and how much of it is used now."""

    tenant: str
    kind: Literal["chips", "cu_hours", "cny"]
    chip: str | None = None
    period: Literal["day", "month"] | None = None
    limit: Decimal
    used: Decimal = Decimal(0)
    label: str = ""


class QuotaSet(BaseModel):
    """POST /api/v1/admin/quotas: set (or replace) one quota."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=64)
    kind: Literal["chips", "cu_hours", "cny"]
    limit: Decimal = Field(ge=0)
    chip: str | None = Field(default=None, max_length=64)
    period: Literal["day", "month"] | None = None


class TenantShareSet(BaseModel):
    """POST /api/v1/admin/tenants/{name}/share: weight and priority ceiling (None: unchanged)."""

    model_config = ConfigDict(extra="forbid")

    weight: float | None = Field(default=None, gt=0, le=1e6)
    priority_ceiling: int | None = Field(default=None, ge=-1, le=10)


class TenantShareView(BaseModel):
    """A tenant's fair-share weight and priority ceiling (None: uncapped)."""

    tenant: str
    weight: float
    priority_ceiling: int | None


class TenancyView(BaseModel):
    """GET /api/v1/tenancy: a tenant's quotas with their use, and its fair-share standing.

    `usage_cu_hours` is its decayed usage (half-life `half_life_days`);
    `share` its weight over the weights of the tenants with work, `used_share`
    its part of their decayed usage: below `share`, its jobs come first.
    """

    tenant: str
    weight: float
    priority_ceiling: int | None
    quotas: list[QuotaView]
    usage_cu_hours: float
    share: float
    used_share: float
    half_life_days: float
