"""Wire schemas of compute vouchers (算力券): issuing, listing, and the lines a bill shows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class VoucherIssue(BaseModel):
    """POST /api/v1/admin/vouchers: a voucher for a tenant (checked by the server, 422 naming
    the field)."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=64)
    issuer: str = Field(min_length=1, max_length=128, description="who pays, e.g. Shanghai")
    pct: Decimal = Field(description="percent of each eligible charge, 0 < pct ≤ 100")
    cap_cny: Decimal = Field(description="the most the voucher pays over its life, ¥")
    centers: list[str] = Field(default=[], max_length=256, description="empty: every center")
    classes: list[str] = Field(default=[], max_length=64, description="empty: every class")
    valid_from: str = Field(
        max_length=64,
        description="a date (00:00 CST that day) or an ISO time; network time",
    )
    valid_until: str = Field(
        max_length=64,
        description="a date (valid through that day, CST) or an ISO time (excluded)",
    )


VoucherState = Literal["active", "not yet valid", "expired", "spent"]


class VoucherView(BaseModel):
    """A voucher and its balance."""

    id: int
    tenant: str
    issuer: str
    pct: Decimal
    cap_cny: Decimal
    used_cny: Decimal
    remaining_cny: Decimal
    centers: list[str] = []
    classes: list[str] = []
    valid_from: datetime
    valid_until: datetime
    issued_at: datetime
    issued_by: str
    state: VoucherState | None = Field(
        default=None,
        description="at the network's now; null where that is not known (`cnet admin voucher list`"
        " reads the database without the network's clock)",
    )


class SubsidyLineView(BaseModel):
    """What one voucher paid of one charge."""

    voucher_id: int
    issuer: str
    amount_cny: Decimal
