"""`cnet admin`: tenants, users, tokens, data keys and the audit log, on the server's database.

Every change is recorded in the audit log as done by ``cli:<os user>``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from computenet.cli.app import admin_app
from computenet.cli.common import DbOpt, console, print_json
from computenet.errors import ValidationError
from computenet.sdk.config import load_config

ExpiresOpt = Annotated[
    str | None,
    typer.Option(
        "--expires",
        help="when the token stops working: a duration (30d, 12h, 45m) or an ISO time;"
        " default never",
    ),
]


class _Admin:
    """`computenet.server.admin` bound to one database URL."""

    def __init__(self, db: str | None) -> None:
        from computenet.server import admin

        self.db = db or _configured_db()
        self.mod = admin

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.mod, name)
        return lambda *a, **kw: fn(self.db, *a, **kw)


def _configured_db() -> str:
    db = load_config().get("db")
    if not isinstance(db, str) or not db:
        raise ValidationError(
            "which database?",
            field="--db",
            hint="pass --db URL (the server's --db), set CNET_DB, or run `cnet up` first",
        )
    return db


@admin_app.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Argument(help="tenant name, lowercase")],
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a tenant."""
    result = _Admin(db).create_tenant(name)
    if json_out:
        print_json({"tenant": result})
    else:
        console().print(f"tenant {name} created")


@admin_app.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="user name")],
    tenant: Annotated[str, typer.Option("--tenant", help="the user's tenant")],
    db: DbOpt = None,
    role: Annotated[str, typer.Option("--role", help="user or admin")] = "user",
    expires: ExpiresOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user and print its token (shown once)."""
    if role not in ("user", "admin"):
        raise ValidationError(f"unknown role '{role}'", field="--role", hint="user or admin")
    tok = _Admin(db).create_user(name, tenant=tenant, role=role, expires=expires)
    if json_out:
        print_json(tok)
    else:
        _plain(tok.token)


@admin_app.command("center-token")
def center_token(
    center: Annotated[str, typer.Argument(help="center id")],
    db: DbOpt = None,
    network: Annotated[
        str | None, typer.Option("--network", help="check the center is in this network")
    ] = None,
    expires: ExpiresOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a token for a center's agent and print it (shown once).

    Run it again to replace a center's token without stopping the center: the
    old token keeps working until `cnet admin revoke ID`.
    """
    tok = _Admin(db).create_center_token(center, _network(network), expires=expires)
    if json_out:
        print_json(tok)
    else:
        _plain(tok.token)


@admin_app.command("bootstrap")
def bootstrap(
    db: DbOpt = None,
    name: Annotated[str, typer.Option("--name", help="the admin's name")] = "admin",
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="also make the admin a member of this tenant")
    ] = None,
    expires: ExpiresOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create the first admin token on a (possibly new) database and print it (shown once)."""
    tok = _Admin(db).bootstrap_admin(name, tenant, expires=expires)
    if json_out:
        print_json(tok)
    else:
        _plain(tok.token)


@admin_app.command("tokens")
def tokens(
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List every token: id, subject, role, tenant or center, created, expires, state."""
    rows = _Admin(db).list_tokens()
    if json_out:
        print_json(rows)
        return
    t = Table(title=f"{len(rows)} token(s)")
    for col in ("id", "subject", "role", "tenant/center", "created", "expires", "state"):
        t.add_column(col)
    for r in rows:
        t.add_row(
            str(r.id),
            r.subject,
            r.role,
            r.tenant or r.center or "-",
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.expires_at.strftime("%Y-%m-%d %H:%M") if r.expires_at else "never",
            r.state if r.revoked_at is None else f"revoked {r.revoked_at:%Y-%m-%d %H:%M}",
        )
    console().print(t)


@admin_app.command("revoke")
def revoke(
    token_id: Annotated[int, typer.Argument(help="the token's id (cnet admin tokens)")],
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Revoke a token: servers refuse it within a few seconds (their auth cache)."""
    info = _Admin(db).revoke_token(token_id)
    if json_out:
        print_json(info)
    else:
        console().print(f"token {info.id} ({info.subject}, {info.role}) revoked")


@admin_app.command("rotate-data-key")
def rotate_data_key(
    center: Annotated[str, typer.Argument(help="center id")],
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Give a center a new data key: fetch tickets signed with the old one stop working.

    The running agent picks the new key up at its next heartbeat; no restart.
    """
    view = _Admin(db).rotate_data_key(center)
    if json_out:
        print_json(view)
    else:
        console().print(f"center {center}: data key version {view.data_key_version}")


@admin_app.command("audit")
def audit(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    before: Annotated[
        int | None, typer.Option("--before", help="entries older than this id (paging)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The audit log of admin actions, newest first."""
    page = _Admin(db).audit_log(limit, before)
    if json_out:
        print_json(page)
        return
    t = Table(title=f"audit log ({len(page.entries)} entries)")
    for col in ("id", "at", "actor", "action", "target"):
        t.add_column(col)
    for e in page.entries:
        t.add_row(str(e.id), e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, e.action, e.target)
    console().print(t)
    if page.next_before is not None:
        console().print(f"older: cnet admin audit --before {page.next_before}")


@admin_app.command("limits")
def limits(
    tenant: Annotated[str, typer.Argument(help="tenant name")],
    max_pending: Annotated[
        int | None, typer.Option("--max-pending", min=0, help="pending jobs (0: no limit)")
    ] = None,
    submits_per_s: Annotated[
        float | None,
        typer.Option("--submits-per-s", min=0, help="submissions per second (0: no limit)"),
    ] = None,
    reset: Annotated[bool, typer.Option("--reset", help="back to the server's defaults")] = False,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set a tenant's own limits; servers apply them within a few seconds (audited)."""
    from computenet.server.admin import cli_actor
    from computenet.server.limits import set_tenant_limits

    out = set_tenant_limits(
        db or _configured_db(),
        tenant,
        max_pending_jobs=max_pending,
        submits_per_s=submits_per_s,
        reset=reset,
        actor=cli_actor(),
    )
    if json_out:
        print_json(dataclasses.asdict(out))
        return
    pending = "server default" if out.max_pending_jobs is None else str(out.max_pending_jobs)
    rate = "server default" if out.submits_per_s is None else f"{out.submits_per_s:g}/s"
    console().print(f"tenant {out.tenant}: max pending {pending}, submits {rate}")


def _network(name: str | None) -> Any:
    if name is None:
        return None
    from computenet.cli.procs import network_of

    return network_of(name)


def _plain(text: str) -> None:
    # Tokens go out verbatim (no Rich markup or wrapping) so `TOKEN=$(cnet admin ...)` works.
    sys.stdout.write(text + "\n")


# `cnet admin voucher issue|list` (cli/vouchers.py).
from computenet.cli.vouchers import voucher_app  # noqa: E402

admin_app.add_typer(voucher_app, name="voucher")


# -- tenancy: `cnet admin tenant set`, `cnet admin quota set|list|clear` (docs/tenancy.md) --

tenant_app = typer.Typer(help="A tenant's fair-share weight and priority ceiling.")
quota_app = typer.Typer(help="Per-tenant quotas: chips in use, CU·h and ¥ per day or month.")
admin_app.add_typer(tenant_app, name="tenant")
admin_app.add_typer(quota_app, name="quota")


@tenant_app.command("set")
def tenant_set(
    name: Annotated[str, typer.Argument(help="tenant name")],
    weight: Annotated[
        float | None, typer.Option("--weight", help="fair-share weight (> 0; default 1)")
    ] = None,
    priority_ceiling: Annotated[
        int | None,
        typer.Option(
            "--priority-ceiling", help="highest priority its jobs may carry, 0-10 (-1: none)"
        ),
    ] = None,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set a tenant's fair-share weight and priority ceiling (audited)."""
    view = _Admin(db).set_tenant_share(name, weight=weight, priority_ceiling=priority_ceiling)
    if json_out:
        print_json(view)
        return
    ceiling = "none" if view.priority_ceiling is None else str(view.priority_ceiling)
    console().print(f"tenant {view.tenant}: weight {view.weight:g}, priority ceiling {ceiling}")


@tenant_app.command("show")
def tenant_show(
    name: Annotated[str, typer.Argument(help="tenant name")],
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A tenant's weight, ceiling, quotas with their use, and fair-share standing."""
    from datetime import UTC, datetime

    view = _Admin(db).tenancy(name, datetime.now(UTC))
    if json_out:
        print_json(view)
        return
    print_tenancy(view)


def print_tenancy(view: Any) -> None:
    """A `TenancyView` for people: standing line, then the quotas table (`cnet bill` too)."""
    ceiling = "none" if view.priority_ceiling is None else str(view.priority_ceiling)
    out = console()
    out.print(
        f"tenant {view.tenant}: fair-share weight {view.weight:g} (share {view.share:.0%}"
        f" of the tenants with work), used {view.used_share:.0%} of their recent CU·h"
        f" ({view.usage_cu_hours:.1f} CU·h, half-life {view.half_life_days:g} days);"
        f" priority ceiling {ceiling}"
    )
    if not view.quotas:
        out.print("no quotas")
        return
    t = Table(title=f"quotas of {view.tenant}")
    for col in ("quota", "used", "limit"):
        t.add_column(col, justify="left" if col == "quota" else "right")
    for q in view.quotas:
        t.add_row(q.label, _amount(q.kind, q.used), _amount(q.kind, q.limit))
    out.print(t)


def _amount(kind: str, v: Any) -> str:
    return f"¥{v}" if kind == "cny" else f"{v}"


@quota_app.command("set")
def quota_set(
    tenant: Annotated[str, typer.Argument(help="tenant name")],
    kind: Annotated[
        str, typer.Option("--kind", help="chips (in use), cu_hours or cny (per --period)")
    ],
    limit: Annotated[str, typer.Option("--limit", help="chips, CU·h or ¥")],
    chip: Annotated[
        str | None, typer.Option("--chip", help="chips quota: one chip type (default: all)")
    ] = None,
    period: Annotated[
        str | None, typer.Option("--period", help="cu_hours / cny quota: day or month")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="check --chip against this network")
    ] = None,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set (or replace) one quota of a tenant; the scheduler applies it at its next cycle."""
    if chip is not None and network is None:
        from computenet.catalog.loader import load_chips

        known = load_chips()
        if chip not in known:
            raise ValidationError(
                f"unknown chip '{chip}'", field="--chip", hint="one of " + ", ".join(sorted(known))
            )
    view = _Admin(db).set_quota(
        tenant, kind, limit, chip=chip, period=period, network=_network(network)
    )
    if json_out:
        print_json(view)
        return
    console().print(f"tenant {view.tenant}: quota {view.label}")


@quota_app.command("list")
def quota_list(
    tenant: Annotated[str | None, typer.Argument(help="tenant name (default: all)")] = None,
    db: DbOpt = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every quota (of one tenant) with what is used of it now."""
    views = _Admin(db).list_quotas(tenant)
    if json_out:
        print_json(views)
        return
    t = Table(title=f"quotas ({len(views)})")
    for col in ("tenant", "quota", "used", "limit"):
        t.add_column(col, justify="left" if col in ("tenant", "quota") else "right")
    for q in views:
        t.add_row(q.tenant, q.label, _amount(q.kind, q.used), _amount(q.kind, q.limit))
    console().print(t)


@quota_app.command("clear")
def quota_clear(
    tenant: Annotated[str, typer.Argument(help="tenant name")],
    kind: Annotated[
        str | None, typer.Option("--kind", help="only quotas of this kind (chips, cu_hours, cny)")
    ] = None,
    chip: Annotated[str | None, typer.Option("--chip", help="only this chip type's")] = None,
    db: DbOpt = None,
) -> None:
    """Remove a tenant's quotas (all, or of one kind / chip type)."""
    n = _Admin(db).clear_quotas(tenant, kind=kind, chip=chip)
    console().print(f"tenant {tenant}: {n} quota{'s' if n != 1 else ''} removed")
