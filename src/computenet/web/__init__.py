"""The web dashboard: static files built from ``web-src/`` and served by the control plane.

`mount(app)` adds ``GET /`` (the single page) and ``/web/*`` (its script, style and
licences). The page talks only to the user API under ``/api/v1`` with the user's
Bearer token; it loads nothing from other hosts (its Content-Security-Policy says so).
Rebuild the files with ``scripts/build-web.sh`` (needs Node.js); they are committed,
so serving them does not.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

log = logging.getLogger(__name__)

__all__ = ["CONTENT_SECURITY_POLICY", "mount", "static_dir"]

# Everything from this origin; inline styles only for the SVG charts' computed widths;
# data: images for the favicon and for simulation reports shown in a sandboxed frame.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' data: blob:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>ComputeNet</title>
<p>The dashboard's files are missing from this installation of ComputeNet.
Build them with <code>scripts/build-web.sh</code>; the API is at
<a href="docs">/docs</a>.</p>"""


def static_dir() -> Path:
    """The folder of built dashboard files inside the installed package."""
    return Path(str(resources.files("computenet.web").joinpath("static")))


def mount(app: FastAPI) -> None:
    """Serve the dashboard on `app`: the page at ``/`` and its assets under ``/web``."""
    root = static_dir()
    index = root / "index.html"
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }

    @app.get("/", include_in_schema=False)
    def dashboard() -> Response:
        """The single page of the dashboard."""
        if not index.is_file():
            return HTMLResponse(_NOT_BUILT, status_code=503)
        return FileResponse(index, media_type="text/html", headers=headers)

    if root.is_dir():
        app.mount("/web", StaticFiles(directory=root), name="web")
    else:
        log.warning("dashboard assets not found in %s; run scripts/build-web.sh", root)
