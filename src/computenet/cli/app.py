"""The Typer application and its command groups; commands register themselves on import."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cnet",
    help="ComputeNet: submit work to a computing power network, and run one.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
datasets_app = typer.Typer(help="Register and list datasets.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Create tenants, users and tokens directly in the server's database.",
    no_args_is_help=True,
)
network_app = typer.Typer(
    help="Check network files; show the running network.", no_args_is_help=True
)
app.add_typer(datasets_app, name="datasets")
app.add_typer(admin_app, name="admin")
app.add_typer(network_app, name="network")
