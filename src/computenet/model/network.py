"""A whole network: chips, throughput, centers, user sites and links, checked for consistency."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

from computenet.errors import ComputeNetError
from computenet.model.center import Center, UserSite
from computenet.model.chips import Chip
from computenet.model.identifiers import check_network
from computenet.model.link import Link
from computenet.model.workload import ThroughputMatrix


class Network(BaseModel):
    """Everything the scheduler needs to know that does not change job by job.

    `time_scale` is how many network seconds pass per real second. It is 1
    for a real network; the demo runs faster so that tariff hours and
    multi-hour jobs fit into a minute of watching. `data_scale` is how many
    bytes on the links each real byte of a dataset stands for (1 for real).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    chips: dict[str, Chip]
    throughput: ThroughputMatrix
    centers: tuple[Center, ...] = Field(min_length=1)
    sites: tuple[UserSite, ...] = ()
    links: tuple[Link, ...] = ()
    time_scale: float = Field(default=1.0, gt=0, le=1_000_000)
    data_scale: float = Field(default=1.0, gt=0, le=1e9)
    # The prefix of this plane's identifiers (model/identifiers.py), e.g. "cn.gba";
    # None: the name in lower case.
    identifier: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Network:
        seen: set[str] = set()
        for i, c in enumerate(self.centers):
            if c.id in seen:
                raise ValueError(f"centers[{i}].id: '{c.id}' appears twice")
            seen.add(c.id)
            for j, p in enumerate(c.pools):
                if p.chip not in self.chips:
                    raise ValueError(
                        f"centers[{i}].pools[{j}].chip: unknown chip '{p.chip}'"
                        f" (known: {', '.join(sorted(self.chips))})"
                    )
        for i, s in enumerate(self.sites):
            if s.id in seen:
                raise ValueError(f"sites[{i}].id: '{s.id}' is already a center or site id")
            seen.add(s.id)
        for i, link in enumerate(self.links):
            for end in ("a", "b"):
                node = getattr(link, end)
                if node not in seen:
                    raise ValueError(f"links[{i}].{end}: unknown center or site '{node}'")
        for cls, row in self.throughput.efficiency.items():
            for chip in row:
                if chip not in self.chips:
                    raise ValueError(f"throughput.efficiency.{cls}: unknown chip '{chip}'")
        try:
            check_network(self)
        except ComputeNetError as exc:
            raise ValueError(f"{exc.field}: {exc.message}; {exc.hint}") from exc
        return self

    def center(self, center_id: str) -> Center:
        """The center with this id; KeyError if none."""
        for c in self.centers:
            if c.id == center_id:
                return c
        raise KeyError(center_id)

    @property
    def node_ids(self) -> list[str]:
        """Centers then sites: the nodes of the link graph."""
        return [c.id for c in self.centers] + [s.id for s in self.sites]

    def coordinates(self) -> dict[str, tuple[float, float]]:
        """(lat, lon) of every node."""
        out = {c.id: (c.lat, c.lon) for c in self.centers}
        out.update({s.id: (s.lat, s.lon) for s in self.sites})
        return out


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance in km between two (lat, lon) points on a spherical Earth."""
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def fiber_rtt_ms(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Round trip over fiber: 2 × km × 1.2 (route factor) × 5 µs/km (REFERENCE.md)."""
    return 2 * great_circle_km(a, b) * 1.2 * 0.005
