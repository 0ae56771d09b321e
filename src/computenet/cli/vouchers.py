"""`cnet admin voucher issue|list`: compute vouchers (算力券) on the server's database.

Issuing is audited as done by ``cli:<os user>``, like every `cnet admin` change.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import pydantic
import typer
from rich.table import Table

from computenet.cli.common import DbOpt, console, print_json
from computenet.errors import ComputeNetError, ValidationError
from computenet.protocol.vouchers import VoucherIssue, VoucherView

voucher_app = typer.Typer(
    help="Issue and list compute vouchers (算力券): a share of a tenant's charges paid by an"
    " issuer, up to a cap.",
    no_args_is_help=True,
)

# The server's field names → the options that set them, for one-line errors.
_OPTION = {
    "tenant": "--tenant",
    "issuer": "--issuer",
    "pct": "--pct",
    "cap_cny": "--cap",
    "valid_from": "--from",
    "valid_until": "--until",
    "centers": "--centers",
    "classes": "--classes",
}


def _decimal(text: str, option: str) -> Decimal:
    try:
        return Decimal(text.strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(f"'{text}' is not a number", field=option) from None


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _db(db: str | None) -> str:
    from computenet.cli.admin import _configured_db

    return db or _configured_db()


@voucher_app.command("issue")
def issue(
    tenant: Annotated[str, typer.Option("--tenant", help="the tenant it is issued to")],
    issuer: Annotated[str, typer.Option("--issuer", help='who pays, e.g. "Shanghai"')],
    pct: Annotated[str, typer.Option("--pct", help="percent of each eligible charge, e.g. 50")],
    cap: Annotated[str, typer.Option("--cap", help="the most it pays in all, ¥")],
    valid_from: Annotated[
        str, typer.Option("--from", help="a date (00:00 CST) or an ISO time, network time")
    ],
    valid_until: Annotated[
        str,
        typer.Option("--until", help="a date (valid through that day, CST) or an ISO time"),
    ],
    centers: Annotated[
        str | None, typer.Option("--centers", help="eligible centers, comma-separated; default all")
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option("--classes", help="eligible workload classes, comma-separated; default all"),
    ] = None,
    network: Annotated[
        str | None,
        typer.Option("--network", help="check centers and classes against this network"),
    ] = None,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Issue a voucher to a tenant (audited)."""
    from computenet.cli.admin import _network
    from computenet.server.vouchers import issue_voucher

    try:
        body = VoucherIssue(
            tenant=tenant,
            issuer=issuer,
            pct=_decimal(pct, "--pct"),
            cap_cny=_decimal(cap, "--cap"),
            centers=_names(centers),
            classes=_names(classes),
            valid_from=valid_from,
            valid_until=valid_until,
        )
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else ""
        raise ValidationError(err["msg"], field=_OPTION.get(name, name)) from None
    try:
        v = issue_voucher(_db(db), body, _network(network))
    except ComputeNetError as exc:
        head = (exc.field or "").split("[")[0]
        if head in _OPTION:
            exc.field = _OPTION[head]
        raise
    if json_out:
        print_json(v)
        return
    console().print(f"voucher {v.id} issued to {v.tenant}: {_terms(v)}")


def _terms(v: VoucherView) -> str:
    where = ", ".join(v.centers) if v.centers else "all centers"
    what = ", ".join(v.classes) if v.classes else "all classes"
    return (
        f"{v.issuer} pays {v.pct}% up to ¥{v.cap_cny} ({where}; {what}),"
        f" {v.valid_from:%Y-%m-%d %H:%M} to {v.valid_until:%Y-%m-%d %H:%M} CST"
    )


@voucher_app.command("list")
def list_(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="one tenant's; default all")
    ] = None,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Vouchers in issue order with what each has paid and has left."""
    from computenet.server.vouchers import vouchers

    rows = vouchers(_db(db), tenant)
    if json_out:
        print_json(rows)
        return
    t = Table(title=f"vouchers ({len(rows)})")
    for col in ("id", "tenant", "issuer", "pct", "cap ¥", "used ¥", "left ¥", "valid", "where"):
        t.add_column(col)
    for v in rows:
        t.add_row(*_row(v))
    console().print(t)


def _row(v: VoucherView) -> list[Any]:
    where = ",".join(v.centers) or "all"
    if v.classes:
        where += " / " + ",".join(v.classes)
    return [
        str(v.id),
        v.tenant,
        v.issuer,
        f"{v.pct}%",
        str(v.cap_cny),
        str(v.used_cny),
        str(v.remaining_cny),
        f"{v.valid_from:%Y-%m-%d %H:%M} → {v.valid_until:%Y-%m-%d %H:%M}",
        where,
    ]
