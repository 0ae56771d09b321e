"""Databases for tests: a fresh SQLite file, or an emptied CNET_TEST_DB_URL (e.g. PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import MetaData


def empty_database(url: str) -> None:
    """Drop every table in the database at `url` (ComputeNet's and Alembic's)."""
    from computenet.store import make_engine

    engine = make_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.begin() as conn:
            meta.drop_all(conn)
    finally:
        engine.dispose()


def fresh_db_url(tmp_path: Path) -> str:
    """A fresh, empty database URL: CNET_TEST_DB_URL emptied, else SQLite under `tmp_path`."""
    url = os.environ.get("CNET_TEST_DB_URL")
    if url:
        empty_database(url)
        return url
    return f"sqlite:///{tmp_path / 'test.db'}"
