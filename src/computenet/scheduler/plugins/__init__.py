"""Built-in filter plugins and scoring profiles, registered by name."""

from computenet.scheduler.plugins import quota as quota  # registers the tenant-quota filter
from computenet.scheduler.plugins.filters import FILTERS, FilterPlugin, PoolFilter
from computenet.scheduler.plugins.profiles import PROFILES, Profile

__all__ = ["FILTERS", "PROFILES", "FilterPlugin", "PoolFilter", "Profile"]
