"""Jobs: the spec a user writes and the states a job moves through."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from computenet.errors import IllegalTransition
from computenet.model.chips import Stack


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


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse '90m', '6h', '1.5d' into a timedelta; raise ValueError otherwise."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a duration like 30m, 6h or 2d")
    return timedelta(seconds=float(m.group(1)) * _UNIT_S[m.group(2)])


class ChipRequest(BaseModel):
    """How many chips, and which: explicit types, or any chip of a stack."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(default=1, ge=1, le=4096)
    types: tuple[str, ...] = ()
    stack: Stack | None = None
    memory_gb: float | None = Field(default=None, gt=0)


class Work(BaseModel):
    """How much work a job is: compute units, or hours on a reference chip."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cu_hours: float | None = Field(default=None, gt=0)
    reference_chip: str | None = None
    reference_hours: float | None = Field(default=None, gt=0)

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

    name: str = Field(default="job", min_length=1, max_length=128)
    workload_class: str = Field(alias="class", min_length=1)
    command: str = Field(min_length=1, max_length=16384)
    chips: ChipRequest = ChipRequest()
    work: Work
    inputs: tuple[str, ...] = ()
    deadline: datetime | str | None = None
    budget_cny: Decimal | None = Field(default=None, gt=0)
    priority: int = Field(default=0, ge=0, le=10)
    latency_class: Literal["batch", "interactive"] = "batch"
    env: dict[str, str] = Field(default_factory=dict)
    center: str | None = Field(
        default=None, description="pin the job to this center (e.g. an option chosen from a quote)"
    )

    @field_validator("deadline")
    @classmethod
    def _deadline_form(cls, v: datetime | str | None) -> datetime | str | None:
        if isinstance(v, str):
            try:
                return datetime.fromisoformat(v) if "T" in v or "-" in v[:5] else _relative(v)
            except ValueError as exc:
                raise ValueError(
                    f"'{v}' is neither an ISO-8601 time nor a duration like 6h"
                ) from exc
        return v

    @field_validator("deadline", mode="after")
    @classmethod
    def _aware(cls, v: datetime | str | None) -> datetime | str | None:
        if isinstance(v, datetime) and v.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2026-12-01T18:00:00+08:00")
        return v

    def deadline_at(self, submitted: datetime) -> datetime | None:
        """The absolute deadline for a job submitted at `submitted`."""
        if self.deadline is None:
            return None
        if isinstance(self.deadline, datetime):
            return self.deadline
        return submitted + parse_duration(self.deadline)


def _relative(v: str) -> str:
    if parse_duration(v).total_seconds() <= 0:
        raise ValueError("must be positive")
    return v.strip()
