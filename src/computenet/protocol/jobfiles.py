"""POST /api/v1/jobfiles/convert: a job file's text (ComputeNet, SkyPilot or Slurm) as a spec."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from computenet.model import JobSpec

# A job file is at most this many characters (the dashboard refuses a bigger upload too).
MAX_JOB_FILE_CHARS = 1_000_000


class JobFileText(BaseModel):
    """A job file as its text; the format is told by its content."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_JOB_FILE_CHARS)
    partition_map: dict[str, str] | None = Field(
        default=None,
        max_length=1000,
        description="Slurm partition → workload class (else the built-in map)",
    )


class UnmappedField(BaseModel):
    """A field of the user's file with no place in the spec, and why."""

    field: str
    why: str


class JobFileView(BaseModel):
    """What the file became: the validated spec and everything it could not carry."""

    format: Literal["computenet", "skypilot", "slurm"]
    spec: JobSpec
    unmapped: list[UnmappedField] = []
    notes: list[str] = []
