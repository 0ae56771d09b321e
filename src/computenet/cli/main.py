"""`cnet`: the command line of ComputeNet (entry point `computenet.cli.main:run`).

Bad input — a malformed file, an unknown field, a 4xx from the server — is one
readable line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
import typer

# Importing the command modules registers their commands on `app`.
from computenet.cli import admin, datasets, jobs, netcmd, procs  # noqa: F401
from computenet.cli.app import app
from computenet.cli.common import fail
from computenet.errors import ComputeNetError


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cnet` with `argv` and return its exit status (tests call this directly)."""
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=list(argv) if argv is not None else None, prog_name="cnet",
                          standalone_mode=False)
    except ComputeNetError as exc:
        return fail(exc).exit_code
    except (typer.Exit, click.exceptions.Exit) as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        cmd = f"cnet {exc.ctx.command_path.split(' ', 1)[1]}" if getattr(exc, "ctx", None) and \
            exc.ctx is not None and " " in exc.ctx.command_path else "cnet"
        msg = " ".join(exc.format_message().split())
        sys.stderr.write(f"error: {msg} (see `{cmd} --help`)\n")
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
