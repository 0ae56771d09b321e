"""The leader lease row, on SQLite and on PostgreSQL: contenders, expiry, epochs, fencing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.store import Database, upgrade_db
from computenet.store import leader as lease
from tests.helpers.pg import fresh_pg_database

T = 5.0
ROLE = lease.CONTROL_LOOP


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of each kind (PostgreSQL: a fresh database of its own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lease.db'}"
        upgrade_db(url)
        d = Database(url)
        yield d
        d.dispose()
        return
    with fresh_pg_database() as url:
        upgrade_db(url)
        d = Database(url)
        yield d
        d.dispose()


def acquire(db: Database, holder: str, now: float, epoch: int | None = None) -> lease.Lease:
    with db.write() as s:
        return lease.acquire(s, ROLE, holder, now, T, epoch=epoch)


def holds(db: Database, holder: str, epoch: int) -> bool:
    with db.write() as s:
        return bool(lease.holds(s, ROLE, holder, epoch))


def test_the_first_contender_leads_and_the_second_waits_for_expiry(db: Database) -> None:
    a = acquire(db, "a", 100.0)
    assert (a.holder, a.epoch, a.expires_real) == ("a", 1, 105.0)
    assert acquire(db, "b", 101.0).holder == "a"
    # Renewing in the same term keeps the epoch and moves the expiry.
    again = acquire(db, "a", 103.0, epoch=1)
    assert (again.holder, again.epoch, again.expires_real) == ("a", 1, 108.0)
    assert acquire(db, "b", 107.9).holder == "a"
    b = acquire(db, "b", 108.1)
    assert (b.holder, b.epoch, b.acquired_real) == ("b", 2, 108.1)


def test_a_deposed_leader_can_neither_renew_nor_pass_the_fence(db: Database) -> None:
    acquire(db, "a", 100.0)
    acquire(db, "b", 106.0)  # a's lease ran out while it was paused
    assert holds(db, "b", 2)
    assert not holds(db, "a", 1)
    # Waking up, a tries to renew its old term: b keeps the lease.
    seen = acquire(db, "a", 106.5, epoch=1)
    assert (seen.holder, seen.epoch) == ("b", 2)
    assert not holds(db, "a", 1)


def test_a_holder_that_lost_track_of_its_term_starts_a_new_epoch(db: Database) -> None:
    acquire(db, "a", 100.0)
    again = acquire(db, "a", 101.0, epoch=None)
    assert (again.holder, again.epoch) == ("a", 2)
    assert not holds(db, "a", 1) and holds(db, "a", 2)


def test_a_released_lease_is_taken_at_once_with_a_higher_epoch(db: Database) -> None:
    acquire(db, "a", 100.0)
    with db.write() as s:
        assert not lease.release(s, ROLE, "a", 7)  # not a's epoch: nothing released
        assert lease.release(s, ROLE, "a", 1)
    b = acquire(db, "b", 100.5)
    assert (b.holder, b.epoch) == ("b", 2)
    with db.read() as s:
        now = lease.current(s)
    assert now is not None and now.held_by("b", 101.0) and not now.held_by("a", 101.0)


def test_a_holder_known_to_be_gone_is_replaced_before_expiry(db: Database) -> None:
    acquire(db, "a", 100.0)
    with db.write() as s:
        b = lease.acquire(s, ROLE, "b", 101.0, T, gone=lambda h: h == "a")
    assert (b.holder, b.epoch) == ("b", 2)


def test_contenders_racing_for_a_new_lease_elect_exactly_one(db: Database) -> None:
    winners: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def contend(name: str) -> None:
        try:
            start.wait()
            got = acquire(db, name, 100.0)
            if got.holder == name:
                winners.append(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(winners) == 1
    with db.read() as s:
        row = lease.current(s)
    assert row is not None and row.holder == winners[0] and row.epoch == 1


def test_replicas_started_together_on_an_empty_postgres_migrate_it_once() -> None:
    from computenet.store import current_revision

    with fresh_pg_database() as url:
        errors: list[BaseException] = []

        def migrate() -> None:
            try:
                upgrade_db(url)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=migrate) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert current_revision(url) is not None
