"""Jobs: the spec a user writes and the states a job moves through."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from computenet.errors import IllegalTransition, ValidationError
from computenet.model import limits
from computenet.model.chips import Stack
from computenet.model.limits import Name


class JobState(StrEnum):
    """Where a job is in its life; see `LEGAL_TRANSITIONS`."""

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    STAGING = "STAGING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


def parse_states(text: str | None) -> frozenset[JobState] | None:
    """A job list's `state` filter: one state or comma-separated states, any case; None
    (no filter) when empty. The one reading of the server and the SDK's FakeAPI."""
    if not text:
        return None
    out: set[JobState] = set()
    for part in text.split(","):
        try:
            out.add(JobState(part.strip().upper()))
        except ValueError:
            raise ValidationError(
                f"unknown state '{part}'",
                field="state",
                hint="one of " + ", ".join(x.value for x in JobState),
            ) from None
    return frozenset(out)


# Back to PENDING is how lost agents, failed stagings and preemptions requeue a job.
LEGAL_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.SCHEDULED, JobState.CANCELLED}),
    JobState.SCHEDULED: frozenset(
        {JobState.STAGING, JobState.RUNNING, JobState.PENDING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.STAGING: frozenset(
        {JobState.RUNNING, JobState.PENDING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.PENDING, JobState.CANCELLED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(old: JobState, new: JobState) -> None:
    """Raise `IllegalTransition` unless `old → new` is allowed."""
    if new not in LEGAL_TRANSITIONS[old]:
        raise IllegalTransition(
            f"a {old.value} job cannot become {new.value}",
            field="state",
            hint=f"from {old.value} it may go to "
            + (
                ", ".join(sorted(s.value for s in LEGAL_TRANSITIONS[old])) or "nothing: it is final"
            ),
        )


# The identity a job had where it was first submitted (ORIGIN/JOB), set in its environment
# by the network that hands it to another (backends/network.py) and kept at every level.
ORIGIN_JOB_ENV = "CNET_ORIGIN_JOB"
# Which way the job last crossed between networks: "down" (a parent delegated it to a
# region, backends/network.py) or "up" (a region's overflow, backends/uplink.py), set at
# every crossing. A job that came down never goes up again; one that came up may go further
# up when this network cannot run it either (docs/federation.md, "Overflow up").
ORIGIN_HOP_ENV = "CNET_ORIGIN_HOP"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse '90m', '6h', '1.5d' into a timedelta; raise ValueError otherwise.

    Durations longer than `limits.MAX_AHEAD` (about ten years) are refused
    here, before `timedelta` could overflow on them.
    """
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a duration like 30m, 6h or 2d")
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)]
    if not seconds <= limits.MAX_DURATION_S:
        raise ValueError(
            f"'{text.strip()}' is longer than {limits.MAX_AHEAD.days} days, the longest allowed"
        )
    return timedelta(seconds=seconds)


class ChipRequest(BaseModel):
    """How many chips, and which: explicit types, or any chip of a stack."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(default=1, ge=1, le=limits.MAX_CHIPS)
    types: tuple[Name, ...] = Field(default=(), max_length=limits.MAX_CHIP_TYPES)
    stack: Stack | None = None
    memory_gb: float | None = Field(default=None, gt=0, le=limits.MAX_MEMORY_GB)


class Work(BaseModel):
    """How much work a job is: compute units, or hours on a reference chip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The bounds also refuse NaN and infinity (no comparison holds for them).
    cu_hours: float | None = Field(default=None, gt=0, le=limits.MAX_CU_HOURS)
    reference_chip: Name | None = None
    reference_hours: float | None = Field(default=None, gt=0, le=limits.MAX_HOURS)

    @model_validator(mode="after")
    def _one_way(self) -> Work:
        if self.cu_hours is None and (self.reference_chip is None or self.reference_hours is None):
            raise ValueError("give cu_hours, or reference_chip with reference_hours")
        if self.cu_hours is not None and self.reference_hours is not None:
            raise ValueError("give cu_hours or reference_hours, not both")
        return self


class JobSpec(BaseModel):
    """What a user submits: the job file's schema.

    `deadline` is an ISO-8601 instant with a timezone, or a duration from
    submission such as ``6h``; the server resolves it once at submit.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(default="job", min_length=1, max_length=limits.MAX_NAME_CHARS)
    workload_class: str = Field(alias="class", min_length=1, max_length=64)
    command: str = Field(min_length=1, max_length=limits.MAX_COMMAND_CHARS)
    chips: ChipRequest = ChipRequest()
    work: Work
    inputs: tuple[Name, ...] = Field(default=(), max_length=limits.MAX_INPUTS)
    deadline: datetime | str | None = None
    budget_cny: Decimal | None = Field(default=None, gt=0, le=limits.MAX_BUDGET_CNY)
    priority: int = Field(default=0, ge=0, le=limits.MAX_PRIORITY)
    latency_class: Literal["batch", "interactive"] = "batch"
    env: dict[str, str] = Field(default_factory=dict, max_length=limits.MAX_ENV_VARS)
    center: Name | None = Field(
        default=None, description="pin the job to this center (e.g. an option chosen from a quote)"
    )
    # Left out of the JSON while it is the default, so that an agent or a child network
    # older than the field still reads every spec that does not use it.
    spill: Literal["allow", "never"] = Field(
        default="allow",
        exclude_if=lambda v: v == "allow",
        description="allow: when no center of this network can run the job (by its deadline,"
        " or at all), it may be offered to the parent network; never: it stays here",
    )
    # Left out of the JSON while false, as `spill` is (agents older than the field).
    preemptible: bool = Field(
        default=False,
        exclude_if=lambda v: v is False,
        description="the job agrees to be stopped so that a much shorter job runs first"
        " (only under the `fastest` scheduling profile, at most once): SIGTERM, `stop_grace_s`"
        " to save its state under $CNET_CHECKPOINT_DIR, then SIGKILL; it resumes later at the"
        ' same center from what it saved (docs/user-guide.md, "Preemptible jobs")',
    )

    @field_validator("env")
    @classmethod
    def _env_bounded(cls, v: dict[str, str]) -> dict[str, str]:
        # A job's environment ends up in a process table, a Slurm script or a pod
        # manifest: names must be names, and the whole must stay small.
        total = 0
        for name, value in v.items():
            if not name or "=" in name or "\0" in name or len(name) > limits.MAX_ENV_NAME_CHARS:
                raise ValueError(
                    f"'{name[:40]}' is not a variable name (1-{limits.MAX_ENV_NAME_CHARS}"
                    " characters, no '=' or NUL)"
                )
            if "\0" in value or len(value) > limits.MAX_ENV_VALUE_CHARS:
                raise ValueError(
                    f"the value of {name[:40]} is over {limits.MAX_ENV_VALUE_CHARS} characters"
                    " or holds a NUL"
                )
            total += len(name) + len(value)
        if total > limits.MAX_ENV_TOTAL_CHARS:
            raise ValueError(f"is over {limits.MAX_ENV_TOTAL_CHARS} characters in all")
        return v

    @field_validator("deadline")
    @classmethod
    def _deadline_form(cls, v: datetime | str | None) -> datetime | str | None:
        if isinstance(v, str):
            if len(v) > 64:
                raise ValueError("is too long for a time or a duration")
            if not ("T" in v or "-" in v[:5]):
                return _relative(v)
            try:
                v = datetime.fromisoformat(v)
            except ValueError as exc:
                raise ValueError(
                    f"'{v}' is neither an ISO-8601 time nor a duration like 6h"
                ) from exc
        return limits.in_year_range(v)

    @field_validator("deadline", mode="after")
    @classmethod
    def _aware(cls, v: datetime | str | None) -> datetime | str | None:
        if isinstance(v, datetime) and v.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2026-12-01T18:00:00+08:00")
        return v

    def no_spill_reason(self) -> str:
        """Why this job may not overflow to a parent network; empty when it may.

        A job that came from another network (`ORIGIN_JOB_ENV` in its environment)
        by being delegated down by its parent is never sent up again: that is what
        keeps jobs from going round in loops (docs/federation.md). One a region sent
        up (`ORIGIN_HOP_ENV` "up") may go further up, each level pinning it away from
        the region it came from; without the hop (an older network) it stays.
        """
        if self.spill == "never":
            return "spill: never keeps it in this network"
        origin = self.env.get(ORIGIN_JOB_ENV)
        if origin is not None and self.env.get(ORIGIN_HOP_ENV) != "up":
            return (
                f"it came from another network ({ORIGIN_JOB_ENV}={origin[:80]}): not sent up again"
            )
        return ""

    def deadline_at(self, submitted: datetime) -> datetime | None:
        """The absolute deadline for a job submitted at `submitted`."""
        if self.deadline is None:
            return None
        if isinstance(self.deadline, datetime):
            return self.deadline
        return submitted + parse_duration(self.deadline)


def _relative(v: str) -> str:
    try:
        d = parse_duration(v)
    except ValueError as exc:
        if "longer than" in str(exc):
            raise
        raise ValueError(f"'{v}' is neither an ISO-8601 time nor a duration like 6h") from exc
    if d.total_seconds() <= 0:
        raise ValueError("must be positive")
    return v.strip()


def stored_spec(raw: Mapping[str, Any]) -> JobSpec:
    """A spec as stored: validated, or taken as is when it fails today's checks.

    A job stored before a bound was tightened (an older database), or written
    around the API, must still be shown and cancelled; the scheduler rejects
    it on its own (it validates every spec it reads).
    """
    try:
        return JobSpec.model_validate(raw)
    except PydanticValidationError:
        data = dict(raw)
        if isinstance(data.get("work"), Mapping):
            data["work"] = Work.model_construct(**data["work"])
        if isinstance(data.get("chips"), Mapping):
            data["chips"] = ChipRequest.model_construct(**data["chips"])
        if "class" in data:
            data["workload_class"] = data.pop("class")
        return JobSpec.model_construct(**data)
