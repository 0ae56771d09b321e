"""Fixtures shared by every suite (keep this file small and generic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.db import fresh_db_url


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """A fresh, empty database: SQLite under tmp_path, or CNET_TEST_DB_URL emptied first."""
    return fresh_db_url(tmp_path)
