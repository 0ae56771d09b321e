"""Engines, sessions and migrations: the one place that knows how to talk to the database.

SQLite runs in WAL mode with a busy timeout, and write transactions begin
``IMMEDIATE`` so that two writers queue on the lock instead of failing on a
lock upgrade. Within one process, writers also queue on a Python lock before
they ask SQLite: SQLite's busy handler polls with sleeps of up to 100 ms,
which a waiting writer would pay as latency, while a released Python lock
wakes the next writer at once. PostgreSQL (or any SQLAlchemy URL) works
unchanged; rows that must not be changed twice are read ``FOR UPDATE`` (a no-op on SQLite, where
the immediate transaction already serializes writers).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 0x636E65745F6D6967  # PostgreSQL advisory lock key: "cnet_mig"
BUSY_TIMEOUT_MS = 30_000


def normalize_url(url_or_path: str) -> str:
    """A SQLAlchemy URL: a plain path means SQLite; ``postgresql://`` gets a driver we have."""
    if "://" not in url_or_path:
        return f"sqlite:///{Path(url_or_path).expanduser().resolve()}"
    url = make_url(url_or_path)
    if url.drivername in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
            url = url.set(drivername="postgresql+psycopg")
        elif url.drivername == "postgres":
            url = url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)
    return url_or_path


def is_sqlite(url: str) -> bool:
    """Whether `url` names a SQLite database."""
    return make_url(normalize_url(url)).get_backend_name() == "sqlite"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGIN."""
    url = normalize_url(url)
    if not is_sqlite(url):
        return create_engine(url, pool_pre_ping=True, **kwargs)
    parsed = make_url(url)
    memory = parsed.database in (None, "", ":memory:")
    if memory:
        kwargs.setdefault("poolclass", StaticPool)
    else:
        Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("connect_args", {})
    kwargs["connect_args"].setdefault("check_same_thread", False)
    kwargs["connect_args"].setdefault("timeout", BUSY_TIMEOUT_MS / 1000)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below decide transaction boundaries, not pysqlite.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        # With WAL, NORMAL loses no committed transaction on a process crash (only on
        # power loss, the last few) and spares an fsync per commit.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


class Database:
    """An engine plus two session factories: `read()` and `write()` (serialized on SQLite).

    On SQLite, `write()` blocks take an in-process lock first (see the module
    notes), so the writers of one process never poll SQLite's busy handler for
    each other; writers in other processes still queue on SQLite's own lock.
    """

    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = normalize_url(url)
        self.engine = engine or make_engine(self.url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        writer = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.sqlite else self.engine
        )
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        # Reentrant so that a nested write() fails the way it always did (SQLite busy),
        # instead of hanging on this lock.
        self._write_lock: threading.RLock | None = threading.RLock() if self.sqlite else None

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it changes is committed.

        Rows stay readable after the block (closing detaches them without expiring).
        """
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed when the block ends without an exception."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self._write() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(url: str) -> Any:
    """An Alembic `Config` pointing at the packaged migrations."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade_db(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (creating it from empty if need be)."""
    _migrate(url, "upgrade", revision)


def downgrade_db(url: str, revision: str = "base") -> None:
    """Take the database at `url` back to `revision` (`base` drops every table)."""
    _migrate(url, "downgrade", revision)


def _migrate(url: str, direction: str, revision: str) -> None:
    from alembic import command

    url = normalize_url(url)
    engine = make_engine(url)
    try:
        conn_engine = (
            engine.execution_options(sqlite_begin="IMMEDIATE")
            if engine.dialect.name == "sqlite"
            else engine
        )
        with conn_engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                # Replicas started together migrate one after another (held to the commit):
                # the first one migrates, the others then find the schema at head.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
            conn.commit()
    finally:
        engine.dispose()
    log.debug("database %s at revision %s", make_url(url).render_as_string(), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
