"""A fresh PostgreSQL database per test, on the server that scripts/services.sh runs.

`fresh_pg_database()` creates an empty database with a unique name on the
server of ``CNET_PG_URL`` (found with `require_service`, so the test FAILS in
CI and is skipped elsewhere when PostgreSQL is missing) and yields its URL;
the database is dropped afterwards, connections and all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.helpers.services import require_service


@contextmanager
def scratch_database(base_url: str, prefix: str = "cnet_test") -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of `base_url`: its URL; dropped on exit.

    The one way tests, the fault suite and the benches make a throwaway database.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def fresh_pg_database(prefix: str = "cnet_test") -> Iterator[str]:
    """An empty database on the services' PostgreSQL: its URL; dropped on exit."""
    with scratch_database(require_service("postgres")["CNET_PG_URL"], prefix) as url:
        yield url
