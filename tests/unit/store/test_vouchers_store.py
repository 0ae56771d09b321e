"""Vouchers in the store: charges applied concurrently never spend one balance twice, and a
job metered again replaces its voucher lines (on SQLite, and on PostgreSQL in its test pass)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from computenet.store import Database, upgrade_db
from computenet.store import jobs as job_store
from computenet.store.accounts import create_tenant
from computenet.store.schema import VoucherRow
from computenet.store.vouchers import add_voucher, apply_to_charge, list_vouchers, uses_of
from tests.unit.store.test_repositories import T0, new_job

AT = T0 + timedelta(hours=1)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    upgrade_db(db_url)
    database = Database(db_url)
    with database.write() as s:
        create_tenant(s, "acme", T0)
        for i in range(12):
            job_store.insert_job(s, new_job(f"j{i}"))
        add_voucher(
            s,
            VoucherRow(
                tenant_id="acme",
                issuer="Shanghai",
                pct=Decimal("50"),
                cap_cny=Decimal("25.00"),
                used_cny=Decimal("0.00"),
                centers=[],
                classes=[],
                valid_from=T0,
                valid_until=T0 + timedelta(days=1),
                issued_at=T0,
                issued_by="test",
            ),
        )
    yield database
    database.dispose()


def charge(db: Database, job: str, cny: str) -> Decimal:
    with db.write() as s:
        return apply_to_charge(s, job, "acme", Decimal(cny), "c", "llm-train", AT).subsidy_cny


def test_concurrent_charges_stop_exactly_at_the_cap(db: Database) -> None:
    got: list[Decimal] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            got.append(charge(db, f"j{i}", "10.00"))  # each would take ¥5.00
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(got, Decimal(0)) == Decimal("25.00")
    assert sorted(got).count(Decimal("5.00")) == 5
    with db.read() as s:
        (v,) = list_vouchers(s, "acme")
        lines = uses_of(s, [f"j{i}" for i in range(12)])
    assert v.used_cny == Decimal("25.00")
    assert sum((u.amount_cny for us in lines.values() for u in us), Decimal(0)) == v.used_cny


def test_a_job_metered_again_replaces_its_lines(db: Database) -> None:
    assert charge(db, "j0", "10.00") == Decimal("5.00")
    assert charge(db, "j0", "10.00") == Decimal("5.00")  # the same report again
    assert charge(db, "j0", "30.00") == Decimal("15.00")  # a later, larger metering
    assert charge(db, "j1", "100.00") == Decimal("10.00")  # what is left of the cap
    assert charge(db, "j0", "4.00") == Decimal("2.00")  # j0 shrinks: its share comes back
    with db.read() as s:
        (v,) = list_vouchers(s, "acme")
        lines = uses_of(s, ["j0", "j1"])
    assert [u.amount_cny for u in lines["j0"]] == [Decimal("2.00")]
    assert v.used_cny == Decimal("12.00")
