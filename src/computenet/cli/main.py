"""`cnet`: the command line of ComputeNet (entry point `computenet.cli.main:run`).

Bad input — a malformed file, an unknown field, a 4xx from the server — is one
readable line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from typer.exceptions import TyperException

# Importing the command modules registers their commands on `app`.
from computenet.cli import (  # noqa: F401
    admin,
    conformance,
    datasets,
    demo,
    jobs,
    netcmd,
    procs,
    resolve,
)
from computenet.cli.app import app
from computenet.cli.common import fail
from computenet.errors import ComputeNetError


def _add_sim() -> None:
    # `cnet sim` is the simulator engineer's module; the rest of `cnet` must work without it.
    try:
        from computenet.cli.sim import sim_app
    except ImportError as exc:  # pragma: no cover - only while the simulator is incomplete
        import logging

        logging.getLogger(__name__).debug("cnet sim unavailable: %s", exc)
        return
    app.add_typer(sim_app, name="sim")


_add_sim()

from computenet.cli.serve import serve_app  # noqa: E402 - inference services (docs/services.md)

app.add_typer(serve_app, name="serve")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cnet` with `argv` and return its exit status (tests call this directly)."""
    command = typer.main.get_command(app)
    try:
        rv = command.main(
            args=list(argv) if argv is not None else None, prog_name="cnet", standalone_mode=False
        )
    except ComputeNetError as exc:
        return fail(exc).exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("interrupted\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except TyperException as exc:
        return _usage_error(exc)
    except BrokenPipeError:
        return 0
    return rv if isinstance(rv, int) else 0


def _usage_error(exc: TyperException) -> int:
    """Command-line mistakes (unknown option, bad value) as one line, exit 2."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":
        return 0  # Typer has printed the help already.
    path = ctx.command_path if ctx is not None else "cnet"
    fmt = getattr(exc, "format_message", None)
    msg = " ".join((fmt() if callable(fmt) else str(exc)).split()).replace("Value error, ", "")
    sys.stderr.write(f"error: {msg} (see `{path} --help`)\n")
    return int(getattr(exc, "exit_code", 2))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
