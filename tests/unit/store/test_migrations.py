"""The store's migrations build the schema from an empty database, and match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from computenet.store import current_revision, downgrade_db, make_engine, upgrade_db
from computenet.store.schema import Base

TABLES = {
    "meta",
    "tenants",
    "tokens",
    "centers",
    "datasets",
    "dataset_replicas",
    "jobs",
    "job_events",
    "job_logs",
    "job_charges",
    "audit_log",
    "leader_lease",
    "tenant_quotas",
    "vouchers",
    "voucher_uses",
}
HEAD = "0006"


def test_upgrade_from_empty_creates_every_table_at_head(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade_db(db_url)
    assert current_revision(db_url) == HEAD
    engine = make_engine(db_url)
    try:
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    upgrade_db(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_harmless(db_url: str) -> None:
    upgrade_db(db_url)
    upgrade_db(db_url)
    assert current_revision(db_url) == HEAD


def test_downgrade_to_base_and_up_again(db_url: str) -> None:
    upgrade_db(db_url)
    downgrade_db(db_url)
    engine = make_engine(db_url)
    try:
        assert not TABLES & set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgrade_db(db_url)
    assert current_revision(db_url) == HEAD


def test_a_plain_path_means_a_sqlite_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "sub" / "x.db"
    upgrade_db(str(path))
    assert path.is_file()


def test_0006_upgrades_a_database_with_jobs_and_centers(db_url: str) -> None:
    """Preemption's columns arrive with defaults on existing rows: not preemptible, never
    preempted, no stop asked, no resume point; a center does not preempt until it says so."""
    upgrade_db(db_url, "0005")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, created_at) VALUES ('t', '2026-12-01')"))
            conn.execute(
                text(
                    "INSERT INTO jobs (id, tenant_id, name, workload_class, state, spec,"
                    " submitted_at, priority, reasons, chips, attempt, avoid_centers,"
                    " cancel_requested, usage, log_bytes) VALUES ('j1', 't', 'j', 'x', 'PENDING',"
                    " '{}', '2026-12-01', 0, '[]', 1, 0, '[]', false, '{}', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO centers (id, data_key, backend, agent_version,"
                    " protocol_version, registered_at, capacity, running, data_key_version)"
                    " VALUES ('c', 'k', 'local', '', '', '2026-12-01', '[]', '[]', 1)"
                )
            )
    finally:
        engine.dispose()
    upgrade_db(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            job = conn.execute(
                text(
                    "SELECT preemptible, preemptions, stop_for, work_left, resume_center,"
                    " stopped_at, parts_billed FROM jobs WHERE id = 'j1'"
                )
            ).one()
            center = conn.execute(text("SELECT preempt FROM centers WHERE id = 'c'")).one()
    finally:
        engine.dispose()
    assert (bool(job[0]), job[1], job[2], job[3], job[4], job[5], job[6]) == (
        False, 0, None, None, None, None, None
    )  # fmt: skip
    assert bool(center[0]) is False
