"""Repositories: exact money, aware instants, idempotency, checked transitions, leases, logs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from computenet.errors import IllegalTransition
from computenet.model import JobState
from computenet.store import Database, upgrade_db
from computenet.store import jobs as job_store
from computenet.store.accounts import create_tenant
from computenet.store.billing import charges, put_charge
from computenet.store.schema import ChargeRow, JobRow

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    upgrade_db(db_url)
    database = Database(db_url)
    with database.write() as s:
        create_tenant(s, "acme", T0)
        create_tenant(s, "beta", T0)
    yield database
    database.dispose()


def new_job(job_id: str, tenant: str = "acme", key: str | None = None, **over: object) -> JobRow:
    fields: dict[str, object] = {
        "id": job_id,
        "tenant_id": tenant,
        "name": "j",
        "workload_class": "llm-train",
        "state": JobState.PENDING.value,
        "spec": {"name": "j"},
        "idempotency_key": key,
        "submitted_at": T0,
        "priority": 0,
        "reasons": [],
        "chips": 1,
        "attempt": 0,
        "avoid_centers": [],
        "cancel_requested": False,
        "usage": {},
        "log_bytes": 0,
    }
    fields.update(over)
    return JobRow(**fields)


def test_money_and_instants_round_trip_exactly(db: Database) -> None:
    with db.write() as s:
        job_store.insert_job(s, new_job("j1"))
        put_charge(
            s,
            ChargeRow(
                job_id="j1",
                tenant_id="acme",
                period="2026-11",
                job_name="j",
                center="c",
                chip="H100",
                chips=1,
                started_at=T0,
                finished_at=T0 + timedelta(hours=1),
                chip_hours=1.0,
                cu_hours=0.5,
                kwh=0.8,
                co2_kg=0.4,
                energy_cny=Decimal("0.10"),
                service_cny=Decimal("123456789.01"),
                transfer_cny=Decimal("0.00"),
                total_cny=Decimal("123456789.11"),
            ),
        )
    with db.read() as s:
        (row,) = charges(s, "acme", "2026-11")
        assert row.total_cny == Decimal("123456789.11")
        assert row.energy_cny + row.service_cny == Decimal("123456789.11")
        assert row.finished_at == T0 + timedelta(hours=1)
        assert row.finished_at.tzinfo is not None


def test_naive_datetimes_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="timezone-aware"), db.write() as s:
        job_store.insert_job(s, new_job("j1", submitted_at=datetime(2026, 1, 1)))


def test_the_same_idempotency_key_gives_the_same_job(db: Database) -> None:
    with db.write() as s:
        _, created1 = job_store.insert_job(s, new_job("j1", key="k"))
    with db.write() as s:
        second, created2 = job_store.insert_job(s, new_job("j2", key="k"))
    assert (created1, created2) == (True, False)
    assert second.id == "j1"
    with db.write() as s:
        other, created3 = job_store.insert_job(s, new_job("j3", tenant="beta", key="k"))
    assert created3 and other.id == "j3"
    with db.read() as s:
        assert {j.id for j in job_store.list_jobs(s)} == {"j1", "j3"}


def test_an_illegal_transition_raises_and_writes_nothing(db: Database) -> None:
    with db.write() as s:
        job_store.insert_job(s, new_job("j1"))
    with pytest.raises(IllegalTransition), db.write() as s:
        job = job_store.get_job(s, "j1")
        assert job is not None
        job_store.transition(s, job, JobState.RUNNING, T0, "skip ahead")
    with db.read() as s:
        job = job_store.get_job(s, "j1")
        assert job is not None and job.state == "PENDING"
        assert [e.state for e in job_store.events(s, "j1")] == ["PENDING"]


def test_a_legal_transition_writes_an_event(db: Database) -> None:
    with db.write() as s:
        job_store.insert_job(s, new_job("j1"))
    with db.write() as s:
        job = job_store.get_job(s, "j1")
        assert job is not None
        job_store.transition(s, job, JobState.CANCELLED, T0, "cancelled by ann")
    with db.read() as s:
        assert [(e.state, e.message) for e in job_store.events(s, "j1")][-1] == (
            "CANCELLED",
            "cancelled by ann",
        )


def test_a_job_is_leased_once_even_when_many_threads_race(db: Database) -> None:
    with db.write() as s:
        job_store.insert_job(
            s, new_job("j1", state="SCHEDULED", center="zhongwei", planned_start=T0)
        )
    wins: list[bool] = []
    lock = threading.Lock()

    def grab() -> None:
        with db.write() as s:
            ok = job_store.try_lease(s, "j1", "zhongwei", 1.0)
        with lock:
            wins.append(ok)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1
    with db.read() as s:
        job = job_store.get_job(s, "j1")
        assert job is not None and job.attempt == 1 and job.lease_center == "zhongwei"


def test_a_job_is_not_leased_to_a_center_it_is_not_placed_at(db: Database) -> None:
    with db.write() as s:
        job_store.insert_job(
            s, new_job("j1", state="SCHEDULED", center="zhongwei", planned_start=T0)
        )
    with db.write() as s:
        assert job_store.lease_candidates(s, "guian", T0, 8) == []
        assert not job_store.try_lease(s, "j1", "guian", 1.0)
        assert job_store.lease_candidates(s, "zhongwei", T0 - timedelta(minutes=1), 8) == []
        assert job_store.lease_candidates(s, "zhongwei", T0, 8) == ["j1"]


def test_log_retries_never_duplicate_text(db: Database) -> None:
    with db.write() as s:
        job, _ = job_store.insert_job(s, new_job("j1"))
        assert job_store.append_log(s, job, 1, 0, "hello\n") == 6
        assert job_store.append_log(s, job, 1, 0, "hello\n") == 0
        assert job_store.append_log(s, job, 1, 0, "hello\nworld\n") == 6
        assert job_store.append_log(s, job, 2, 0, "again ✓\n") == len("again ✓\n".encode())
    with db.read() as s:
        text, nxt = job_store.read_log(s, "j1", 0)
        assert text == "hello\nworld\nagain ✓\n"
        assert nxt == len(text.encode())
        tail, end = job_store.read_log(s, "j1", 6)
        assert tail == "world\nagain ✓\n" and end == nxt
        assert job_store.read_log(s, "j1", nxt) == ("", nxt)


def test_log_reads_never_split_a_character(db: Database) -> None:
    with db.write() as s:
        job, _ = job_store.insert_job(s, new_job("j1"))
        job_store.append_log(s, job, 1, 0, "ab✓cd")
    with db.read() as s:
        first, nxt = job_store.read_log(s, "j1", 0, limit=3)
        rest, end = job_store.read_log(s, "j1", nxt)
    assert first == "ab" and first + rest == "ab✓cd" and end == len("ab✓cd".encode())
