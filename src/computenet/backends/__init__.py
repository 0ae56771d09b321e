"""Backend adapters: how an agent runs jobs on its center's local scheduler."""

from computenet.backends.base import (
    Backend,
    BackendJob,
    BackendState,
    BackendStatus,
    Capability,
)

__all__ = ["Backend", "BackendJob", "BackendState", "BackendStatus", "Capability"]
