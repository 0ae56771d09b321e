"""Built-in filter plugins and scoring profiles, registered by name."""

from computenet.scheduler.plugins.filters import FILTERS, PoolFilter
from computenet.scheduler.plugins.profiles import PROFILES, Profile

__all__ = ["FILTERS", "PROFILES", "PoolFilter", "Profile"]
