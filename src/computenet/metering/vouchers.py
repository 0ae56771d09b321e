"""Compute vouchers (算力券): a share of a tenant's charges paid by an issuer, up to a cap (pure).

A voucher is issued to one tenant by an issuer (a city's program, say) and
pays `pct` % of a charge, at most `cap_cny` over its life, for charges at
its eligible centers and workload classes (an empty list means all) that are
incurred within ``[valid_from, valid_until)`` (network time; a charge is
incurred when its job finishes).

The one money rule (`apply_vouchers`): a charge meets the tenant's vouchers
in issue order (by id). Each eligible voucher with a balance pays its `pct`
of what is still owed after the vouchers before it, rounded half-even to
the fen (`metering.fen`, the project's one rounding), and never more than
its remaining balance — so a voucher never pays past its cap, stacked
vouchers never pay more than the charge, and ``subsidy + paid == charge``
exactly. The scheduler's budget check prices thousands of options at once
with the vector form `paid_vec` (the same rule in float, without the fen
rounding; a test holds the two within half a fen per voucher).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np

from computenet.metering.cost import fen

__all__ = [
    "Applied",
    "SubsidyLine",
    "Voucher",
    "apply_vouchers",
    "paid_vec",
]

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Voucher:
    """One voucher's terms and how much of its cap is used (money in exact ¥)."""

    id: int
    tenant: str
    issuer: str
    pct: Decimal  # percent of the charge, 0 < pct ≤ 100
    cap_cny: Decimal
    valid_from: datetime
    valid_until: datetime
    centers: tuple[str, ...] = ()  # empty: every center
    classes: tuple[str, ...] = ()  # empty: every workload class
    used_cny: Decimal = Decimal(0)

    @property
    def remaining_cny(self) -> Decimal:
        """What the voucher may still pay (never below zero)."""
        return max(self.cap_cny - self.used_cny, Decimal(0))

    def valid_at(self, at: datetime) -> bool:
        """Whether a charge incurred at `at` falls in ``[valid_from, valid_until)``."""
        return self.valid_from <= at < self.valid_until

    def covers(self, center: str, cls: str, at: datetime) -> bool:
        """Whether a charge at `center` for class `cls` incurred at `at` is eligible."""
        return (
            (not self.centers or center in self.centers)
            and (not self.classes or cls in self.classes)
            and self.valid_at(at)
        )


@dataclass(frozen=True)
class SubsidyLine:
    """What one voucher pays of one charge."""

    voucher_id: int
    issuer: str
    amount_cny: Decimal


@dataclass(frozen=True)
class Applied:
    """A charge split into what the vouchers pay (one line per paying voucher) and the tenant."""

    charge_cny: Decimal
    lines: tuple[SubsidyLine, ...]
    paid_cny: Decimal

    @property
    def subsidy_cny(self) -> Decimal:
        """What the vouchers pay in all."""
        return sum((x.amount_cny for x in self.lines), Decimal("0.00"))


def apply_vouchers(
    charge_cny: Decimal, center: str, cls: str, at: datetime, vouchers: Sequence[Voucher]
) -> Applied:
    """Split `charge_cny` (exact ¥, to the fen) between `vouchers` and the tenant.

    Vouchers are taken in issue order (by id) whatever order they come in;
    each eligible one (`Voucher.covers`) with a balance pays its `pct` of what
    is still owed, rounded half-even to the fen, capped by its remaining
    balance. A voucher that would pay nothing gets no line.
    """
    owed = fen(Decimal(charge_cny))
    if owed < 0:
        raise ValueError(f"a charge cannot be negative (got {charge_cny})")
    lines: list[SubsidyLine] = []
    for v in sorted(vouchers, key=lambda x: x.id):
        if owed <= 0:
            break
        if not v.covers(center, cls, at):
            continue
        amount = min(fen(owed * v.pct / HUNDRED), v.remaining_cny, owed)
        if amount > 0:
            lines.append(SubsidyLine(v.id, v.issuer, amount))
            owed -= amount
    return Applied(charge_cny=fen(Decimal(charge_cny)), lines=tuple(lines), paid_cny=owed)


def paid_vec(
    vouchers: Sequence[Voucher],
    cost: np.ndarray,
    center_of: np.ndarray,
    center_ids: Sequence[str],
    cls: str,
    at_h: np.ndarray,
    now: datetime,
) -> np.ndarray:
    """What the tenant would pay of each option's `cost` (float ¥), each a charge on its own.

    Option k is at center ``center_ids[center_of[k]]`` and incurred `at_h[k]`
    hours after `now` (its planned finish). The rule is `apply_vouchers`',
    in float without the fen rounding: the vouchers' balances are those of
    now (each option is priced as if it were the next charge).
    """
    owed = np.array(cost, dtype=np.float64, copy=True)
    for v in sorted(vouchers, key=lambda x: x.id):
        if v.classes and cls not in v.classes:
            continue
        left = float(v.remaining_cny)
        if left <= 0:
            continue
        at_center = np.array([not v.centers or c in v.centers for c in center_ids], dtype=bool)
        lo = (v.valid_from - now).total_seconds() / 3600.0
        hi = (v.valid_until - now).total_seconds() / 3600.0
        ok = at_center[center_of] & (at_h >= lo) & (at_h < hi)
        pays = np.minimum(np.minimum(owed * (float(v.pct) / 100.0), left), owed)
        owed -= np.where(ok, pays, 0.0)
    return owed
