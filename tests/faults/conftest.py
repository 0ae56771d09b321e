"""Fixtures of the fault suite: a `Cluster` on SQLite (or a fresh PostgreSQL database).

The machinery and the exactly-once checks live in tests/faults/harness.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Cluster, fresh_pg_database, pg_base_url


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on a fresh SQLite file, not started yet; stopped (by PID) at the end."""
    c = Cluster(tmp_path, f"sqlite:///{tmp_path / 'cnet.db'}")
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def any_db_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster on SQLite and on a fresh PostgreSQL database (fails under CI=true without PG)."""
    if request.param == "sqlite":
        c = Cluster(tmp_path, f"sqlite:///{tmp_path / 'cnet.db'}")
        try:
            yield c
        finally:
            c.stop()
        return
    base = pg_base_url()
    assert base is not None
    with fresh_pg_database(base) as url:
        c = Cluster(tmp_path, url)
        try:
            yield c
        finally:
            c.stop()
