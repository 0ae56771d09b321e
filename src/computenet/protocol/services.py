"""Inference services in the user API (``/api/v1/services``; docs/services.md)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from computenet.model import JobState
from computenet.model.service import MAX_REPLICAS, ServiceSpec


class ReplicaView(BaseModel):
    """One replica: its job, where it runs, and where it listens once ready."""

    job_id: str
    slot: int
    state: JobState
    center: str | None = None
    endpoint: str | None = Field(
        default=None, description="host:port of the model server; set once it answered its probe"
    )
    ready: bool = Field(description="RUNNING with an endpoint: the gateway may send to it")
    cost_cny_per_hour: Decimal | None = Field(
        default=None, description="what it costs for the coming hour at its center (once placed)"
    )
    why: str | None = Field(
        default=None, description="why the keeper put it at its center (placement by demand)"
    )
    chip: str | None = Field(
        default=None, description="the chip type it was placed on (its job's); None until placed"
    )


class ServiceView(BaseModel):
    """A service as deployed: its file, how many replicas it wants, the replicas it has."""

    name: str
    tenant: str
    spec: ServiceSpec
    wanted: int = Field(description="replicas kept alive now (min at deploy; cnet serve scale)")
    ready: int = Field(description="replicas ready to take requests")
    created_at: datetime
    replicas: list[ReplicaView] = []
    cost_cny_per_hour: Decimal | None = Field(
        default=None,
        description="its replicas' cost for the coming hour (spec.budget_cny_per_hour caps it)",
    )
    notes: list[str] = Field(
        default=[], description="what the keeper wants you to know (budget exceeded, a move)"
    )


class ScaleRequest(BaseModel):
    """POST /api/v1/services/{name}/scale: keep this many replicas (within min..max)."""

    replicas: int = Field(ge=0, le=MAX_REPLICAS)


class LoadReport(BaseModel):
    """POST /api/v1/services/{name}/load: a gateway's mean in-flight requests to the service."""

    gateway: str = Field(min_length=1, max_length=128, description="the gateway's own name")
    inflight: float = Field(ge=0, le=1_000_000, description="mean over its last report window")
    site: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="where the gateway sits (its --site: a user site or center of the network);"
        " replicas are placed near the sites that report demand",
    )
    waiting: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="requests it holds because the service has no ready replica (scale from zero)",
    )
