"""``GET /api/v1/resolve/{identifier}``: what a compute identifier (算力标识) names and
where to reach it, through the levels of a federation.

The identifier format and its rules are `computenet.model.identifiers`. An
identifier of this plane (its prefix is this plane's) is answered here. One
below it (``cn.gba.shenzhen-1`` asked of ``cn``) is answered with
`delegate`: the next part after this plane's prefix must be one of its
centers that is a region (backend ``network``), and the client asks that
region's plane the same identifier. The server does not ask the region
itself: the caller's token is this plane's, not the region's.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from computenet.errors import NotFoundError
from computenet.model.center import Center
from computenet.model.identifiers import Identifier, Kind, network_prefix, parse
from computenet.protocol import CenterView, DatasetView
from computenet.protocol.api import ResolveDelegate, ResolveReach, ResolveView
from computenet.server import datasets, jobs
from computenet.server.auth import Principal
from computenet.server.deps import Plane, User
from computenet.server.jobs import scope_of
from computenet.server.plane import ControlPlane
from computenet.server.routers.api import ERRORS
from computenet.server.views import dataset_view, job_view
from computenet.store import jobs as job_store
from computenet.store.centers import get_center, get_dataset, replicas
from computenet.store.schema import JobRow

router = APIRouter(prefix="/api/v1", responses=ERRORS)

# A center tag that gives a region's control plane URL ("url:https://gba.example.org").
URL_TAG = "url:"
REGION_BACKEND = "network"


def _center(plane: ControlPlane, center_id: str, identifier: str) -> Center:
    try:
        return plane.network.center(center_id)
    except KeyError:
        raise NotFoundError(
            f"no center '{center_id}' in network '{network_prefix(plane.network)}'",
            field="identifier",
            hint=f"GET /api/v1/centers lists them; '{identifier}' names none",
        ) from None


def _is_region(plane: ControlPlane, center: Center) -> bool:
    """A center whose agent drives a child network (cnet agent --backend network)."""
    with plane.db.read() as s:
        row = get_center(s, center.id)
    backend = row.backend if row is not None else center.backend
    return REGION_BACKEND in (backend, center.backend)


def _region_url(center: Center) -> str | None:
    return next((t[len(URL_TAG) :] for t in center.tags if t.startswith(URL_TAG)), None)


def _center_view(plane: ControlPlane, center_id: str) -> CenterView:
    return next(v for v in datasets.centers(plane) if v.id == center_id)


def _delegate(
    plane: ControlPlane, ident: Identifier, text: str, prefix: str, reach: ResolveReach
) -> ResolveView:
    child = ident.next_level(prefix) or ""
    center = _center(plane, child, text)
    if not _is_region(plane, center):
        raise NotFoundError(
            f"center '{child}' of '{prefix}' is not a region: nothing is named below it",
            field="identifier",
            hint=f"its own identifiers are {prefix}.{child}[.pool.CHIP|.dataset.ID]",
        )
    url = _region_url(center)
    reach.center, reach.region_url = child, url
    return ResolveView(
        identifier=text,
        kind=ident.kind,
        reach=reach,
        delegate=ResolveDelegate(center=child, identifier=text, url=url),
    )


@router.get("/resolve/{identifier}", response_model=ResolveView, tags=["network"])
def resolve(identifier: str, request: Request, plane: Plane, who: User) -> ResolveView:
    """What a compute identifier names (center, pool, dataset replica, job) and where to
    reach it; for one that a region below this plane handed out, which region to ask.

    422 naming `identifier` when it is malformed; 404 when nothing (of yours) has it.
    """
    ident = parse(identifier)
    prefix = network_prefix(plane.network)
    reach = ResolveReach(url=str(request.base_url).rstrip("/"), network=prefix)
    if not ident.under(prefix):
        raise NotFoundError(
            f"'{identifier}' is not of this network (its identifiers start with '{prefix}.')",
            field="identifier",
            hint=f"ask the control plane whose prefix is '{ident.prefix}' or above it",
        )
    if ident.prefix != prefix:
        return _delegate(plane, ident, identifier, prefix, reach)
    if ident.kind == Kind.JOB:
        return _job(plane, who, ident, identifier, prefix, reach)
    center = _center(plane, ident.center or "", identifier)
    reach.center = center.id
    if _is_region(plane, center):
        reach.region_url = _region_url(center)
    view = _center_view(plane, center.id)
    out = ResolveView(identifier=identifier, kind=ident.kind, reach=reach, center=view)
    if ident.kind == Kind.POOL:
        out.pool = next((p for p in view.pools if p.get("chip") == ident.key), None)
        if out.pool is None:
            raise NotFoundError(
                f"center '{center.id}' has no {ident.key} pool",
                field="identifier",
                hint="its pools: " + ", ".join(str(p.get("chip")) for p in view.pools),
            )
    elif ident.kind == Kind.DATASET:
        out.center = None
        out.dataset = _replica(plane, who, ident, prefix)
    return out


def _replica(plane: ControlPlane, who: Principal, ident: Identifier, prefix: str) -> DatasetView:
    """The dataset of a replica identifier, if the caller may see it and it has that replica."""
    tenant = scope_of(who)
    with plane.db.read() as s:
        row = get_dataset(s, ident.key or "")
        reps = replicas(s, [row.id]).get(row.id, []) if row is not None else []
    mine = row is not None and (tenant is None or row.tenant_id == tenant)
    if row is None or not mine or not any(r.center == ident.center for r in reps):
        # Another tenant's dataset reads as absent: ids say nothing about who owns them.
        raise NotFoundError(
            f"no dataset '{ident.key}' of yours at center '{ident.center}'",
            field="identifier",
            hint="cnet datasets lists yours with their replicas' identifiers",
        )
    return dataset_view(row, reps, prefix)


def _job(
    plane: ControlPlane,
    who: Principal,
    ident: Identifier,
    text: str,
    prefix: str,
    reach: ResolveReach,
) -> ResolveView:
    with plane.db.read() as s:
        row = job_store.get_job(s, ident.key or "", tenant=scope_of(who))
    if row is None:
        raise NotFoundError(
            f"no job '{ident.key}' of yours", field="identifier", hint="cnet jobs lists yours"
        )
    view = job_view(row, prefix)
    if view.center is not None:
        reach.center = view.center
        try:
            center = plane.network.center(view.center)
        except KeyError:
            center = None
        if center is not None and _is_region(plane, center):
            reach.region_url = _region_url(center)
            return ResolveView(
                identifier=text,
                kind=Kind.JOB,
                reach=reach,
                job=view,
                delegate=_job_below(row, prefix, center.id, reach.region_url),
            )
    return ResolveView(identifier=text, kind=Kind.JOB, reach=reach, job=view)


def _job_below(row: JobRow, prefix: str, center: str, url: str | None) -> ResolveDelegate | None:
    """The region's own job for this run, by the path its network agent reported.

    Its identifier is the region's prefix, which nests under this plane's by
    the center's id (docs/federation.md, Identifiers), and the region's job id;
    a region whose prefix does not nest answers 404 to it, as to any identifier
    it did not hand out.
    """
    below = jobs.below(row)
    job_id = below[0].job_id if below and below[0].network else None
    if job_id is None:
        return None  # not yet submitted in the region, or nothing reported
    return ResolveDelegate(center=center, identifier=f"{prefix}.{center}.job.{job_id}", url=url)
