"""The user API, ``/api/v1``: jobs, quotes, centers, network, datasets, bills, admin."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Request, Response

from computenet.model import JobSpec, limits
from computenet.protocol import (
    BillView,
    CenterView,
    DatasetCreate,
    DatasetView,
    ErrorBody,
    JobDetail,
    JobView,
    LogChunk,
    QuoteView,
    SubmitRequest,
    TenantCreate,
    TenantView,
    TokenView,
    UserCreate,
    WhoAmI,
)
from computenet.protocol.admin import AuditPage, DataKeyView, TokenInfo
from computenet.protocol.jobfiles import JobFileText, JobFileView, UnmappedField
from computenet.protocol.tenancy import (
    QuotaSet,
    QuotaView,
    TenancyView,
    TenantShareSet,
    TenantShareView,
)
from computenet.sdk.specfile import job_from_text
from computenet.server import admin, datasets, jobs, metering, paging
from computenet.server.deps import Admin, Plane, User
from computenet.server.plane import ControlPlane

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 413, 422, 429)
}

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.post("/jobs", response_model=JobView, status_code=201, tags=["jobs"])
async def submit_job(body: SubmitRequest, request: Request, who: User) -> Response:
    """Submit a job; 201 when new, 200 with the first job when the idempotency key was seen.

    Answered once the job is committed. Runs on the event loop: validation
    is CPU only and the store is written by the plane's group-commit thread.
    """
    plane: ControlPlane = request.app.state.plane  # not a dependency: one fewer to solve
    view, created = await jobs.submit_async(plane, who, body)
    # The view is already a validated JobView: serialize it once, skip FastAPI's re-validation.
    return Response(
        view.model_dump_json(), status_code=201 if created else 200, media_type="application/json"
    )


@router.get("/jobs", response_model=list[JobView], tags=["jobs"])
def list_jobs(
    request: Request,
    response: Response,
    plane: Plane,
    who: User,
    state: str | None = Query(
        None, max_length=200, description="a state or comma-separated states"
    ),
    limit: int = Query(limits.DEFAULT_PAGE, ge=1, le=limits.MAX_PAGE),
    cursor: str | None = paging.CURSOR_QUERY,
) -> list[JobView]:
    """Your jobs, newest first; a page of `limit`, the next one linked in `Link` (rel=next)."""
    views, nxt = jobs.list_jobs(plane, who, state, limit, cursor)
    paging.set_next(request, response, nxt)
    return views


@router.get("/jobs/{job_id}", response_model=JobDetail, tags=["jobs"])
def get_job(job_id: str, plane: Plane, who: User) -> JobDetail:
    """A job's state, placement, reasons and timeline."""
    return jobs.detail(plane, who, job_id)


@router.post("/jobs/{job_id}/cancel", response_model=JobView, tags=["jobs"])
def cancel_job(job_id: str, plane: Plane, who: User) -> JobView:
    """Cancel a job (a running one stops at its center's next heartbeat)."""
    return jobs.cancel(plane, who, job_id)


@router.get("/jobs/{job_id}/logs", response_model=LogChunk, tags=["jobs"])
def job_logs(
    job_id: str, plane: Plane, who: User, offset: int = Query(0, ge=0, le=limits.MAX_BYTES)
) -> LogChunk:
    """The job's output from byte `offset`."""
    return jobs.logs(plane, who, job_id, offset)


@router.post("/quote", response_model=QuoteView, tags=["jobs"])
def quote(body: JobSpec, plane: Plane, who: User) -> QuoteView:
    """Options with price and finish time for a job spec; nothing is submitted."""
    return jobs.quote_job(plane, who, body)


@router.post("/jobfiles/convert", response_model=JobFileView, tags=["jobs"])
def convert_job_file(body: JobFileText, who: User) -> JobFileView:
    """A job file's text — ComputeNet, SkyPilot task or Slurm script — as a spec; 422 if bad.

    The same converter as `cnet spec show` (computenet.sdk.jobfiles): every field it
    could not map is listed with why. Nothing is stored; quote or submit the spec.
    """
    spec, conv = job_from_text(body.text, where="text", partition_map=body.partition_map)
    return JobFileView(
        format=conv.format,
        spec=spec,
        unmapped=[UnmappedField(field=u.field, why=u.why) for u in conv.unmapped],
        notes=conv.notes,
    )


@router.get("/centers", response_model=list[CenterView], tags=["network"])
def centers(plane: Plane, who: User) -> list[CenterView]:
    """Every center with its live state."""
    return datasets.centers(plane)


@router.get("/network", tags=["network"])
def network(plane: Plane, who: User) -> dict[str, Any]:
    """The network: centers, sites, links, scales and the network clock's now.

    Transfers of other tenants' jobs show their route and rate, not their ids.
    """
    return datasets.network_view(plane, who)


@router.post("/datasets", response_model=DatasetView, status_code=201, tags=["datasets"])
def create_dataset(body: DatasetCreate, plane: Plane, who: User) -> DatasetView:
    """Register a dataset already present in your tenant's area of a center agent's data root."""
    return datasets.register_dataset(plane, who, body)


@router.get("/datasets", response_model=list[DatasetView], tags=["datasets"])
def list_datasets(
    request: Request,
    response: Response,
    plane: Plane,
    who: User,
    limit: int = Query(limits.MAX_PAGE, ge=1, le=limits.MAX_PAGE),
    cursor: str | None = paging.CURSOR_QUERY,
) -> list[DatasetView]:
    """Your datasets and their replicas, by id; the next page linked in `Link` (rel=next)."""
    page, nxt = paging.page_by_key(datasets.datasets(plane, who), lambda d: d.id, limit, cursor)
    paging.set_next(request, response, nxt)
    return page


@router.get("/bill", response_model=BillView, tags=["bills"])
def bill(
    plane: Plane,
    who: User,
    tenant: str | None = Query(None, description="admins only"),
    period: str | None = Query(None, description="YYYY-MM; default the current network month"),
) -> BillView:
    """A tenant's bill for a month, exact to the fen."""
    return metering.bill(plane, who, tenant, period)


@router.get("/whoami", response_model=WhoAmI, tags=["admin"])
def whoami(plane: Plane, who: User) -> WhoAmI:
    """Who this token is."""
    return WhoAmI(subject=who.subject, role=who.role, tenant=who.tenant, center=who.center)


@router.post("/admin/tenants", status_code=201, tags=["admin"])
def create_tenant(body: TenantCreate, plane: Plane, who: Admin) -> dict[str, str]:
    """Create a tenant."""
    return {"name": admin.create_tenant(plane.db, body.name, actor=who.subject)}


@router.get("/admin/tenants", response_model=list[TenantView], tags=["admin"])
def list_tenants(
    request: Request,
    response: Response,
    plane: Plane,
    who: Admin,
    limit: int = Query(limits.MAX_PAGE, ge=1, le=limits.MAX_PAGE),
    cursor: str | None = paging.CURSOR_QUERY,
) -> list[TenantView]:
    """Tenants by name (for the bills page's picker); the next page linked in `Link`."""
    names, nxt = paging.page_by_key(admin.tenant_names(plane.db), str, limit, cursor)
    paging.set_next(request, response, nxt)
    return [TenantView(name=n) for n in names]


@router.post("/admin/users", response_model=TokenView, status_code=201, tags=["admin"])
def create_user(body: UserCreate, plane: Plane, who: Admin) -> TokenView:
    """Create a user (or admin) of a tenant; the token is shown once."""
    return admin.create_user(
        plane.db, body.name, body.tenant, body.role, expires=body.expires, actor=who.subject
    )


@router.post(
    "/admin/centers/{center_id}/token", response_model=TokenView, status_code=201, tags=["admin"]
)
def create_center_token(center_id: str, plane: Plane, who: Admin) -> TokenView:
    """A token for the agent of one center; shown once. Earlier tokens work until revoked."""
    return admin.create_center_token(plane.db, center_id, plane.network, actor=who.subject)


@router.get("/admin/tokens", response_model=list[TokenInfo], tags=["admin"])
def list_tokens(plane: Plane, who: Admin) -> list[TokenInfo]:
    """Every token with its state (never the secret)."""
    return admin.list_tokens(plane.db)


@router.post("/admin/tokens/{token_id}/revoke", response_model=TokenInfo, tags=["admin"])
def revoke_token(plane: Plane, who: Admin, token_id: int = Path(ge=1, le=2**31 - 1)) -> TokenInfo:
    """Revoke a token: refused here at once, by other replicas within their auth cache's TTL."""
    info = admin.revoke_token(plane.db, token_id, actor=who.subject)
    plane.auth.forget(token_id)
    return info


@router.post(
    "/admin/centers/{center_id}/rotate-data-key", response_model=DataKeyView, tags=["admin"]
)
def rotate_data_key(center_id: str, plane: Plane, who: Admin) -> DataKeyView:
    """A new data key for a center: tickets signed with the old one stop working."""
    return admin.rotate_data_key(plane.db, center_id, actor=who.subject)


@router.get("/admin/audit", response_model=AuditPage, tags=["admin"])
def audit_log(
    plane: Plane,
    who: Admin,
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(
        None, ge=1, le=2**31 - 1, description="the next_before of the previous page"
    ),
) -> AuditPage:
    """Admin actions, newest first, a page at a time."""
    return admin.audit_log(plane.db, limit, before)


# -- tenancy (docs/tenancy.md) ----------------------------------------------------------


@router.get("/tenancy", response_model=TenancyView, tags=["bills"])
def tenancy(
    plane: Plane, who: User, tenant: str | None = Query(None, description="admins only")
) -> TenancyView:
    """A tenant's quotas with their use, its priority ceiling and its fair-share standing."""
    name = tenant if tenant and who.is_admin else jobs.tenant_of(who)
    return admin.tenancy(plane.db, name, plane.clock.now())


@router.post("/admin/tenants/{name}/share", response_model=TenantShareView, tags=["admin"])
def set_tenant_share(
    body: TenantShareSet, plane: Plane, who: Admin, name: str = Path(max_length=64)
) -> TenantShareView:
    """Set a tenant's fair-share weight and priority ceiling (-1: none)."""
    return admin.set_tenant_share(
        plane.db,
        name,
        weight=body.weight,
        priority_ceiling=body.priority_ceiling,
        actor=who.subject,
    )


@router.get("/admin/quotas", response_model=list[QuotaView], tags=["admin"])
def list_quotas(
    plane: Plane, who: Admin, tenant: str | None = Query(None, max_length=64)
) -> list[QuotaView]:
    """Every quota (of one tenant when given) with what is used of it now."""
    return admin.list_quotas(plane.db, tenant, plane.clock.now())


@router.post("/admin/quotas", response_model=QuotaView, tags=["admin"])
def set_quota(body: QuotaSet, plane: Plane, who: Admin) -> QuotaView:
    """Set (or replace) one quota of a tenant; the scheduler applies it at its next cycle."""
    return admin.set_quota(
        plane.db,
        body.tenant,
        body.kind,
        body.limit,
        chip=body.chip,
        period=body.period,
        network=plane.network,
        actor=who.subject,
    )


@router.delete("/admin/quotas", tags=["admin"])
def clear_quotas(
    plane: Plane,
    who: Admin,
    tenant: str = Query(max_length=64),
    kind: str | None = Query(None, max_length=16),
    chip: str | None = Query(None, max_length=64),
) -> dict[str, int]:
    """Remove a tenant's quotas (of one kind / chip when given)."""
    return {
        "removed": admin.clear_quotas(plane.db, tenant, kind=kind, chip=chip, actor=who.subject)
    }
