"""`cnet serve deploy|ls|status|scale|delete` and `cnet gateway` (docs/services.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from computenet.cli.app import app
from computenet.cli.common import (
    JsonOpt,
    TokenOpt,
    UrlOpt,
    client,
    console,
    port_free,
    print_json,
)
from computenet.errors import ComputeNetError, NotFoundError, ValidationError
from computenet.model.service import parse_service_text
from computenet.protocol.service_stats import ServiceMetrics
from computenet.protocol.services import ServiceView

serve_app = typer.Typer(
    help="Inference services: deploy a model server once, reach it through `cnet gateway`.",
    no_args_is_help=True,
)
ServiceName = Annotated[str, typer.Argument(metavar="NAME", help="the service's name")]


def _read(path: Path) -> str:
    if not path.is_file():
        raise ValidationError(
            f"no such service file '{path}'", field="FILE", hint="give the path of a service YAML"
        )
    try:
        return path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("not a UTF-8 text file", field=path.name) from exc


def _show(view: ServiceView) -> None:
    spec = view.spec
    console().print(
        f"[bold]{view.name}[/] ({view.tenant}): {view.ready}/{view.wanted} ready"
        f" (replicas {spec.replicas.min}..{spec.replicas.max},"
        f" target {spec.target_inflight} in flight, p99 TTFB ≤ {spec.latency.p99_ttfb_ms:g} ms)"
    )
    budget = spec.budget_cny_per_hour
    if view.cost_cny_per_hour is not None:
        console().print(
            f"replicas cost ¥{view.cost_cny_per_hour:.2f}/h now"
            + (f" (budget ¥{budget:g}/h)" if budget is not None else " (no budget)")
        )
    for note in view.notes:
        console().print(f"[yellow]note:[/] {note}")
    table = Table("SLOT", "JOB", "STATE", "CENTER", "ENDPOINT")
    for r in view.replicas:
        table.add_row(str(r.slot), r.job_id, r.state.value, r.center or "-", r.endpoint or "-")
    console().print(table)
    for r in view.replicas:
        if r.why:
            console().print(f"slot {r.slot} placed at {r.why}")


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} ms"


def _show_metrics(m: ServiceMetrics) -> None:
    t = m.totals
    per_1k = "-" if t.cny_per_1k_requests is None else f"¥{t.cny_per_1k_requests:.4f}"
    console().print(
        f"requests served: {t.requests}  errors: {t.errors} ({t.error_rate:.2%})"
        f"  TTFB p50 {_ms(t.p50_ttfb_ms)} p99 {_ms(t.p99_ttfb_ms)}"
        f"  latency p50 {_ms(t.p50_latency_ms)} p99 {_ms(t.p99_latency_ms)}"
    )
    console().print(
        f"cost so far: ¥{t.cost_cny:.2f} ({t.cu_hours:.3f} CU·h)  now ¥{t.cost_cny_per_hour:.2f}/h"
        f"  per 1k requests: {per_1k}"
    )


@serve_app.command("deploy")
def deploy(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="the service file (YAML)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy a service file: its min replicas start as jobs on the network."""
    spec = parse_service_text(_read(file), where=file.name)
    with client(url, token) as c:
        view = c.deploy_service(spec)
    print_json(view) if as_json else _show(view)


@serve_app.command("ls")
def ls(url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Your services and how many replicas are ready."""
    with client(url, token) as c:
        views = c.services()
    if as_json:
        print_json(views)
        return
    table = Table("NAME", "READY", "WANTED", "MIN..MAX", "CENTERS", "¥/H NOW", "BUDGET ¥/H")
    for v in views:
        centers = sorted({r.center for r in v.replicas if r.center})
        budget = v.spec.budget_cny_per_hour
        table.add_row(
            v.name,
            str(v.ready),
            str(v.wanted),
            f"{v.spec.replicas.min}..{v.spec.replicas.max}",
            ", ".join(centers) or "-",
            "-" if v.cost_cny_per_hour is None else f"{v.cost_cny_per_hour:.2f}",
            "-" if budget is None else f"{budget:g}",
        )
    console().print(table)


@serve_app.command("status")
def status(
    name: ServiceName, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """One service: each replica's job, state, center and endpoint; its requests and cost."""
    with client(url, token) as c:
        view = c.service(name)
        if as_json:
            print_json(view)
            return
        try:
            metrics: ServiceMetrics | None = c.service_metrics(name, minutes=1)
        except NotFoundError:  # a server from before metering: the replicas alone
            metrics = None
    _show(view)
    if metrics is not None:
        _show_metrics(metrics)


@serve_app.command("scale")
def scale(
    name: ServiceName,
    replicas: Annotated[int, typer.Argument(metavar="N", help="replicas to keep (min..max)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Keep N replicas of the service."""
    with client(url, token) as c:
        view = c.scale_service(name, replicas)
    print_json(view) if as_json else _show(view)


@serve_app.command("delete")
def delete(
    name: ServiceName, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Stop every replica and remove the service."""
    with client(url, token) as c:
        view = c.delete_service(name)
    if as_json:
        print_json(view)
    else:
        console().print(f"deleted {view.name}: {len(view.replicas)} replica(s) stopped")


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program listens on, before saying the gateway is up.

    Without this, uvicorn logs its own multi-line error after our "gateway on" line
    and exits 3.
    """
    if port != 0 and not port_free(host, port):
        raise ValidationError(
            f"cannot listen on {host}:{port}: it is in use or not an address of this machine",
            field="--port",
            hint="another program may hold it: pick another --port or --host",
        )


@app.command("gateway")
def gateway(
    url: UrlOpt = None,
    token: TokenOpt = None,
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port to listen on")] = 8300,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            help="the network's name or file: RTTs from --site and tariffs steer requests",
        ),
    ] = None,
    site: Annotated[
        str | None,
        typer.Option("--site", help="the user site or center this gateway sits at"),
    ] = None,
    hold_s: Annotated[
        float,
        typer.Option(
            "--hold-s",
            min=0,
            help="seconds a request waits for a replica of a service that has none ready"
            " (scale from zero; 0: answer 503 at once)",
        ),
    ] = 60.0,
) -> None:
    """Serve every service of your tenant at /services/NAME/... (docs/services.md)."""
    from computenet.catalog.loader import load_network
    from computenet.gateway.proxy import Gateway, serve
    from computenet.sdk.config import resolve

    cfg = resolve(url, token)
    if not cfg.token:
        raise ComputeNetError(
            "no token", field="token", hint="pass --token, set CNET_TOKEN, or run `cnet up`"
        )
    net = load_network(network) if network else None
    if site is not None and net is None:  # a site means something only in a network
        raise ValidationError(
            f"--site {site} needs --network",
            field="--site",
            hint=f"give --network NET --site {site}, NET the network it is a site or center of",
        )
    if site is not None and net is not None and site not in net.node_ids:
        raise ValidationError(
            f"'{site}' is no site or center of the network",
            field="--site",
            hint="give --network and one of its user sites or centers",
        )
    _check_port(host, port)
    console().print(f"gateway on http://{host}:{port}/services/NAME/ for {cfg.url}")
    serve(Gateway(cfg.url, cfg.token, network=net, site=site, hold_s=hold_s), host, port)
