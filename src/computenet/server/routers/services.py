"""Inference services in the user API: ``/api/v1/services`` (docs/services.md)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from computenet.model.service import ServiceSpec
from computenet.protocol.service_stats import ServiceMetrics, StatsReport
from computenet.protocol.services import LoadReport, ScaleRequest, ServiceView
from computenet.server import service_stats, services
from computenet.server.deps import Plane, User
from computenet.server.routers.api import ERRORS

router = APIRouter(prefix="/api/v1", responses=ERRORS, tags=["services"])


@router.post("/services", response_model=ServiceView, status_code=201)
def deploy(body: ServiceSpec, plane: Plane, who: User) -> ServiceView:
    """Deploy a service file (its JSON); `replicas.min` replicas start as jobs; 409 if it exists."""
    return services.deploy(plane, who, body)


@router.get("/services", response_model=list[ServiceView])
def list_services(plane: Plane, who: User) -> list[ServiceView]:
    """Your services with their replicas (every tenant's for an admin)."""
    return services.list_services(plane, who)


@router.get("/services/{name}", response_model=ServiceView)
def status(name: str, plane: Plane, who: User) -> ServiceView:
    """One service: its replicas, their state, center and endpoint once ready."""
    return services.status(plane, who, name)


@router.post("/services/{name}/scale", response_model=ServiceView)
def scale(name: str, body: ScaleRequest, plane: Plane, who: User) -> ServiceView:
    """Keep `replicas` replicas (within the file's min..max)."""
    return services.scale(plane, who, name, body.replicas)


@router.delete("/services/{name}", response_model=ServiceView)
def delete(name: str, plane: Plane, who: User) -> ServiceView:
    """Stop every replica and remove the service (and its request series)."""
    gone = services.delete(plane, who, name)
    service_stats.store_of(plane).forget((gone.tenant, gone.name))
    return gone


@router.post("/services/{name}/load", status_code=204)
def load(name: str, body: LoadReport, plane: Plane, who: User) -> None:
    """A gateway's mean in-flight requests to the service, its site and the requests it holds
    (autoscaling, placement, scale from zero; docs/services.md); 422 on an unknown `site`."""
    services.report_load(
        plane, who, name, body.gateway, body.inflight, site=body.site, waiting=body.waiting
    )


@router.post("/services/{name}/stats", status_code=204)
def stats(name: str, body: StatsReport, plane: Plane, who: User) -> None:
    """A gateway's per-request counts for the service over its last window (metering)."""
    service_stats.report(plane, who, name, body)


@router.get("/services/{name}/metrics", response_model=ServiceMetrics)
def metrics(
    name: str,
    plane: Plane,
    who: User,
    minutes: int = Query(60, ge=1, le=service_stats.KEEP_MINUTES, description="span of the series"),
) -> ServiceMetrics:
    """Requests, errors, latency percentiles and cost by the minute, and the totals."""
    return service_stats.metrics(plane, who, name, minutes)
