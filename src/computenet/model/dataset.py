"""Datasets: named, checksummed files with replicas at centers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Dataset(BaseModel):
    """A dataset and where copies of it live.

    `residency` is a tag (e.g. ``region:east``): when set, the data — and any
    job reading it — may only be at centers carrying that tag.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    replicas: tuple[str, ...] = ()
    residency: str | None = None

    @property
    def size_gb(self) -> float:
        """Size in (decimal) gigabytes, the unit links are priced in."""
        return self.size_bytes / 1e9
