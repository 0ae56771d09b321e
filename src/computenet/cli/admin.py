"""`cnet admin`: tenants, users and tokens, written straight into the server's database."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from computenet.cli.app import admin_app
from computenet.cli.common import console, print_json

DbOpt = Annotated[
    str,
    typer.Option("--db", envvar="CNET_DB", help="the server's database URL or SQLite file path"),
]


def _admin() -> Any:
    from computenet.server import admin

    return admin


@admin_app.command("create-tenant")
def create_tenant(
    name: Annotated[str, typer.Argument(help="tenant name, lowercase")],
    db: DbOpt,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a tenant."""
    result = _admin().create_tenant(db, name)
    if json_out:
        print_json(result)
    else:
        console().print(f"tenant {name} created")


@admin_app.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="user name")],
    tenant: Annotated[str, typer.Option("--tenant", help="the user's tenant")],
    db: DbOpt,
    role: Annotated[str, typer.Option("--role", help="user or admin")] = "user",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user and print its token (shown once)."""
    tok = _admin().create_user(db, name, tenant=tenant, role=role)
    if json_out:
        print_json(tok)
    else:
        console().print(tok.token)


@admin_app.command("center-token")
def center_token(
    center: Annotated[str, typer.Argument(help="center id")],
    db: DbOpt,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a token for a center's agent and print it (shown once)."""
    tok = _admin().center_token(db, center)
    if json_out:
        print_json(tok)
    else:
        console().print(tok.token)
