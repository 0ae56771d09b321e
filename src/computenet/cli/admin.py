"""`cnet admin`: tenants, users and tokens, written straight into the server's database."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from computenet.cli.app import admin_app
from computenet.cli.common import console, print_json
from computenet.errors import ValidationError
from computenet.sdk.config import load_config

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="CNET_DB",
        help="the server's database URL or SQLite file (default: the one `cnet up` wrote in the"
        " config file)",
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
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user and print its token (shown once)."""
    tok = _Admin(db).create_user(name, tenant=tenant, role=role)
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
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a token for a center's agent and print it (shown once)."""
    tok = _Admin(db).create_center_token(center, _network(network))
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
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create the first admin token on a (possibly new) database and print it (shown once)."""
    tok = _Admin(db).bootstrap_admin(name, tenant)
    if json_out:
        print_json(tok)
    else:
        _plain(tok.token)


def _network(name: str | None) -> Any:
    if name is None:
        return None
    from computenet.cli.procs import network_of

    return network_of(name)


def _plain(text: str) -> None:
    # Tokens go out verbatim (no Rich markup or wrapping) so `TOKEN=$(cnet admin ...)` works.
    sys.stdout.write(text + "\n")
