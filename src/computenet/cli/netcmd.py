"""Network, money and identity commands: centers, network validate/show, bill, whoami."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from computenet.catalog import load_network
from computenet.cli.app import app, network_app
from computenet.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    check_period,
    client,
    cny,
    console,
    print_json,
    when,
)
from computenet.protocol import BillView


@app.command()
def centers(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """The network's centers: chips free/total, online, power price now, queue."""
    with client(url, token) as cn:
        views = cn.centers()
    if json_out:
        print_json(views)
        return
    t = Table(title=f"{len(views)} center(s)")
    for col in (
        "id",
        "name",
        "region",
        "online",
        "chips free/total",
        "PUE",
        "¥/kWh now",
        "¥/CU·h",
        "kg CO2/kWh",
        "queued",
        "running",
    ):
        t.add_column(col, justify="right" if col[0] in "P¥kqr" else "left")
    for c in views:
        pools = ", ".join(
            f"{p.get('chip')} {p.get('free', '?')}/{p.get('total', p.get('count', '?'))}"
            # A region (docs/federation.md): its own chips in use and queue, inside it.
            + (f" ({p['used']} used, {p.get('queued', 0)} queued inside)" if "used" in p else "")
            for p in c.pools
        )
        t.add_row(
            c.id,
            c.name,
            c.region,
            Text("yes", style="green") if c.online else Text("no", style="red"),
            pools,
            f"{c.pue:.2f}",
            f"{c.tariff_now:.4f}".rstrip("0").rstrip("."),
            cny(c.service_price_per_cuh),
            f"{c.carbon_kg_per_kwh:.2f}",
            str(c.queued),
            str(c.running),
        )
    console().print(t)


@network_app.command("validate")
def network_validate(
    file: Annotated[str, typer.Argument(metavar="FILE", help="a network YAML file, or demo/china")],
    json_out: JsonOpt = False,
) -> None:
    """Check a network file; print a summary of what it describes."""
    net = load_network(Path(file) if Path(file).exists() else file)
    if json_out:
        print_json(
            {
                "name": net.name,
                "time_scale": net.time_scale,
                "data_scale": net.data_scale,
                "centers": [c.id for c in net.centers],
                "sites": [s.id for s in net.sites],
                "links": len(net.links),
                "chips": sum(c.total_chips for c in net.centers),
            }
        )
        return
    out = console()
    out.print(
        f"[green]ok[/]: network '{net.name}': {len(net.centers)} centers, {len(net.sites)} user"
        f" sites, {len(net.links)} links, time_scale {net.time_scale:g}, data_scale"
        f" {net.data_scale:g}"
    )
    t = Table(box=None, padding=(0, 2))
    for col in ("center", "region", "chips", "PUE", "¥/kWh min-max", "¥/CU·h"):
        t.add_column(col)
    for c in net.centers:
        t.add_row(
            c.id,
            c.region,
            ", ".join(f"{p.count}× {p.chip}" for p in c.pools),
            f"{c.pue:.2f}",
            f"{min(c.tariff.hourly):.3f}-{max(c.tariff.hourly):.3f}",
            cny(c.service_price_per_cuh),
        )
    out.print(t)


@network_app.command("show")
def network_show(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """The running network: name, clock, centers and links."""
    with client(url, token) as cn:
        net = cn.network()
    if json_out:
        print_json(net)
        return
    out = console()
    now = net.get("now")
    shown = when(datetime.fromisoformat(now), date=True) + " CST" if isinstance(now, str) else "-"
    out.print(
        f"network '{net.get('name')}' · network time {shown} · time_scale"
        f" {net.get('time_scale')} · data_scale {net.get('data_scale')}"
    )
    t = Table(title="links")
    for col in ("a", "b", "Gbps", "ms", "¥/GB"):
        t.add_column(col)
    for link in net.get("links", []):
        t.add_row(
            str(link.get("a")),
            str(link.get("b")),
            str(link.get("bandwidth_gbps")),
            str(link.get("latency_ms")),
            str(link.get("price_per_gb")),
        )
    out.print(t)


@app.command()
def bill(
    tenant: Annotated[str | None, typer.Option("--tenant", help="admins: whose bill")] = None,
    period: Annotated[str | None, typer.Option("--period", help="month, YYYY-MM")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A tenant's bill: per job and per center, energy/service/transfer ¥, kWh, CO2."""
    check_period(period)
    with client(url, token) as cn:
        b = cn.bill(tenant=tenant, period=period)
        standing = None if json_out else _tenancy(cn, tenant)
    if json_out:
        print_json(b)
    else:
        print_bill(b)
        if standing is not None:
            from computenet.cli.admin import print_tenancy

            print_tenancy(standing)


def _tenancy(cn: Any, tenant: str | None) -> Any:
    """The tenant's quotas and fair-share standing, or None from a server without them."""
    from computenet.errors import NotFoundError

    try:
        return cn.tenancy(tenant=tenant)
    except NotFoundError:
        return None


def print_bill(b: BillView) -> None:
    """The bill as a table and totals."""
    out = console()
    subsidised = any(ln.subsidies for ln in b.lines)
    t = Table(title=f"bill of {b.tenant} for {b.period}")
    for col in (
        "job",
        "name",
        "center",
        "chips",
        "start",
        "chip·h",
        "CU·h",
        "kWh",
        "energy ¥",
        "service ¥",
        "transfer ¥",
        "total ¥",
        # Compute vouchers (docs/user-guide.md): shown when any paid part of this bill.
        *(("vouchers ¥", "you pay ¥") if subsidised else ()),
    ):
        t.add_column(col, justify="left" if col in ("job", "name", "center", "chips") else "right")
    for ln in b.lines:
        t.add_row(
            ln.job_id,
            ln.job_name,
            ln.center,
            f"{ln.chips}× {ln.chip}",
            when(ln.started_at),
            f"{ln.chip_hours:.2f}",
            f"{ln.cu_hours:.2f}",
            f"{ln.kwh:.1f}",
            cny(ln.energy_cny),
            cny(ln.service_cny),
            cny(ln.transfer_cny),
            cny(ln.total_cny),
            *((cny(ln.subsidy_cny), cny(_paid(ln.paid_cny, ln.total_cny))) if subsidised else ()),
        )
    t.add_section()
    t.add_row(
        "total",
        "",
        "",
        "",
        "",
        "",
        f"{b.cu_hours:.2f}",
        f"{b.kwh:.1f}",
        cny(b.energy_cny),
        cny(b.service_cny),
        cny(b.transfer_cny),
        Text(cny(b.total_cny), style="bold"),
        *(
            (cny(b.subsidy_cny), Text(cny(_paid(b.paid_cny, b.total_cny)), style="bold"))
            if subsidised
            else ()
        ),
    )
    out.print(t)
    print_vouchers(b)
    if b.by_center:
        out.print(
            "by center: " + ", ".join(f"{k} ¥{cny(v)}" for k, v in sorted(b.by_center.items()))
        )
    out.print(f"{b.co2_kg:.1f} kg CO2")


def _paid(paid: Decimal | None, total: Decimal) -> Decimal:
    return total if paid is None else paid


def print_vouchers(b: BillView) -> None:
    """What each compute voucher paid of this bill's jobs, and each voucher's balance."""
    out = console()
    for ln in b.lines:
        for sub in ln.subsidies:
            out.print(
                f"  {ln.job_id} {ln.job_name}: voucher {sub.voucher_id} ({sub.issuer})"
                f" pays ¥{cny(sub.amount_cny)}",
                markup=False,
            )
    for v in b.vouchers:
        out.print(
            f"voucher {v.id} ({v.issuer},"
            f" {v.pct}%): ¥{cny(v.remaining_cny)} of ¥{cny(v.cap_cny)} left,"
            f" valid {when(v.valid_from, date=True)} to {when(v.valid_until, date=True)}"
            + (f", {v.state}" if v.state else ""),
            markup=False,
        )


@app.command()
def whoami(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Who the token belongs to."""
    with client(url, token) as cn:
        me = cn.whoami()
    if json_out:
        print_json(me)
    else:
        console().print(
            f"{me.subject} ({me.role})"
            + (f" of tenant {me.tenant}" if me.tenant else "")
            + (f" for center {me.center}" if me.center else "")
            + f" at {cn.url}"
        )
