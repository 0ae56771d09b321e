"""Running a network: `cnet server`, `cnet agent`, and `cnet up` (server plus agents)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from computenet.catalog import BUILTIN_NETWORKS, load_network
from computenet.cli.app import app
from computenet.cli.common import console, port_free
from computenet.cli.supervise import (
    Child,
    Supervisor,
    cnet_argv,
    free_port,
    wait_http,
    write_secret,
)
from computenet.errors import ComputeNetError, ConflictError, ValidationError
from computenet.model import Network
from computenet.model.limits import MAX_BODY_BYTES
from computenet.protocol.fencing import DEFAULT_LEASE_TIMEOUT_S
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sdk.config import config_path, save_config

# `cnet up` and the demos run on one machine, where a center lost is seen (and its
# jobs requeued) sooner than a deployment's `cnet server` default would allow.
DEMO_LEASE_TIMEOUT_S = 10.0

NetworkArg = Annotated[
    str, typer.Argument(metavar="NETWORK", help="demo, china, or a network YAML file")
]


def network_of(name_or_path: str) -> Network:
    """Load a network by built-in name or file (errors name the field)."""
    return load_network(name_or_path if name_or_path in BUILTIN_NETWORKS else Path(name_or_path))


@app.command()
def server(
    db: Annotated[
        str, typer.Option("--db", envvar="CNET_DB", help="SQLAlchemy URL or SQLite file path")
    ] = "sqlite:///computenet.db",
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="port to listen on")] = 8080,
    network: Annotated[
        str, typer.Option("--network", help="demo, china, or a network YAML file")
    ] = "demo",
    epoch: Annotated[
        str | None,
        typer.Option("--epoch", help="network time at start, ISO-8601 (default: continue, or now)"),
    ] = None,
    heartbeat_interval: Annotated[float, typer.Option(help="real seconds")] = 2.0,
    lease_timeout: Annotated[
        float,
        typer.Option(help="real seconds; agents fence at half of it, jobs are requeued at 1.25x"),
    ] = DEFAULT_LEASE_TIMEOUT_S,
    cycle_interval: Annotated[float, typer.Option(help="real seconds between cycles")] = 1.0,
    leader_lease: Annotated[
        float, typer.Option(help="real seconds; replicas on one database elect a leader with it")
    ] = 5.0,
    profile: Annotated[str, typer.Option(help="scheduling profile")] = "min-cost",
    strategy: Annotated[
        str, typer.Option(help="cycle strategy: greedy, lookahead, batch-optimizer")
    ] = "greedy",
    patience: Annotated[
        float,
        typer.Option(
            help="hours a batch job without a deadline may be held for cheaper power (0: never)"
        ),
    ] = DEFAULT_PATIENCE_H,
    max_pending: Annotated[
        int, typer.Option(min=0, help="pending jobs per tenant (0: no limit)")
    ] = 10_000,
    submits_per_s: Annotated[
        float, typer.Option(min=0, help="submits per second per tenant (0: no limit)")
    ] = 1000.0,
    max_body_bytes: Annotated[
        int, typer.Option(min=1024, help="largest user API request body")
    ] = MAX_BODY_BYTES,
    ticket_ttl: Annotated[
        float, typer.Option(help="real seconds a data fetch ticket stays valid after the lease")
    ] = 300.0,
    sim_reports: Annotated[
        Path, typer.Option(help="folder of `cnet sim compare --out` reports the dashboard shows")
    ] = Path("sim-reports"),
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    log_format: Annotated[
        str, typer.Option(help="text, or json: one JSON object per line")
    ] = "text",
    metrics_token_file: Annotated[
        Path | None,
        typer.Option(
            help="file holding the token Prometheus sends to GET /metrics (admins may always)"
        ),
    ] = None,
) -> None:
    """Run the control plane (REST API, scheduler, dispatcher) in the foreground."""
    from computenet.server import Settings, serve
    from computenet.server.metrics import LOG_FORMATS, read_token_file

    if log_format not in LOG_FORMATS:
        raise ValidationError(
            f"unknown log format '{log_format}'", field="log_format", hint="text or json"
        )

    settings = Settings.from_options(
        db=db,
        host=host,
        port=port,
        network=network_of(network),
        epoch=epoch,
        heartbeat_interval_s=heartbeat_interval,
        lease_timeout_s=lease_timeout,
        cycle_interval_s=cycle_interval,
        leader_lease_s=leader_lease,
        profile=profile,
        strategy=strategy,
        patience_h=patience,
        sim_reports_dir=sim_reports,
        max_pending_jobs=max_pending,
        submits_per_s=submits_per_s,
        max_body_bytes=max_body_bytes,
        ticket_ttl_s=ticket_ttl,
        metrics_token=read_token_file(metrics_token_file) if metrics_token_file else None,
    )
    serve(settings, log_level=log_level, log_format=log_format)


@app.command()
def agent(
    center: Annotated[
        str,
        typer.Option("--center", envvar="CNET_CENTER_ID", help="this center's id in the network"),
    ],
    server_url: Annotated[
        str,
        typer.Option(
            "--server",
            envvar=["CNET_SERVER_URL", "CNET_SERVER"],
            help="control plane URL, or replicas' URL1,URL2",
        ),
    ],
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            envvar="CNET_CENTER_TOKEN_FILE",
            help="file holding the center's token (mode 600, owned by the agent's user)",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="CNET_CENTER_TOKEN",
            help="the center's token; prefer --token-file (arguments and env show in /proc)",
        ),
    ] = None,
    run_as: Annotated[
        str,
        typer.Option(
            "--run-as",
            help="who local jobs run as: dynamic (own uid per job; default as root), self, USER",
        ),
    ] = "auto",
    backend: Annotated[
        str, typer.Option("--backend", help="local, slurm, ray, kubernetes or network (a region)")
    ] = "local",
    network: Annotated[
        str | None, typer.Option("--network", help="network name or file to read the pools from")
    ] = None,
    slots: Annotated[
        str | None,
        typer.Option("--slots", envvar="CNET_POOLS", help="N slots per pool, or CHIP=N[,CHIP=N]"),
    ] = None,
    data_root: Annotated[Path | None, typer.Option("--data-root", help="dataset replicas")] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="job dirs and state")
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir",
            help="where jobs' $CNET_CHECKPOINT_DIR lie (default STATE_DIR/checkpoints); for"
            " slurm, ray or kubernetes a filesystem the nodes share, else no preemption",
        ),
    ] = None,
    data_host: Annotated[str, typer.Option(help="data endpoint bind address")] = "127.0.0.1",
    data_port: Annotated[int, typer.Option(help="data endpoint port (0: a free one)")] = 0,
    data_url: Annotated[str | None, typer.Option(help="URL other agents reach it at")] = None,
    backend_opt: Annotated[
        list[str] | None, typer.Option("--backend-opt", help="KEY=VALUE for the backend")
    ] = None,
    keep_jobs: Annotated[
        bool, typer.Option("--keep-jobs", help="on SIGTERM leave jobs running")
    ] = False,
    lease_wait: Annotated[
        float,
        typer.Option(
            "--lease-wait",
            metavar="S",
            help="long poll: wait up to S s at the control plane for a job (0: poll instead)",
        ),
    ] = 2.0,
    log_level: Annotated[str, typer.Option(envvar="CNET_LOG_LEVEL")] = "INFO",
) -> None:
    """Join a center to the network: register, heartbeat, lease and run jobs (calls out only)."""
    from computenet.agent import run_agent
    from computenet.agent.config import AgentConfig, resolve_token
    from computenet.backends.registry import BACKENDS

    if backend not in BACKENDS:
        raise ValidationError(
            f"unknown backend '{backend}'", field="--backend", hint="one of " + ", ".join(BACKENDS)
        )
    options: dict[str, str] = {}
    for opt in backend_opt or []:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            raise ValidationError(f"'{opt}' is not KEY=VALUE", field="--backend-opt")
        options[key.strip().replace("-", "_")] = value
    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s agent[{center}] %(levelname)s %(message)s",
    )
    config = AgentConfig(
        center=center,
        server=server_url,
        token=resolve_token(token, token_file),
        run_as=run_as,
        backend=backend,
        network=network,
        slots=slots,
        data_root=data_root,
        state_dir=state_dir,
        checkpoint_dir=checkpoint_dir,
        data_host=data_host,
        data_port=data_port,
        data_url=data_url,
        keep_jobs=keep_jobs,
        backend_options=options,
        token_file=token_file,  # re-read on a 401: a replaced token needs no restart
        lease_wait_s=max(0.0, lease_wait),
    )
    code = run_agent(config)
    if code:
        raise typer.Exit(code)


@dataclass
class Credentials:
    """Tokens made for a network run: the admin, one user of a tenant, one per center."""

    admin: str
    user: str
    tenant: str
    centers: dict[str, str] = field(default_factory=dict)


def make_credentials(db: str, net: Network, tenant: str, user: str) -> Credentials:
    """Create (or reuse) the tenant and mint fresh admin, user and center tokens."""
    from computenet.server import admin

    with contextlib.suppress(ConflictError):  # a second `cnet up` on one database keeps it
        admin.create_tenant(db, tenant)
    admin_tok = admin.bootstrap_admin(db, "admin")
    user_tok = admin.create_user(db, user, tenant, "user")
    centers = {c.id: admin.create_center_token(db, c.id, net).token for c in net.centers}
    return Credentials(admin_tok.token, user_tok.token, tenant, centers)


@dataclass
class RunningNetwork:
    """A server and its agents started by one supervisor."""

    url: str
    network: Network
    creds: Credentials
    data_roots: dict[str, str]
    db: str
    base_dir: Path


def start_network(
    sup: Supervisor,
    net_arg: str,
    net: Network,
    base_dir: Path,
    *,
    db: str,
    host: str = "127.0.0.1",
    port: int = 0,
    tenant: str = "default",
    user: str = "me",
    epoch: str | None = None,
    env: dict[str, str] | None = None,
    status: object = None,
    backends: Mapping[str, Sequence[str]] | None = None,
) -> RunningNetwork:
    """Start `cnet server` and one `cnet agent` per center; return when all agents are online.

    Agents run `--backend local` unless `backends` gives a center other backend
    arguments (e.g. a region's uplink to its parent: ``--backend uplink --backend-opt …``).

    What only the operator may read stays theirs even when jobs run as other users
    (agents as root): `base_dir` is 0711 (jobs reach their centers' dirs through
    it, never list it), a SQLite database in it is 0600 (every tenant's jobs and
    the token hashes), the logs 0700, the token files 0600.
    """
    base_dir.mkdir(parents=True, exist_ok=True)
    base_dir.chmod(0o711)
    _private_sqlite(db)
    creds = make_credentials(db, net, tenant, user)
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    argv = [
        "server",
        "--db",
        db,
        "--host",
        host,
        "--port",
        str(port),
        "--network",
        net_arg,
        "--log-level",
        "warning",
        "--lease-timeout",
        str(DEMO_LEASE_TIMEOUT_S),
    ]
    if epoch:
        argv += ["--epoch", epoch]
    _say(status, f"starting the control plane on {url}")
    srv = sup.start("server", cnet_argv(*argv), env)
    wait_http(f"{url}/healthz", srv, timeout_s=60)
    roots: dict[str, str] = {}
    for c in net.centers:
        cdir = base_dir / "centers" / c.id
        roots[c.id] = str(cdir / "data")
        _say(status, f"starting the agent of {c.id}")
        # The token goes in a 0600 file, never in the agent's environment or argv
        # (both readable in /proc); nor do the operator's client credentials.
        token_file = write_secret(base_dir / "secrets" / f"{c.id}.token", creds.centers[c.id])
        sup.start(
            f"agent-{c.id}",
            cnet_argv(
                "agent",
                "--center",
                c.id,
                "--server",
                url,
                *(backends or {}).get(c.id, ("--backend", "local")),
                "--network",
                net_arg,
                "--data-root",
                str(cdir / "data"),
                "--state-dir",
                str(cdir / "state"),
                "--log-level",
                "WARNING",
                "--token-file",
                str(token_file),
            ),
            env,
            drop_secrets=True,
        )
    running = RunningNetwork(url, net, creds, roots, db, base_dir)
    wait_online(sup, running, status=status)
    return running


def start_gateway(
    sup: Supervisor,
    running: RunningNetwork,
    net_arg: str,
    site: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    name: str = "gateway",
    env: Mapping[str, str] | None = None,
) -> tuple[Child, str]:
    """Start `cnet gateway` at `site` of the network for the running network's user.

    Its URL and token are in a 0600 client config file of its own under the
    network's ``secrets/`` (never in its argv or environment, both readable in
    /proc). Returns the child and the gateway's base URL once it answers.
    """
    port = port or free_port(host)
    cfg = write_secret(
        running.base_dir / "secrets" / f"{name}.json",
        json.dumps({"url": running.url, "token": running.creds.user}),
    )
    argv = cnet_argv(
        "gateway", "--host", host, "--port", str(port), "--network", net_arg, "--site", site
    )
    child = sup.start(name, argv, {**(env or {}), "CNET_CONFIG": str(cfg)}, drop_secrets=True)
    url = f"http://{host}:{port}"
    wait_http(f"{url}/healthz", child, timeout_s=60)
    return child, url


def default_gateway_site(net: Network) -> str:
    """Where `cnet up` puts its gateway: the network's first user site, else its first center."""
    return net.sites[0].id if net.sites else net.centers[0].id


def _private_sqlite(db: str) -> None:
    """Create a SQLite database file 0600 before anything opens it (its journals follow)."""
    prefix = "sqlite:///"
    if not db.startswith(prefix) or db == prefix or ":memory:" in db:
        return
    path = Path(db[len(prefix) :].split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with contextlib.suppress(OSError):
        path.chmod(0o600)


def wait_online(
    sup: Supervisor, net: RunningNetwork, timeout_s: float = 60.0, status: object = None
) -> None:
    """Wait until every center is online (its agent registered and heartbeating)."""
    from computenet.sdk import Client

    deadline = time.monotonic() + timeout_s
    with Client(net.url, net.creds.user) as cn:
        while True:
            for c in sup.dead():
                raise ComputeNetError(
                    f"{c.name} exited with status {c.proc.returncode}",
                    field=c.name,
                    hint=f"its log {c.log_path} ends: {c.log_tail(2)!r}",
                )
            down = [c.id for c in cn.centers() if not c.online]
            if not down:
                return
            _say(status, f"waiting for agents: {', '.join(down)}")
            if time.monotonic() > deadline:
                raise ComputeNetError(
                    f"centers {', '.join(down)} did not come online in {timeout_s:g}s",
                    field="agent",
                    hint=f"see the agent logs in {sup.log_dir}",
                )
            time.sleep(0.3)


def _say(status: object, text: str) -> None:
    update = getattr(status, "update", None)
    if callable(update):
        update(text)


def default_home() -> Path:
    """Where `cnet up` keeps databases, data roots and logs.

    $CNET_HOME, else ~/.local/share/computenet (/var/lib/computenet as root, where
    the jobs' own uids can reach their dirs).
    """
    if os.environ.get("CNET_HOME"):
        return Path(os.environ["CNET_HOME"]).expanduser()
    if os.geteuid() == 0 and not os.environ.get("XDG_DATA_HOME"):
        return Path("/var/lib/computenet")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "computenet"


@app.command()
def up(
    network: NetworkArg,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0: any free port")] = 8080,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    db: Annotated[
        str | None, typer.Option("--db", help="database URL (default: a SQLite file under --home)")
    ] = None,
    home: Annotated[
        Path | None, typer.Option("--home", help="state directory (default: $CNET_HOME)")
    ] = None,
    tenant: Annotated[str, typer.Option("--tenant", help="tenant of the user token")] = "default",
    user: Annotated[str, typer.Option("--user", help="name of the user token")] = "me",
    epoch: Annotated[
        str | None, typer.Option("--epoch", help="network time at start, ISO-8601")
    ] = None,
    gateway: Annotated[
        bool,
        typer.Option(
            "--gateway/--no-gateway", help="also start a gateway for services (docs/services.md)"
        ),
    ] = True,
    gateway_port: Annotated[
        int, typer.Option("--gateway-port", min=0, max=65535, help="the gateway's; 0: any free")
    ] = 8300,
    gateway_site: Annotated[
        str | None,
        typer.Option(
            "--gateway-site",
            help="the user site or center the gateway sits at (default: the first user site)",
        ),
    ] = None,
) -> None:
    """Run a whole network in the foreground: the server, one local agent per center, a gateway.

    Writes the client config so that later `cnet` commands just work; Ctrl-C stops everything.
    """
    net = network_of(network)
    net_arg = network if network in BUILTIN_NETWORKS else str(Path(network).resolve())
    base = (home or default_home()) / net.name
    base.mkdir(parents=True, exist_ok=True)
    db_url = db or f"sqlite:///{base / 'computenet.db'}"
    site = gateway_site or default_gateway_site(net)
    if site not in net.node_ids:
        raise ValidationError(
            f"'{site}' is no user site or center of network '{net.name}'",
            field="--gateway-site",
            hint="one of " + ", ".join(sorted(net.node_ids)),
        )
    if gateway and gateway_port and not port_free(host, gateway_port):
        raise ValidationError(
            f"port {gateway_port} on {host} is in use",
            field="--gateway-port",
            hint="pass --gateway-port 0 (any free port), another port, or --no-gateway",
        )
    if port and not port_free(host, port):  # else the clients reach the server already there
        raise ValidationError(
            f"port {port} on {host} is in use",
            field="--port",
            hint="pass --port 0 (any free port) or another port",
        )
    out = console()
    with Supervisor(base / "logs") as sup:
        with out.status("starting") as status:
            running = start_network(
                sup,
                net_arg,
                net,
                base,
                db=db_url,
                host=host,
                port=port,
                tenant=tenant,
                user=user,
                epoch=epoch,
                status=status,
            )
            gw_url = None
            if gateway:
                status.update(f"starting the gateway at {site}")
                _, gw_url = start_gateway(sup, running, net_arg, site, host=host, port=gateway_port)
        settings: dict[str, object] = {
            "url": running.url,
            "token": running.creds.user,
            "admin_token": running.creds.admin,
            "tenant": tenant,
            "network": net.name,
            "db": db_url,
            "data_roots": running.data_roots,
        }
        if gw_url:
            settings["gateway"] = {"url": gw_url, "site": site}
        cfg = save_config(settings, config_path())
        out.print(f"[bold green]ComputeNet '{net.name}' is up[/] at [bold]{running.url}[/]")
        out.print(f"  dashboard {running.url}/   API docs {running.url}/docs")
        if gw_url:
            out.print(f"  gateway {gw_url}/services/NAME/ at {site}; try `cnet serve ls`")
        out.print(
            f"  {len(net.centers)} agents: {', '.join(c.id for c in net.centers)}; logs in"
            f" {sup.log_dir}"
        )
        out.print(f"  client config written to {cfg} (tenant {tenant}); try `cnet centers`")
        out.print("  Ctrl-C stops the server, every agent and the gateway")
        try:
            while True:
                time.sleep(0.5)
                for c in sup.dead():
                    tail = c.log_tail(5)
                    raise ComputeNetError(
                        f"{c.name} exited with status {c.proc.returncode}; stopping the network",
                        field=c.name,
                        hint=f"log {c.log_path}: {tail.splitlines()[-1] if tail else ''}",
                    )
        except KeyboardInterrupt:
            out.print("stopping…")
    sys.stdout.flush()
