"""`cnet datasets add|list`: register data that sits at a center, list replicas."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from computenet.agent.data import DataRoot
from computenet.cli.app import datasets_app
from computenet.cli.common import JsonOpt, TokenOpt, UrlOpt, client, console, print_json
from computenet.errors import ValidationError
from computenet.protocol.datapaths import tenant_area
from computenet.sdk.config import resolve


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def place_in_root(file: Path, root: Path, dataset_id: str, tenant: str) -> str:
    """Put `file` in `tenant`'s area of the agent's data `root` (copy unless already there).

    The copy goes to ``ROOT/tenants/<tenant>/<id>``, the place the control
    plane accepts for this tenant; the root's index records it. Returns the
    path relative to the root.
    """
    data_root = DataRoot(root)
    file = file.resolve()
    area = (data_root.root / tenant_area(tenant)).resolve()
    if file.is_relative_to(area) and data_root.inside(str(file.relative_to(data_root.root))):
        rel = str(file.relative_to(data_root.root))
    else:
        rel = data_root.default_path(dataset_id, tenant)
        dest = data_root.inside(rel)
        if dest is None:
            raise ValidationError(f"'{dataset_id}' cannot be a file name", field="--id")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(file, tmp)
        tmp.replace(dest)
    data_root.record(dataset_id, rel)
    return rel


@datasets_app.command("add")
def add(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="the data file")],
    dataset_id: Annotated[str, typer.Option("--id", help="dataset id, e.g. corpus-v1")],
    center: Annotated[str, typer.Option("--center", help="the center that holds it")],
    residency: Annotated[
        str | None, typer.Option("--residency", help="tag such as region:east: data stays there")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            help="the center agent's data root (default: the one `cnet up` wrote in the config)",
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            help="FILE's path relative to the agent's data root, inside tenants/<your tenant>/"
            " (no copying)",
        ),
    ] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Register FILE as a dataset held at a center; its size and sha256 are computed here."""
    if not file.is_file():
        raise ValidationError(f"no such file '{file}'", field="FILE", hint="give an existing file")
    with client(url, token) as cn:
        if path is None:
            tenant = cn.whoami().tenant
            if tenant is None:
                raise ValidationError(
                    "this token has no tenant", field="--token", hint="use a user's token"
                )
            root = data_root or _configured_root(center, url, token)
            path = place_in_root(file, root, dataset_id, tenant)
        view = cn.add_dataset(
            id=dataset_id,
            center=center,
            path=path,
            size_bytes=file.stat().st_size,
            sha256=sha256_file(file),
            residency=residency,
        )
    if json_out:
        print_json(view)
    else:
        console().print(
            f"dataset [bold]{view.id}[/]: {view.size_bytes:,} bytes at {center}"
            f" ({path}), sha256 {view.sha256[:12]}…"
        )


def _configured_root(center: str, url: str | None, token: str | None) -> Path:
    roots = resolve(url, token).data_roots
    if center not in roots:
        raise ValidationError(
            f"do not know where center '{center}' keeps its data",
            field="--data-root",
            hint="pass --data-root DIR (the agent's data root), or copy the file there and pass"
            " --path",
        )
    return Path(roots[center])


@datasets_app.command("list")
def list_(url: UrlOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Your datasets and where their replicas are."""
    with client(url, token) as cn:
        views = cn.datasets()
    if json_out:
        print_json(views)
        return
    t = Table(title=f"{len(views)} dataset(s)")
    for col in ("id", "size", "sha256", "residency", "replicas"):
        t.add_column(col)
    for d in views:
        t.add_row(
            d.id,
            _size(d.size_bytes),
            d.sha256[:12] + "…",
            d.residency or "-",
            ", ".join(r.get("center", "?") for r in d.replicas) or "-",
        )
    console().print(t)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)
