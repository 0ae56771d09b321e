"""The FastAPI application: `create_app(settings)` and `serve(settings)` for `cnet server`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from computenet import __version__
from computenet.errors import ComputeNetError, RateLimitedError, ValidationError
from computenet.protocol import ErrorBody
from computenet.scheduler import kernel
from computenet.server.bodylimit import BodyLimit, BodyTooLarge
from computenet.server.limits import retry_after
from computenet.server.metrics import configure_logging
from computenet.server.metrics import router as metrics_router
from computenet.server.plane import ControlPlane
from computenet.server.routers import api, center, resolve, sim
from computenet.server.routers.services import router as services_router
from computenet.server.routers.vouchers import router as vouchers_router
from computenet.server.services import Keeper
from computenet.server.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
The control plane of a ComputeNet computing power network.

* **User API** (`/api/v1`): submit jobs, quote, list centers, read logs and bills.
* **Center protocol** (`/center/v1`): agents register, heartbeat, lease jobs and report.

Authenticate with `Authorization: Bearer <token>`. Errors are `ErrorBody{error, field, hint}`.
"""

# Every route may answer these, always as `ErrorBody`: documented once, for every route.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}

# pydantic adds the union member it tried to the error location; users want the field.
_UNION_TAGS = {"str", "int", "float", "bool", "datetime", "decimal", "none", "list", "dict"}


def field_path(loc: Sequence[int | str]) -> str | None:
    """A pydantic error location as a field path: ('body', 'spec', 'x') → spec.x."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out = ""
    for i, p in enumerate(parts):
        if isinstance(p, int):
            out += f"[{p}]"
        elif i > 0 and (p in _UNION_TAGS or "[" in p):
            continue
        else:
            out += ("." if out else "") + str(p)
    # A body that is missing or not an object at all: the body is the field.
    return out or ("body" if list(loc)[:1] == ["body"] else None)


def _query_names(dep: Dependant) -> frozenset[str]:
    names = {p.alias for p in dep.query_params}
    for sub in dep.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


_KNOWN_QUERY: dict[int, frozenset[str]] = {}


async def known_query_only(request: Request) -> None:
    """Refuse query parameters the route does not declare (422 naming the first one).

    A misspelt parameter (``?limt=5``) would otherwise be ignored silently.
    """
    if not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return  # the dashboard's page keeps its own query (its routes), not the API's
    known = _KNOWN_QUERY.get(id(route))
    if known is None:
        known = _KNOWN_QUERY[id(route)] = _query_names(route.dependant)
    for name in request.query_params:
        if name not in known:
            raise ValidationError(
                f"unknown query parameter '{name[:64]}'",
                field=name[:64],
                hint="known: " + (", ".join(sorted(known)) or "none"),
            )


def error_document(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi` whose error answers are all documented as JSON `ErrorBody`.

    FastAPI documents a route's extra responses in the route's own media type
    (an HTML page's 404 as text/html); every error here leaves as JSON.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        ref = {"$ref": "#/components/schemas/ErrorBody"}
        for ops in doc.get("paths", {}).values():
            for op in ops.values():
                for code, resp in op.get("responses", {}).items():
                    if code[:1] in ("4", "5"):
                        resp["content"] = {"application/json": {"schema": ref}}
        app.openapi_schema = doc
        return doc

    return openapi


def error_response(
    status: int, error: str, field: str | None = None, hint: str | None = None
) -> JSONResponse:
    """A JSON `ErrorBody` response."""
    body = ErrorBody(error=error, field=field, hint=hint)
    return JSONResponse(status_code=status, content=body.model_dump())


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as `ErrorBody`: ours, validation, routing, database busy, the rest."""

    @app.exception_handler(ComputeNetError)
    async def _ours(_req: Request, exc: ComputeNetError) -> JSONResponse:
        resp = error_response(exc.status_code, exc.message, exc.field, exc.hint)
        if isinstance(exc, RateLimitedError):
            resp.headers["Retry-After"] = retry_after(exc)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if not errors:
            return error_response(422, "invalid request")
        err = errors[0]
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return error_response(
                422,
                f"malformed JSON body: {ctx.get('error', err.get('msg'))}",
                "body",
                "send a JSON object",
            )
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return error_response(
            422, msg + more, field_path(err.get("loc", ())), "fix this field and send again"
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, BodyTooLarge):
            return error_response(exc.status_code, str(exc.detail), "body", exc.hint)
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(OperationalError)
    async def _busy(_req: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database error: %s", exc)
        return error_response(503, "the database is busy", None, "retry in a moment")


def _mount_web(app: FastAPI) -> None:
    try:
        from computenet.web import mount
    except ImportError:
        return
    mount(app)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app: migrate the store, wire routers and errors, start the loop on startup."""
    settings = settings or Settings()
    plane = ControlPlane(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # The scheduler's compiled kernels load (or compile, on a fresh install) beside
        # the start-up instead of in the first scheduling cycle (docs/performance.md).
        kernel.warm_up_in_background()
        plane.start()
        keeper = Keeper(plane)  # service replicas kept alive (server/services.py)
        keeper.start()
        try:
            yield
        finally:
            keeper.stop()
            plane.stop()

    app = FastAPI(
        title="ComputeNet control plane",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
        dependencies=[Depends(known_query_only)],
    )
    app.openapi = error_document(app)  # type: ignore[method-assign]
    app.state.plane = plane
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        center_limit=settings.max_center_body_bytes,
    )
    app.include_router(api.router)
    app.include_router(center.router)
    app.include_router(sim.router)
    app.include_router(resolve.router)
    app.include_router(metrics_router)  # GET /metrics (server/metrics.py)
    app.include_router(vouchers_router)  # compute vouchers (server/routers/vouchers.py)
    app.include_router(services_router)  # inference services (server/routers/services.py)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness: the server answers and knows its network and clock."""
        return {
            "ok": True,
            "version": __version__,
            "network": plane.network.name,
            "now": plane.clock.now().isoformat(),
            "time_scale": plane.clock.time_scale,
            # Replicas (server.leader): does this one run the loop now, in which epoch.
            **plane.leader_status(),
        }

    _mount_web(app)
    return app


def _tune_interpreter() -> None:
    """Interpreter settings for a server process that answers on one thread while others work.

    * Switch interval 1 ms (default 5 ms): a request on the event loop waits
      at most this long for the interpreter lock when the scheduling loop or
      the submit writer hold it; measured, p99 submit latency at 8 clients
      drops by about 10 ms, throughput unchanged.
    * `gc.freeze()` once everything is imported and built: the modules,
      schemas and app (hundreds of thousands of long-lived objects) leave
      the collector's view, so a full collection only walks what serving
      created; full collections otherwise paused the process for 50-130 ms
      under load.
    """
    sys.setswitchinterval(0.001)
    gc.collect()
    gc.freeze()


def serve(settings: Settings, *, log_level: str = "info", log_format: str = "text") -> None:
    """Run the control plane in the foreground until interrupted (the `cnet server` command).

    `log_format` ``json`` writes one JSON object per line (server/metrics.py).
    """
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    as_json = configure_logging(log_level, log_format)
    # Alembic narrates every plugin it loads at INFO; the migration result is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    app = create_app(settings)
    _tune_interpreter()
    log.info(
        "ComputeNet control plane on http://%s:%d (network %s, db %s)",
        settings.host,
        settings.port,
        settings.network.name,
        settings.db_url,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        # JSON: uvicorn's loggers reach the root's JSON handler instead of its own text ones.
        log_config=None if as_json else LOGGING_CONFIG,
    )

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            # uvicorn lets requests in flight end before it stops: end held lease calls
            # (long polls, routers/center.py) now rather than when their wait runs out.
            close = getattr(getattr(app.state, "lease_waiters", None), "close", None)
            if callable(close):
                with contextlib.suppress(RuntimeError):  # no loop running: nothing is held
                    asyncio.get_running_loop().call_soon_threadsafe(close)
            super().handle_exit(sig, frame)

    _Server(config).run()
