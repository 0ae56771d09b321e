"""The center protocol, ``/center/v1``: how an agent joins (pull only; see docs/center-protocol.md).

Every call carries the center's own token; a token acts only for its center (403).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from computenet.errors import ValidationError
from computenet.protocol import (
    DatasetView,
    ErrorBody,
    HeartbeatReply,
    HeartbeatRequest,
    JobView,
    LeaseReply,
    LeaseRequest,
    LogAppend,
    RegisterReply,
    RegisterRequest,
    ReplicaReport,
    StatusReport,
    UsageReport,
)
from computenet.server import center_protocol, dispatcher, services
from computenet.server.auth import require_center
from computenet.server.deps import Agent, Plane
from computenet.server.plane import ControlPlane
from computenet.server.views import job_view

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 422)
}

router = APIRouter(prefix="/center/v1", tags=["center protocol"], responses=ERRORS)


@router.post("/register", response_model=RegisterReply)
def register(body: RegisterRequest, plane: Plane, who: Agent) -> RegisterReply:
    """Announce the agent (idempotent); the reply carries intervals, scales and the data key."""
    require_center(who, body.center_id)
    return center_protocol.register(plane, body.center_id, body)


@router.post("/heartbeat", response_model=HeartbeatReply)
def heartbeat(body: HeartbeatRequest, plane: Plane, who: Agent) -> HeartbeatReply:
    """Alive, with capacity and held jobs; the reply lists jobs to stop."""
    require_center(who, body.center_id)
    return center_protocol.heartbeat(plane, body.center_id, body)


@router.post("/lease", response_model=LeaseReply)
async def lease(body: LeaseRequest, request: Request, plane: Plane, who: Agent) -> LeaseReply:
    """Take the jobs placed at this center that are due; with `wait_s`, wait for one.

    Async on purpose: a call held for `wait_s` waits on the event loop, not in
    the worker thread pool, which the database calls still use.
    """
    require_center(who, body.center_id)
    return await dispatcher.lease_waiting(
        plane,
        _waiters(request, plane),
        body.center_id,
        body.max_jobs,
        body.wait_s,
        gone=request.is_disconnected,
    )


def _waiters(request: Request, plane: ControlPlane) -> dispatcher.LeaseWaiters:
    """This app's waiting lease calls (made on first use, on the event loop)."""
    waiters = getattr(request.app.state, "lease_waiters", None)
    if not isinstance(waiters, dispatcher.LeaseWaiters):
        waiters = request.app.state.lease_waiters = dispatcher.LeaseWaiters(plane)
    return waiters


def _center(who: Any) -> str:
    return str(who.center)


@router.post("/jobs/{job_id}/status", response_model=JobView)
def status(job_id: str, body: StatusReport, plane: Plane, who: Agent) -> JobView:
    """The job moved (STAGING, RUNNING, or final); 409 from anyone but the lease holder."""
    if body.endpoint is not None and body.state != "RUNNING":
        raise ValidationError(
            "an endpoint comes only with RUNNING", field="endpoint", hint="leave it out"
        )
    if body.endpoint is not None:  # checked before anything changes
        services.check_endpoint(plane, _center(who), body.endpoint)
    row = center_protocol.report_status(plane, _center(who), job_id, body)
    if body.endpoint is not None:  # a service replica is ready there (docs/services.md)
        services.record_endpoint(plane, _center(who), job_id, body.endpoint)
    return job_view(row)


@router.post("/jobs/{job_id}/logs")
def logs(job_id: str, body: LogAppend, plane: Plane, who: Agent) -> dict[str, int]:
    """Append output; resending the same offset never duplicates text."""
    return {"appended": center_protocol.append_log(plane, _center(who), job_id, body)}


@router.post("/jobs/{job_id}/usage", response_model=JobView)
def usage(job_id: str, body: UsageReport, plane: Plane, who: Agent) -> JobView:
    """Measured run time and staging; a finished job is re-metered."""
    return job_view(center_protocol.report_usage(plane, _center(who), job_id, body))


@router.post("/datasets/{dataset_id}/replicas", response_model=DatasetView)
def replica(dataset_id: str, body: ReplicaReport, plane: Plane, who: Agent) -> DatasetView:
    """The agent now holds a verified copy of the dataset."""
    return center_protocol.report_replica(plane, _center(who), dataset_id, body)
