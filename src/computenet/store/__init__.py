"""The control plane's store: schema, repositories and migrations (the only SQL in ComputeNet)."""

from computenet.store.db import (
    Database,
    current_revision,
    downgrade_db,
    is_sqlite,
    make_engine,
    normalize_url,
    upgrade_db,
)

__all__ = [
    "Database",
    "current_revision",
    "downgrade_db",
    "is_sqlite",
    "make_engine",
    "normalize_url",
    "upgrade_db",
]
