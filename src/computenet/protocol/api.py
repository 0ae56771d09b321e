"""User API schemas (``/api/v1``): jobs, quotes, centers, datasets, bills, admin."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from computenet.model import JobSpec, JobState, Placement, limits
from computenet.model.identifiers import Kind
from computenet.model.limits import Name, Text
from computenet.protocol.vouchers import SubsidyLineView, VoucherView


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: what went wrong, on which field, and how to fix it."""

    error: str
    field: str | None = None
    hint: str | None = None


class SubmitRequest(BaseModel):
    """POST /api/v1/jobs. The same `idempotency_key` twice returns the first job."""

    model_config = ConfigDict(extra="forbid")

    spec: JobSpec
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)
    pin_center: Name | None = Field(
        default=None, description="run at this center (sets spec.center), e.g. a quote's option"
    )


class JobView(BaseModel):
    """A job as listed: state, where it is placed, what it cost."""

    id: str
    name: str
    tenant: str
    workload_class: str
    state: JobState
    submitted_at: datetime
    deadline: datetime | None = None
    center: str | None = None
    chip: str | None = None
    chips: int = 0
    attempts: int = 0
    estimated_cny: Decimal | None = None
    cost_cny: Decimal | None = None
    exit_code: int | None = None
    reasons: list[str] = []
    identifier: str | None = Field(
        default=None, description="the job's compute identifier, e.g. cn.gba.job.j-0123456789ab"
    )


class JobEvent(BaseModel):
    """One line of a job's timeline."""

    at: datetime
    state: JobState | None = None
    message: str
    center: str | None = None


class PathHop(BaseModel):
    """One level of a job's path down a federation (docs/federation.md, "Roll-up").

    The first hop is the plane's own placement; each later hop is the plane
    below (a region) as its network agent reported it, nested any number of
    levels deep (at most `limits.MAX_PATH_HOPS` in all).
    """

    model_config = ConfigDict(extra="ignore")

    network: str = Field(min_length=1, max_length=128, description="the plane's name, e.g. cn")
    center: str | None = Field(default=None, max_length=64, description="its center for the job")
    chip: str | None = Field(default=None, max_length=64)
    count: int | None = Field(default=None, ge=0, le=limits.MAX_CHIPS)
    job_id: str | None = Field(
        default=None, max_length=limits.MAX_ID_CHARS, description="the job's id at that level"
    )
    state: str | None = Field(default=None, max_length=16)
    reason: str | None = Field(default=None, max_length=limits.MAX_REASON_CHARS)
    position: int | None = Field(
        default=None,
        ge=1,
        le=limits.MAX_RUNNING,
        description="the job's place among the jobs waiting at that level (1: next); absent"
        " when it does not wait there",
    )


class JobDetail(JobView):
    """GET /api/v1/jobs/{id}: the view plus spec, placement and timeline."""

    spec: JobSpec
    placement: Placement | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    wait_s: float | None = None
    transfer_s: float | None = None
    run_s: float | None = None
    usage: dict[str, float | str] = {}
    events: list[JobEvent] = []
    queue_position: int | None = Field(
        default=None,
        ge=1,
        description="the job's place among the jobs waiting at this plane (1: next); absent"
        " when it does not wait here (a delegated job waits below: see `path`)",
    )
    path: list[PathHop] | None = Field(
        default=None,
        max_length=limits.MAX_PATH_HOPS,
        description="where the job runs, level by level: this plane's placement first (its"
        " center None while not placed), then each region below it (docs/federation.md)",
    )
    preemptions: int = Field(
        default=0,
        ge=0,
        description="times the job was stopped so that a much shorter job ran first"
        " (preemptible jobs, docs/user-guide.md)",
    )
    stopping_for: str | None = Field(
        default=None,
        description="set while the job is asked to stop for this shorter job; it resumes at"
        " its center from its checkpoint",
    )
    work_left: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="a preempted job's share of its work still to do (from its plan)",
    )


class LogChunk(BaseModel):
    """GET /api/v1/jobs/{id}/logs?offset=N: text from byte `offset` on."""

    text: str
    offset: int
    next_offset: int
    complete: bool


class QuoteOption(BaseModel):
    """One row of a quote: a center and chips, when it would start and finish, what it costs."""

    center: str
    chip: str
    count: int
    planned_start: datetime
    finish: datetime
    energy_cny: Decimal
    service_cny: Decimal
    transfer_cny: Decimal
    total_cny: Decimal
    kwh: float
    co2_kg: float
    transfer_s: float
    run_s: float
    cheapest: bool = False
    fastest: bool = False
    feasible: bool = True
    reasons: list[str] = []
    region_cny: Decimal | None = Field(
        default=None,
        description="an option at a region (docs/federation.md): the region's own price for"
        " this job (its rate card × the job's CU·h) plus the region's declared fee; the"
        " option's other figures are this plane's estimate from its declaration",
    )
    region_finish: datetime | None = Field(
        default=None,
        description="an option at a region: when the job would finish by the region's own"
        " queue (its wait now, then this option's transfer and run)",
    )
    subsidy_cny: Decimal = Field(
        default=Decimal("0.00"),
        description="what the tenant's compute vouchers would pay of `total_cny` (their"
        " balances now, this option's center and finish); docs/user-guide.md",
    )
    paid_cny: Decimal | None = Field(
        default=None,
        description="the price after vouchers: what the tenant would pay (`total_cny` less"
        " `subsidy_cny`); the budget is checked against it",
    )

    @model_validator(mode="after")
    def _paid(self) -> QuoteOption:
        if self.paid_cny is None:
            self.paid_cny = self.total_cny - self.subsidy_cny
        return self


class QuoteView(BaseModel):
    """POST /api/v1/quote: every option, the cheapest and fastest marked; nothing submitted."""

    options: list[QuoteOption]
    infeasible_reasons: list[str] = []
    now: datetime
    # What holds for every option, e.g. how long a job without a deadline may be held.
    notes: list[str] = []


class MemberPool(BaseModel):
    """Chips of one type at a region's member center: how many, how many free."""

    chip: str = Field(min_length=1, max_length=64)
    total: int = Field(ge=0, le=1_000_000)
    free: int = Field(ge=0, le=1_000_000)


class MemberView(BaseModel):
    """A center inside a region, as the region's network agent reports it (for display).

    What the region's own plane says of its center: where it is, whether it is
    online and its chips. The parent schedules nothing by it (the region's
    capacity does that); a dashboard draws the region's centers with it.
    """

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=128)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    online: bool = True
    pools: list[MemberPool] = Field(default=[], max_length=limits.MAX_POOLS)


class CenterView(BaseModel):
    """A center as the network sees it now."""

    id: str
    name: str
    hub: str
    region: str
    lat: float
    lon: float
    backend: str
    online: bool
    last_heartbeat: datetime | None = None
    pools: list[dict[str, int | str]] = []
    pue: float
    tariff_now: Decimal
    tariff_hourly: list[Decimal]
    carbon_kg_per_kwh: float
    service_price_per_cuh: Decimal
    queued: int = 0
    running: int = 0
    identifier: str | None = Field(
        default=None,
        description="the center's compute identifier, e.g. cn.gba.shenzhen-1;"
        " each pool has its own under `identifier`",
    )
    members: list[MemberView] | None = Field(
        default=None,
        description="a region only: its own centers, as its network agent last reported them"
        " (docs/federation.md); absent for an ordinary center or a region that sends none",
    )


class DatasetCreate(BaseModel):
    """POST /api/v1/datasets: register a dataset already present at a center."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    center: str = Field(min_length=1, max_length=64)
    path: Text | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="the file's path under the center agent's data root, inside your tenant's"
        " area tenants/<tenant>/ (default tenants/<tenant>/<id>)",
    )
    size_bytes: int = Field(ge=0, le=limits.MAX_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    residency: str | None = Field(default=None, min_length=1, max_length=64)


class DatasetView(BaseModel):
    """A dataset and its replicas."""

    id: str
    tenant: str
    size_bytes: int
    sha256: str
    residency: str | None = None
    replicas: list[dict[str, str]] = []
    identifiers: list[str] = Field(
        default=[],
        description="each replica's compute identifier, in the order of `replicas`"
        " (e.g. cn.gba.shenzhen-1.dataset.corpus-v1)",
    )


class BillLine(BaseModel):
    """One job's charges in a bill."""

    job_id: str
    job_name: str
    center: str
    chip: str
    chips: int
    started_at: datetime | None
    finished_at: datetime | None
    chip_hours: float
    cu_hours: float
    kwh: float
    co2_kg: float
    energy_cny: Decimal
    service_cny: Decimal
    transfer_cny: Decimal
    total_cny: Decimal
    subsidies: list[SubsidyLineView] = Field(
        default=[], description="what each compute voucher paid of `total_cny`, in issue order"
    )
    subsidy_cny: Decimal = Decimal("0.00")
    paid_cny: Decimal | None = Field(
        default=None, description="what the tenant pays: `total_cny` less `subsidy_cny`"
    )

    @model_validator(mode="after")
    def _paid(self) -> BillLine:
        if self.paid_cny is None:
            self.paid_cny = self.total_cny - self.subsidy_cny
        return self


class BillView(BaseModel):
    """GET /api/v1/bill?tenant=&period=YYYY-MM: lines and totals, money exact to the fen."""

    tenant: str
    period: str
    lines: list[BillLine]
    by_center: dict[str, Decimal] = {}
    energy_cny: Decimal
    service_cny: Decimal
    transfer_cny: Decimal
    total_cny: Decimal
    kwh: float
    co2_kg: float
    cu_hours: float
    subsidy_cny: Decimal = Field(
        default=Decimal("0.00"), description="what compute vouchers paid of `total_cny`"
    )
    paid_cny: Decimal | None = Field(
        default=None, description="what the tenant pays: `total_cny` less `subsidy_cny`"
    )
    vouchers: list[VoucherView] = Field(
        default=[], description="the tenant's compute vouchers and their balances now"
    )

    @model_validator(mode="after")
    def _paid(self) -> BillView:
        if self.paid_cny is None:
            self.paid_cny = self.total_cny - self.subsidy_cny
        return self


class TenantCreate(BaseModel):
    """POST /api/v1/admin/tenants."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9\-_]*$")


class UserCreate(BaseModel):
    """POST /api/v1/admin/users: a user of a tenant, or an admin."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    tenant: str = Field(min_length=1, max_length=64)
    role: Literal["user", "admin"] = "user"
    expires: str | None = Field(
        default=None,
        max_length=64,
        description="when the token stops working: a duration (30d, 12h, 45m) or an ISO time",
    )


class TokenView(BaseModel):
    """A freshly made token: shown once, stored only hashed."""

    token: str
    subject: str
    role: str
    tenant: str | None = None
    center: str | None = None
    id: int | None = Field(default=None, description="the token's id (for cnet admin revoke)")
    expires_at: datetime | None = None


class TenantView(BaseModel):
    """GET /api/v1/admin/tenants: one tenant."""

    name: str


class WhoAmI(BaseModel):
    """GET /api/v1/whoami."""

    subject: str
    role: str
    tenant: str | None = None
    center: str | None = None


class ResolveReach(BaseModel):
    """Where an identified object is reached: this control plane, and the center there."""

    url: str = Field(description="this control plane's user API base URL")
    network: str = Field(description="this plane's identifier prefix, e.g. cn.gba")
    center: str | None = Field(
        default=None, description="the center that holds it (a job's: where it is placed now)"
    )
    region_url: str | None = Field(
        default=None,
        description="when that center is a region (backend network): its control plane's URL,"
        " if the network file gives it (a center tag url:https://...)",
    )


class ResolveDelegate(BaseModel):
    """The identifier belongs to a plane below this one: ask that region's plane."""

    center: str = Field(description="this plane's center (a region) whose plane to ask")
    identifier: str = Field(description="what to ask it: GET /api/v1/resolve/{identifier}")
    url: str | None = Field(default=None, description="the region's control plane, if known")


class ResolveView(BaseModel):
    """GET /api/v1/resolve/{identifier}: what a compute identifier (算力标识) names."""

    identifier: str
    kind: Kind = Field(description="center, pool, dataset (a replica) or job")
    reach: ResolveReach
    center: CenterView | None = Field(default=None, description="kind center; pool: its center")
    pool: dict[str, int | str] | None = Field(default=None, description="kind pool")
    dataset: DatasetView | None = Field(
        default=None, description="kind dataset: the dataset (its replica at reach.center)"
    )
    job: JobView | None = Field(default=None, description="kind job")
    delegate: ResolveDelegate | None = Field(
        default=None, description="set when a region below this plane names the object"
    )
