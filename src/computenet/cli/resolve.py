"""`cnet resolve IDENTIFIER`: what a compute identifier (算力标识) names and where to reach it."""

from __future__ import annotations

from typing import Annotated

import typer

from computenet.cli.app import app
from computenet.cli.common import JsonOpt, TokenOpt, UrlOpt, client, console, print_json
from computenet.model.identifiers import EXAMPLE, parse


@app.command("resolve")
def resolve_cmd(
    identifier: Annotated[
        str, typer.Argument(metavar="IDENTIFIER", help=f"a compute identifier, e.g. {EXAMPLE}")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What an identifier names (center, pool, dataset replica, job) and where to reach it.

    One that a region below this control plane handed out is answered with the
    region to ask (run `cnet resolve` again against that region's URL).
    """
    ident = parse(identifier)  # bad input: one line, exit 2, before any call
    with client(url, token) as cn:
        view = cn.resolve(str(ident))
    if json_out:
        print_json(view)
        return
    out = console()
    where = f"{view.reach.network} at {view.reach.url}"
    if view.delegate is not None:
        region = view.delegate.url or "its control plane (URL not in the network file)"
        out.print(
            f"{view.identifier}: a {view.kind.value} inside region '{view.delegate.center}'"
            f" of {where}; ask {region}: cnet resolve {view.delegate.identifier}"
        )
        return
    name = view.kind.value
    if view.center is not None and view.pool is None:
        obj = f"center {view.center.id} ({'online' if view.center.online else 'offline'})"
    elif view.pool is not None:
        obj = f"pool {view.pool.get('chip')} at {view.reach.center}: "
        obj += f"{view.pool.get('free', '?')}/{view.pool.get('total', '?')} free"
    elif view.dataset is not None:
        obj = f"dataset {view.dataset.id} replica at {view.reach.center}"
    elif view.job is not None:
        obj = f"job {view.job.id} '{view.job.name}' {view.job.state.value}"
        if view.job.center:
            obj += f" at {view.job.center}"
    else:
        obj = name
    line = f"{view.identifier}: {obj}; reach {where}"
    if view.reach.region_url:
        line += f"; the region's own plane: {view.reach.region_url}"
    out.print(line)
