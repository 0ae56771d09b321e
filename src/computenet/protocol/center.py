"""Center protocol schemas (``/center/v1``): how an agent joins the network.

Agents only call out (pull), so a center behind a firewall or NAT can join.
docs/center-protocol.md documents the endpoints, payloads and error codes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from computenet.model import JobSpec, Placement, limits
from computenet.model.limits import BoundedInstant, Name
from computenet.protocol.api import MemberView, PathHop


def _clip(v: object) -> object:
    # A status message is the agent's (or its backend's) text: keep the head, never refuse it.
    return v[: limits.MAX_TEXT_CHARS] if isinstance(v, str) else v


PROTOCOL_VERSION = "1"

MAX_LEASE_WAIT_S = 30.0
"""The longest a lease call may ask to be held (`LeaseRequest.wait_s`)."""


def _unset(value: object) -> bool:
    return value is None


def added(**kw: Any) -> Any:
    """A field added to protocol v1 after its release: optional, and off the wire when unset.

    The protocol's version rule (docs/center-protocol.md) in one place: a new field
    comes only with a default, and a message that does not use it is exactly what it
    was before the field existed — an older peer reads it, and what the control plane
    stores of an ordinary center does not change.
    """
    return Field(default=None, exclude_if=_unset, **kw)


class PoolCapacity(BaseModel):
    """Chips of one type at the center: how many exist, how many are free now."""

    chip: str = Field(min_length=1, max_length=64)
    # Bounds only against absurd numbers; the server checks totals against the network.
    total: int = Field(ge=0, le=1_000_000)
    free: int = Field(ge=0, le=1_000_000)
    largest_free: int | None = added(
        ge=0,
        le=1_000_000,
        description="the most chips of this type one job can get now: a center that is a"
        " region (docs/federation.md) reports the most free in any one of its centers, which"
        " may be less than `free`, the sum; absent: `free` (one place)",
    )

    used: int | None = added(
        ge=0,
        le=1_000_000,
        description="a region only: chips of this type held by running jobs inside it (any"
        " tenant's); absent for an ordinary center",
    )
    queued: int | None = added(
        ge=0,
        le=limits.MAX_RUNNING,
        description="a region only: jobs waiting inside it at centers with chips of this type"
        " (a center with several types counts its queue under each); absent for an ordinary"
        " center",
    )

    quote_cny_per_cuh: Decimal | None = added(
        ge=0,
        le=limits.MAX_BUDGET_CNY,
        decimal_places=2,
        description="a region only: its own scheduler's price now for one CU·h of work on one"
        " chip of this type (its cheapest quote for a reference job of 1 CU·h), the rate card"
        " the parent's quotes show beside its own estimate (docs/federation.md)",
    )
    quote_wait_s: float | None = added(
        ge=0,
        le=limits.MAX_DURATION_S,
        description="a region only: network seconds from now until that cheapest option starts",
    )

    @model_validator(mode="after")
    def _largest_within_free(self) -> PoolCapacity:
        if self.largest_free is not None and self.largest_free > self.free:
            raise ValueError(
                f"largest_free {self.largest_free} is more than free {self.free}: one job"
                " cannot get more chips than are free"
            )
        if self.used is not None and self.used > self.total:
            raise ValueError(f"used {self.used} is more than total {self.total}")
        return self


class JobProgress(BaseModel):
    """A held job as the plane below sees it (a region's network agent, docs/federation.md).

    `path` is the region's own `JobDetail.path` for its job: the region's
    placement first, then the levels below it.
    """

    model_config = ConfigDict(extra="ignore")

    job_id: Name
    attempt: int = Field(ge=0, le=limits.MAX_ATTEMPT)
    path: list[PathHop] = Field(default=[], max_length=limits.MAX_PATH_HOPS - 1)


class RegisterRequest(BaseModel):
    """POST /center/v1/register: an agent announces itself (idempotent)."""

    model_config = ConfigDict(extra="ignore")

    center_id: str = Field(min_length=1, max_length=64)
    protocol_version: str = Field(default=PROTOCOL_VERSION, max_length=16)
    agent_version: str = Field(default="", max_length=64)
    backend: str = Field(default="local", max_length=32)
    data_url: str | None = Field(
        default=None, max_length=512, description="base URL of the agent's data endpoint"
    )
    capacity: list[PoolCapacity] = Field(default=[], max_length=limits.MAX_POOLS)
    preempt: bool | None = added(
        description="the agent stops a job a heartbeat reply lists in `preempt` (SIGTERM,"
        " `stop_grace_s`, SIGKILL), reports its end as usual, and keeps the job's"
        " $CNET_CHECKPOINT_DIR for its next attempt at this center (scheduler/preemption.py);"
        " unset: the control plane never preempts jobs here"
    )


class RegisterReply(BaseModel):
    """What the control plane tells a registered agent."""

    center_id: str
    protocol_version: str = PROTOCOL_VERSION
    heartbeat_interval_s: float
    lease_timeout_s: float
    fence_after_s: float | None = Field(
        default=None,
        description="stop every held job this long after sending the last acknowledged"
        " heartbeat (real seconds; lease_timeout_s/2 when absent)",
    )
    stop_grace_s: float | None = Field(
        default=None,
        description="a fenced job gets at most this long between SIGTERM and SIGKILL",
    )
    time_scale: float = 1.0
    data_scale: float = 1.0
    data_key: str = Field(description="secret the agent uses to check fetch tickets for its data")
    data_key_version: int = Field(
        default=1, description="version of data_key; bumped by `cnet admin rotate-data-key`"
    )


# The market between regions (docs/federation.md, "Quotes per job"): bounds of one heartbeat.
MAX_QUOTE_REQUESTS = 32
"""The most pending jobs one heartbeat reply asks a region to price."""
MAX_MEMBERS = 256
"""The most member centers a region's heartbeat may list (`HeartbeatRequest.members`)."""
MAX_QUOTES = 128
"""The most quotes one heartbeat may carry (a job may be quoted per chip type)."""
MAX_QUOTE_TTL_S = 120.0
"""The longest a quote may be held good for (real seconds from its receipt)."""


class QuoteRequest(BaseModel):
    """A pending job the control plane asks a region to price (`HeartbeatReply.quote_requests`).

    Attempt-free: the job as its user wrote it, less its environment and center;
    `spec.chips.types` are the chip types the control plane would use at this
    region. The deadline and budget travel as in a lease (`LeasedJob`): real
    unix seconds, and what the region may spend (the budget less the region's fee).
    """

    model_config = ConfigDict(extra="ignore")

    job_id: Name
    spec: JobSpec
    deadline_real: float | None = added(description="as `LeasedJob.deadline_real`")
    budget_left_cny: Decimal | None = added(
        ge=0, decimal_places=2, description="as `LeasedJob.budget_left_cny`"
    )


class JobQuote(BaseModel):
    """A region's own price and finish for one requested job (`HeartbeatRequest.quotes`).

    Either a price (`price_cny`, the region's own total to the fen, before the fee
    the control plane declares for it; `energy_cny` of it is energy) with the
    real unix second it would finish by (`finish_real`), or a `reason` it cannot
    run the job. `chip` names the chip type the price is for (absent: any of the
    requested ones). Good for `ttl_s` real seconds from its receipt.
    """

    model_config = ConfigDict(extra="ignore")

    job_id: Name
    chip: str | None = added(min_length=1, max_length=64)
    price_cny: Decimal | None = added(ge=0, le=limits.MAX_BUDGET_CNY, decimal_places=2)
    energy_cny: Decimal | None = added(ge=0, le=limits.MAX_BUDGET_CNY, decimal_places=2)
    finish_real: float | None = added(ge=0, le=1e11)
    ttl_s: float = Field(gt=0, le=MAX_QUOTE_TTL_S)
    reason: Annotated[str, BeforeValidator(_clip)] | None = added(
        min_length=1, description="why the region cannot run the job (then no price)"
    )

    @model_validator(mode="after")
    def _price_or_reason(self) -> JobQuote:
        if self.reason is None and (self.price_cny is None or self.finish_real is None):
            raise ValueError("a quote needs price_cny and finish_real, or a reason")
        if self.reason is not None and self.price_cny is not None:
            raise ValueError("a quote has a price or a reason, not both")
        if self.energy_cny is not None and (
            self.price_cny is None or self.energy_cny > self.price_cny
        ):
            raise ValueError("energy_cny is a part of price_cny: it cannot be more")
        return self


class HeartbeatRequest(BaseModel):
    """POST /center/v1/heartbeat: alive, with capacity and the jobs the agent holds."""

    model_config = ConfigDict(extra="ignore")

    center_id: str = Field(min_length=1, max_length=64)
    capacity: list[PoolCapacity] = Field(default=[], max_length=limits.MAX_POOLS)
    running: list[Name] = Field(
        default=[],
        max_length=limits.MAX_RUNNING,
        description="job ids the agent is running or staging",
    )
    progress: list[JobProgress] | None = added(
        max_length=limits.MAX_PROGRESS,
        description="a region only (a center the network file tags `region`): for held jobs,"
        " their path inside the region (docs/federation.md); other centers get 422",
    )
    quotes: list[JobQuote] | None = added(
        max_length=MAX_QUOTES,
        description="a region only: its own price and finish for jobs the control plane asked"
        " it to price (`HeartbeatReply.quote_requests`); an empty list says the region answers"
        " quote requests (docs/federation.md); other centers get 422",
    )
    members: list[MemberView] | None = added(
        max_length=MAX_MEMBERS,
        description="a region only: its own centers (where, online, chips), for display at"
        " the parent (`CenterView.members`); other centers get 422",
    )


class HeartbeatReply(BaseModel):
    """Jobs the agent must stop (cancelled, or leased elsewhere after a lost lease)."""

    cancel: list[str] = Field(
        default=[],
        max_length=limits.MAX_RUNNING,
        description="jobs to stop for good; more than fit go in the next heartbeats",
    )
    preempt: list[str] | None = added(
        max_length=limits.MAX_RUNNING,
        description="jobs to stop so that a shorter one runs (only to agents that registered"
        " `preempt`): stopped like a cancel, but each resumes later at this center from"
        " its $CNET_CHECKPOINT_DIR, which the agent keeps",
    )
    lease_timeout_s: float
    data_key_version: int | None = Field(
        default=None,
        description="the center's current data-key version: register again to learn a new key",
    )
    fence_after_s: float | None = Field(default=None, description="see RegisterReply")
    stop_grace_s: float | None = Field(default=None, description="see RegisterReply")
    quote_requests: list[QuoteRequest] | None = added(
        max_length=MAX_QUOTE_REQUESTS,
        description="a region that answers quotes only: pending jobs to price, answered in a"
        " later heartbeat's `quotes` (docs/federation.md)",
    )


class LeaseRequest(BaseModel):
    """POST /center/v1/lease: ask for jobs placed at this center that are due to start."""

    model_config = ConfigDict(extra="ignore")

    center_id: str = Field(min_length=1, max_length=64)
    max_jobs: int = Field(default=8, ge=1, le=256)
    wait_s: float = Field(
        default=0.0,
        ge=0.0,
        le=MAX_LEASE_WAIT_S,
        description="long poll: when nothing is due, hold the call up to this many real"
        " seconds and answer as soon as a job is placed here (0: answer at once)",
    )


class StagingSource(BaseModel):
    """A replica the agent may fetch from, with a ticket its data endpoint accepts.

    `url` is the full fetch URL (``{data_url}/data/{dataset}?path=P``); the
    ticket goes in the ``X-CNet-Ticket`` header (see `computenet.protocol.tickets`).
    """

    center: str
    url: str
    ticket: str
    bandwidth_gbps: float
    latency_ms: float


class StagingInput(BaseModel):
    """An input dataset of a leased job: present locally, or fetch it from `sources`."""

    dataset: str
    sha256: str
    size_bytes: int
    local_path: str | None = None
    sources: list[StagingSource] = []
    dest_path: str | None = Field(
        default=None,
        description="where a fetched copy goes, relative to the data root (the tenant's area)",
    )


class LeasedJob(BaseModel):
    """A job handed to one center; the lease must be renewed by heartbeats."""

    job_id: str
    attempt: int
    tenant: str
    spec: JobSpec
    placement: Placement
    inputs: list[StagingInput] = []
    planned_run_s: float = Field(
        description="estimated run time in real seconds (network time / time_scale)"
    )
    deadline_real: float | None = added(
        description="the job's absolute deadline as real unix seconds (clock-free: a region"
        " turns it into its own network time); absent when the job has none",
    )
    budget_left_cny: Decimal | None = added(
        ge=0,
        decimal_places=2,
        description="what is left of the job's budget (budget less what its earlier"
        " attempts cost); absent when the job has no budget",
    )


class LeaseReply(BaseModel):
    """The jobs leased by this call."""

    jobs: list[LeasedJob] = []


class StatusReport(BaseModel):
    """POST /center/v1/jobs/{id}/status: the job moved (STAGING, RUNNING or a final state)."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = Field(ge=0, le=limits.MAX_ATTEMPT)
    state: Literal["STAGING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]
    exit_code: int | None = Field(default=None, ge=limits.MIN_EXIT_CODE, le=limits.MAX_EXIT_CODE)
    message: Annotated[str, BeforeValidator(_clip)] = Field(
        default="", description=f"clipped to {limits.MAX_TEXT_CHARS} characters"
    )
    at: BoundedInstant | None = None
    endpoint: str | None = added(
        min_length=3,
        max_length=limits.MAX_NAME_CHARS,
        pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$",
        description="a service replica (docs/services.md) only, with RUNNING: the host:port"
        " its model server listens on, sent once its readiness probe answered",
    )


class LogAppend(BaseModel):
    """POST /center/v1/jobs/{id}/logs: append output; `offset` makes retries safe."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = Field(ge=0, le=limits.MAX_ATTEMPT)
    offset: int = Field(ge=0, le=limits.MAX_BYTES)
    text: str = Field(max_length=limits.MAX_LOG_APPEND_CHARS)


class SourceBytes(BaseModel):
    """Bytes one staging source sent for a job: one transfer lot on the bill."""

    model_config = ConfigDict(extra="ignore")

    source: Name
    bytes: int = Field(ge=0, le=limits.MAX_BYTES)


_Money = Annotated[Decimal, Field(ge=0, le=limits.MAX_BUDGET_CNY, decimal_places=2)]


class MeteredCharge(BaseModel):
    """One run as the center's own metering billed it (a region's bill line for the job).

    Money is exact, to the fen; the total is the sum of the three parts.
    """

    model_config = ConfigDict(extra="ignore")

    energy_cny: _Money = Decimal("0.00")
    service_cny: _Money = Decimal("0.00")
    transfer_cny: _Money = Decimal("0.00")
    kwh: float = Field(default=0.0, ge=0, le=1e12)
    co2_kg: float = Field(default=0.0, ge=0, le=1e12)
    chip_hours: float = Field(default=0.0, ge=0, le=1e12)
    cu_hours: float = Field(default=0.0, ge=0, le=1e12)

    @property
    def total_cny(self) -> Decimal:
        """Energy, service and transfer together."""
        return self.energy_cny + self.service_cny + self.transfer_cny


class SchedulerUsage(BaseModel):
    """What the center's own scheduler recorded for a run (Slurm's ``sacct``).

    Informational: shown to operators and kept with the job's usage; billing still
    uses `UsageReport.run_real_s` (or `metered`), so adding it changed no charge.
    """

    model_config = ConfigDict(extra="ignore")

    scheduler: str = Field(max_length=limits.MAX_NAME_CHARS, description="e.g. slurm")
    job_id: str = Field(max_length=limits.MAX_ID_CHARS, description="the scheduler's job id")
    state: str = Field(default="", max_length=limits.MAX_NAME_CHARS, description="e.g. TIMEOUT")
    exit_code: int | None = Field(default=None, ge=limits.MIN_EXIT_CODE, le=limits.MAX_EXIT_CODE)
    elapsed_s: float = Field(default=0, ge=0, le=limits.MAX_SECONDS)
    cpu_s: float = Field(default=0, ge=0, le=limits.MAX_SECONDS * limits.MAX_CHIPS)
    cpus: int = Field(default=0, ge=0, le=limits.MAX_RUNNING * limits.MAX_CHIPS)
    gpus: int = Field(default=0, ge=0, le=limits.MAX_RUNNING * limits.MAX_CHIPS)
    mem_mb: float = Field(default=0, ge=0, le=limits.MAX_MEMORY_GB * 1024 * limits.MAX_CHIPS)
    time_limit_s: float | None = Field(
        default=None, ge=0, le=limits.MAX_SECONDS, description="the limit it ran under"
    )


class UsageReport(BaseModel):
    """POST /center/v1/jobs/{id}/usage: measured run and staging, in real seconds and bytes."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = Field(ge=0, le=limits.MAX_ATTEMPT)
    run_real_s: float = Field(ge=0, le=limits.MAX_SECONDS)
    staging_real_s: float = Field(default=0, ge=0, le=limits.MAX_SECONDS)
    bytes_staged: int = Field(default=0, ge=0, le=limits.MAX_BYTES)
    staged_from: Name | None = None
    # Bytes per source (each billed at its own path's price); older agents send only
    # `bytes_staged` and `staged_from`, billed as one lot from that source.
    transfers: list[SourceBytes] = Field(default_factory=list, max_length=limits.MAX_INPUTS)
    metered: MeteredCharge | None = added(
        description="what the center's own control plane billed for this run (a region,"
        " docs/federation.md); the parent bills exactly this, plus its own transfer lots",
    )
    path: list[PathHop] | None = added(
        max_length=limits.MAX_PATH_HOPS - 1,
        description="a region only: where the run ended below it (as in a heartbeat's"
        " `progress`), so the parent keeps the final path; other centers get 422",
    )
    scheduler: SchedulerUsage | None = added(
        # a center without accounting sends what it did
        description="the center scheduler's own accounting of the run (Slurm's sacct);"
        " informational, not billed",
    )


# A region's replica (docs/federation.md) is not a file under an agent's data root:
# its path is this prefix and the dataset's id in the region.
REGION_PATH_PREFIX = "region:"


class ReplicaReport(BaseModel):
    """POST /center/v1/datasets/{id}/replicas: the agent now holds a verified copy."""

    model_config = ConfigDict(extra="ignore")

    path: str = Field(min_length=1, max_length=1024)
    sha256: str = Field(max_length=64)
