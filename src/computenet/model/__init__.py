"""The pure data model: chips, workloads, centers, links, datasets, jobs, placements.

Nothing here does I/O or reads the wall clock; every other part adapts to it.
"""

from computenet.model.center import Center, Pool, Tariff, UserSite
from computenet.model.chips import Chip, Stack
from computenet.model.dataset import Dataset
from computenet.model.job import (
    TERMINAL_STATES,
    ChipRequest,
    JobSpec,
    JobState,
    Work,
    check_transition,
)
from computenet.model.link import Link
from computenet.model.network import Network
from computenet.model.placement import CostBreakdown, Placement
from computenet.model.workload import ThroughputMatrix

__all__ = [
    "TERMINAL_STATES",
    "Center",
    "Chip",
    "ChipRequest",
    "CostBreakdown",
    "Dataset",
    "JobSpec",
    "JobState",
    "Link",
    "Network",
    "Placement",
    "Pool",
    "Stack",
    "Tariff",
    "ThroughputMatrix",
    "UserSite",
    "Work",
    "check_transition",
]
