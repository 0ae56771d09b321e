"""Simulation reports written by ``cnet sim compare --out DIR``, for the dashboard.

Every sub-folder of the server's reports folder (``--sim-reports``, default
``./sim-reports``) that holds a ``results.json`` is one report; its id is the
folder name. The reports are the same for every signed-in user: they are
planning studies, not tenant data. An id never leaves the folder: ``..``,
names starting with ``.``, separators and symlinks leading out answer 404.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from computenet.errors import NotFoundError
from computenet.protocol import ErrorBody
from computenet.server.deps import Plane, User

router = APIRouter(
    prefix="/api/v1/sim", tags=["simulations"], responses={404: {"model": ErrorBody}}
)

_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*$")


def _folder(plane: Any) -> Path:
    return Path(plane.settings.sim_reports_dir)


def _inside(root: Path, report_id: str) -> Path | None:
    """The report folder `report_id` when it is a real folder directly in `root`, else None."""
    if not _ID.fullmatch(report_id):
        return None
    d = root / report_id
    try:
        real_root = root.resolve(strict=True)
        real = d.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.parent != real_root or not real.is_dir():
        return None  # a symlink that leads out of the folder
    if not (real / "results.json").resolve().is_relative_to(real):
        return None  # results.json itself a symlink out
    return d


def _summary(d: Path) -> dict[str, Any] | None:
    try:
        result = json.loads((d / "results.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(result, dict):
        return None
    return {
        "id": d.name,
        "name": result.get("name") or d.name,
        "created_at": datetime.fromtimestamp((d / "results.json").stat().st_mtime, UTC),
        "network": result.get("network"),
        "workload": result.get("workload"),
        "policies": [p.get("name") for p in result.get("policies", []) if isinstance(p, dict)],
        "bound_cny": result.get("bound_cny"),
        "html_url": f"/api/v1/sim/reports/{d.name}/html" if (d / "report.html").is_file() else None,
        "result": result,
    }


def _report(plane: Any, report_id: str) -> dict[str, Any]:
    d = _inside(_folder(plane), report_id)
    found = _summary(d) if d is not None else None
    if found is None:
        raise NotFoundError(
            f"no simulation report '{report_id}'",
            field="report_id",
            hint="GET /api/v1/sim/reports lists them",
        )
    return found


@router.get("/reports")
def list_reports(plane: Plane, who: User) -> list[dict[str, Any]]:
    """Reports in the server's reports folder, newest first (without their full results)."""
    root = _folder(plane)
    found = (
        [s for d in sorted(root.iterdir()) if _inside(root, d.name) and (s := _summary(d))]
        if (root.is_dir())
        else []
    )
    found.sort(key=lambda s: s["created_at"], reverse=True)
    return [{k: v for k, v in s.items() if k != "result"} for s in found]


@router.get("/reports/{report_id}")
def get_report(report_id: str, plane: Plane, who: User) -> dict[str, Any]:
    """One report: its summary and the `cnet sim compare --json` object."""
    return _report(plane, report_id)


@router.get("/reports/{report_id}/html", response_class=HTMLResponse)
def report_html(report_id: str, plane: Plane, who: User) -> HTMLResponse:
    """The self-contained HTML report."""
    rep = _report(plane, report_id)
    if rep["html_url"] is None:
        raise NotFoundError(f"report '{report_id}' has no report.html", field="report_id")
    html = _folder(plane) / report_id / "report.html"
    if not html.resolve().is_relative_to((_folder(plane) / report_id).resolve()):
        raise NotFoundError(f"report '{report_id}' has no report.html", field="report_id")
    return HTMLResponse(html.read_text("utf-8"))
