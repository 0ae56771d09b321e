"""Fixtures shared by every suite (keep this file small and generic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _pytest.tmpdir import TempPathFactory

from tests.helpers.db import fresh_db_url

if os.geteuid() == 0:
    # As root, local jobs run as other (dynamic) uids: let them reach and write the
    # test's own tmp dirs as tests expect (pytest makes them 0700). The agent's own
    # dirs inside keep the modes the agent gives them.
    _mktemp = TempPathFactory.mktemp

    def _mktemp_for_jobs(self: TempPathFactory, basename: str, numbered: bool = True) -> Path:
        path = _mktemp(self, basename, numbered)
        base = self.getbasetemp()
        for d in (base.parent, base):
            if d.name.startswith("pytest-"):
                d.chmod(0o711)
        path.chmod(0o1777)
        return path

    TempPathFactory.mktemp = _mktemp_for_jobs  # type: ignore[method-assign]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh, empty database: SQLite under tmp_path, or CNET_TEST_DB_URL emptied first."""
    return fresh_db_url(tmp_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse an `own_db` test that asks for the test database.

    The PostgreSQL pass of scripts/test.sh skips `own_db` tests because they
    never touch CNET_TEST_DB_URL; one that did would lose its PostgreSQL run
    without anyone noticing.
    """
    for item in items:
        if item.get_closest_marker("own_db") and "db_url" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(
                f"{item.nodeid} is marked own_db but uses the db_url fixture: drop the mark"
            )
