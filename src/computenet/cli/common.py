"""What every `cnet` command shares: connection options, the client, output, errors."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import pydantic
import typer
from rich.console import Console

from computenet.errors import ComputeNetError, ValidationError
from computenet.model.center import CST
from computenet.sdk.client import Client
from computenet.sdk.config import resolve

# `--db` of the commands that work on the server's database directly (cnet admin …).
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="CNET_DB",
        help="the server's database URL or SQLite file (default: the one `cnet up` wrote in the"
        " config file)",
    ),
]

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="CNET_URL",
        help="server URL, or several replicas' URL1,URL2 (else $CNET_URL, else the config file)",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="CNET_TOKEN", help="bearer token (else $CNET_TOKEN, else the config file)"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _width(stream: Any) -> int | None:
    # Piped output (files, less, grep) gets wide tables rather than Rich's 80 columns.
    if os.environ.get("COLUMNS") or getattr(stream, "isatty", lambda: False)():
        return None
    return 160


def console() -> Console:
    """A Rich console on stdout (plain text when stdout is not a terminal)."""
    return Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))


def err_console() -> Console:
    """A Rich console on stderr, for progress that must not mix with --json output."""
    return Console(stderr=True, highlight=False, width=_width(sys.stderr))


def client(url: str | None, token: str | None) -> Client:
    """A client from options, then environment, then the config file."""
    cfg = resolve(url, token)
    if not cfg.token:
        raise ComputeNetError(
            "no token",
            field="token",
            hint="pass --token, set CNET_TOKEN, or run `cnet up` which writes the config file",
        )
    return Client(cfg.urls, cfg.token)


def fail(exc: ComputeNetError) -> typer.Exit:
    """Print one line on stderr and return the exit to raise: 2 for bad input, 1 otherwise."""
    sys.stderr.write(f"error: {exc.one_line()}\n")
    sys.stderr.flush()
    return typer.Exit(2 if 400 <= exc.status_code < 500 else 1)


def to_jsonable(obj: Any) -> Any:
    """Models, lists and dicts into plain JSON-ready data."""
    if isinstance(obj, pydantic.BaseModel):
        return obj.model_dump(mode="json", by_alias=True)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def print_json(obj: Any) -> None:
    """Print `obj` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def when(t: datetime | None, *, date: bool = False) -> str:
    """A network-time instant shown in CST, short."""
    if t is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M" if date else "%m-%d %H:%M"
    return t.astimezone(CST).strftime(fmt)


def dur(seconds: float | None) -> str:
    """Seconds as a short duration: 45s, 12m, 3h05m."""
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if s < 600 and s % 60 else f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def cny(v: Decimal | None) -> str:
    """¥ to the fen."""
    return "-" if v is None else f"{Decimal(v):.2f}"


_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_period(period: str | None) -> str | None:
    """Check a billing period YYYY-MM."""
    if period is not None and not _PERIOD.match(period):
        raise ValidationError(
            f"'{period}' is not a month", field="period", hint="use YYYY-MM, e.g. 2026-12"
        )
    return period


def join(items: Iterable[str], sep: str = "; ") -> str:
    """Join non-empty strings."""
    return sep.join(i for i in items if i)


def port_free(host: str, port: int) -> bool:
    """Whether `port` on `host` (IPv4 or IPv6) can be listened on now.

    SO_REUSEADDR as uvicorn sets it, so a port left in TIME_WAIT by a stopped
    server counts as free, as it is for the server that will take it.
    """
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError:
        return False
    return True
