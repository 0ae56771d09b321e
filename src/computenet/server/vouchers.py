"""Compute vouchers (算力券) on the control plane: issue and list (admin, audited), and the
views that bills and quotes show. The money rule is `metering.vouchers`'.

Like `server.admin`, issuing and listing work on a database URL too, so that
`cnet admin voucher` runs on the server's database without the server.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from computenet.errors import ValidationError
from computenet.metering.vouchers import Voucher, apply_vouchers
from computenet.model import Network
from computenet.model.center import CST
from computenet.protocol.api import QuoteOption
from computenet.protocol.vouchers import VoucherIssue, VoucherState, VoucherView
from computenet.server.admin import DbLike, _db, cli_actor
from computenet.store.accounts import audit, get_tenant
from computenet.store.schema import VoucherRow
from computenet.store.vouchers import add_voucher, as_voucher, list_vouchers

# The most one voucher may pay: ¥10¹² (Shanghai's whole program is ¥6×10⁸).
MAX_CAP_CNY = Decimal(10) ** 12
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_instant(text: str, field: str, *, end_of_day: bool = False) -> datetime:
    """A voucher's bound: a date (CST midnight; with `end_of_day`, the next) or an ISO time.

    An ISO time without a zone is read in CST (network time is China
    Standard Time). `ValidationError` naming `field` otherwise.
    """
    t = text.strip()
    if _DATE.fullmatch(t):
        try:
            d = date.fromisoformat(t)
        except ValueError:
            raise ValidationError(f"'{text}' is not a date", field=field) from None
        at = datetime.combine(d, time(0), tzinfo=CST)
        return at + timedelta(days=1) if end_of_day else at
    try:
        at = datetime.fromisoformat(t)
    except ValueError:
        raise ValidationError(
            f"'{text}' is neither a date nor an ISO time",
            field=field,
            hint="e.g. 2027-01-01 or 2027-01-01T08:00:00+08:00",
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=CST)


def _amount(value: Decimal, field: str, what: str, lo: Decimal, hi: Decimal) -> Decimal:
    try:
        v = Decimal(value)
        ok = v.is_finite() and lo < v <= hi and v == v.quantize(Decimal("0.01"))
    except (InvalidOperation, TypeError, ValueError):
        ok = False
    if not ok:
        raise ValidationError(
            f"'{value}' is not {what}",
            field=field,
            hint=f"more than {lo} and at most {hi}, to two decimal places",
        )
    return Decimal(value).quantize(Decimal("0.01"))


def check_issue(body: VoucherIssue, network: Network | None) -> VoucherRow:
    """The voucher `body` asks for, checked field by field (not stored, no id yet).

    Centers and classes are checked against `network` when it is known.
    """
    issuer = body.issuer.strip()
    if not issuer:
        raise ValidationError("the issuer is empty", field="issuer", hint="e.g. Shanghai")
    pct = _amount(body.pct, "pct", "a percentage", Decimal(0), Decimal(100))
    cap = _amount(body.cap_cny, "cap_cny", "a cap in ¥", Decimal(0), MAX_CAP_CNY)
    start = parse_instant(body.valid_from, "valid_from")
    until = parse_instant(body.valid_until, "valid_until", end_of_day=True)
    if until <= start:
        raise ValidationError(
            f"valid_until ({until.isoformat()}) is not after valid_from ({start.isoformat()})",
            field="valid_until",
            hint="give a later end (a date means through that day)",
        )
    centers = _names(body.centers, "centers")
    classes = _names(body.classes, "classes")
    if network is not None:
        known = [c.id for c in network.centers]
        for i, c in enumerate(centers):
            if c not in known:
                raise ValidationError(
                    f"unknown center '{c}'",
                    field=f"centers[{i}]",
                    hint=f"centers: {', '.join(known)}",
                )
        kinds = list(network.throughput.classes)
        for i, k in enumerate(classes):
            if k not in kinds:
                raise ValidationError(
                    f"unknown workload class '{k}'",
                    field=f"classes[{i}]",
                    hint=f"use one of: {', '.join(kinds)}",
                )
    return VoucherRow(
        tenant_id=body.tenant,
        issuer=issuer,
        pct=pct,
        cap_cny=cap,
        used_cny=Decimal("0.00"),
        centers=centers,
        classes=classes,
        valid_from=start,
        valid_until=until,
    )


def _names(items: Sequence[str], field: str) -> list[str]:
    out: list[str] = []
    for i, raw in enumerate(items):
        name = raw.strip()
        if not name or len(name) > 64:
            raise ValidationError(f"'{raw}' is not a name", field=f"{field}[{i}]")
        if name not in out:
            out.append(name)
    return out


def state_of(v: Voucher, now: datetime) -> VoucherState:
    """A voucher's state at network time `now`."""
    if now >= v.valid_until:
        return "expired"
    if v.remaining_cny <= 0:
        return "spent"
    if now < v.valid_from:
        return "not yet valid"
    return "active"


def view(row: VoucherRow, now: datetime | None = None) -> VoucherView:
    """The wire view of a stored voucher; `state` when the network's `now` is given."""
    v = as_voucher(row)
    return VoucherView(
        id=row.id,
        tenant=row.tenant_id,
        issuer=row.issuer,
        pct=row.pct,
        cap_cny=row.cap_cny,
        used_cny=row.used_cny,
        remaining_cny=v.remaining_cny,
        centers=list(v.centers),
        classes=list(v.classes),
        valid_from=row.valid_from.astimezone(CST),
        valid_until=row.valid_until.astimezone(CST),
        issued_at=row.issued_at.astimezone(CST),
        issued_by=row.issued_by,
        state=state_of(v, now) if now is not None else None,
    )


def issue_voucher(
    db: DbLike,
    body: VoucherIssue,
    network: Network | None = None,
    *,
    actor: str | None = None,
    now: datetime | None = None,
) -> VoucherView:
    """Issue a voucher to `body.tenant` (audited as ``voucher.issue``); 422 naming the field.

    `now` is the network's now, for the view's state (the admin routes pass it).
    """
    row = check_issue(body, network)
    who = actor or cli_actor()
    database, own = _db(db)
    try:
        with database.write() as s:
            if get_tenant(s, body.tenant) is None:
                raise ValidationError(
                    f"no tenant '{body.tenant}'",
                    field="tenant",
                    hint=f"create it first: cnet admin create-tenant {body.tenant}",
                )
            row.issued_at = datetime.now(CST)
            row.issued_by = who
            add_voucher(s, row)
            audit(
                s,
                who,
                "voucher.issue",
                f"voucher:{row.id}",
                {
                    "tenant": row.tenant_id,
                    "issuer": row.issuer,
                    "pct": str(row.pct),
                    "cap_cny": str(row.cap_cny),
                    "centers": row.centers,
                    "classes": row.classes,
                    "valid_from": row.valid_from.isoformat(),
                    "valid_until": row.valid_until.isoformat(),
                },
            )
            return view(row, now)
    finally:
        if own:
            database.dispose()


def vouchers(
    db: DbLike, tenant: str | None = None, now: datetime | None = None
) -> list[VoucherView]:
    """Vouchers in issue order with their balances, of one tenant or of all."""
    database, own = _db(db)
    try:
        with database.read() as s:
            return [view(r, now) for r in list_vouchers(s, tenant)]
    finally:
        if own:
            database.dispose()


def price_after_vouchers(
    options: Sequence[QuoteOption], wallet: Sequence[Voucher], cls: str
) -> None:
    """Set each quote option's subsidy and price after `wallet` (in place), exactly.

    Each option is priced as the tenant's next charge: at its center, for
    class `cls`, incurred at its finish, against the balances now.
    """
    for o in options:
        applied = apply_vouchers(o.total_cny, o.center, cls, o.finish, wallet)
        o.subsidy_cny = applied.subsidy_cny
        o.paid_cny = applied.paid_cny
