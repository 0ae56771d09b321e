"""Tenancy in the store: quotas set, replaced and cleared, checked input, and each tenant's use
(chips in use, CU·h and ¥ this period, decayed fair-share usage) measured from jobs and charges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from computenet.errors import NotFoundError, ValidationError
from computenet.server import admin
from computenet.store import Database, upgrade_db
from computenet.store.quotas import check_quota, set_quota, several_pending_tenants, tenant_uses
from computenet.store.schema import ChargeRow, JobRow

NOW = datetime(2026, 12, 15, 4, 0, tzinfo=UTC)  # 12:00 CST


def _job(jid: str, tenant: str, state: str, chip: str, chips: int, cuh: float) -> JobRow:
    return JobRow(
        id=jid, tenant_id=tenant, name=jid, workload_class="llm-train", state=state, spec={},
        submitted_at=NOW, priority=0, reasons=[], chip=chip, chips=chips, center="c",
        placement={"cu_hours": cuh}, estimated_cny=Decimal("5.00"), avoid_centers=[], usage={},
    )  # fmt: skip


def _charge(jid: str, tenant: str, finished: datetime, cuh: float, cny: str) -> ChargeRow:
    z = Decimal(0)
    return ChargeRow(
        job_id=jid, tenant_id=tenant, period=finished.strftime("%Y-%m"), job_name=jid,
        center="c", chip="H100", chips=1, started_at=finished, finished_at=finished,
        chip_hours=cuh, cu_hours=cuh, kwh=0.0, co2_kg=0.0, energy_cny=z, service_cny=z,
        transfer_cny=z, total_cny=Decimal(cny),
    )  # fmt: skip


def test_quota_input_is_checked_naming_the_option() -> None:
    for args, field in (
        (("gpus", 1, None, None), "--kind"),
        (("chips", -1, None, None), "--limit"),
        (("chips", "x", None, None), "--limit"),
        (("chips", 1.5, None, None), "--limit"),
        (("chips", 4, None, "day"), "--period"),
        (("cu_hours", 4, None, None), "--period"),
        (("cny", 4, "H100", "day"), "--chip"),
    ):
        with pytest.raises(ValidationError) as err:
            check_quota(*args)  # type: ignore[arg-type]
        assert err.value.field == field, args
    assert check_quota("cny", "99.999", None, "month").limit == Decimal("100.00")


def test_set_replaces_list_shows_clear_removes_and_all_are_audited(db_url: str) -> None:
    admin.create_tenant(db_url, "acme")
    admin.set_quota(db_url, "acme", "chips", 16, chip="H100", actor="t")
    admin.set_quota(db_url, "acme", "chips", 8, chip="H100", actor="t")  # replaces
    admin.set_quota(db_url, "acme", "cu_hours", 500, period="day", actor="t")
    views = admin.list_quotas(db_url, "acme")
    assert [(q.kind, q.chip, q.limit) for q in views] == [
        ("chips", "H100", Decimal(8)),
        ("cu_hours", None, Decimal(500)),
    ]
    assert admin.clear_quotas(db_url, "acme", kind="chips", actor="t") == 1
    assert len(admin.list_quotas(db_url, "acme")) == 1
    actions = [e.action for e in admin.audit_log(db_url).entries]
    assert actions.count("quota.set") == 3 and "quota.clear" in actions
    with pytest.raises(NotFoundError):
        admin.set_quota(db_url, "nobody", "chips", 1)
    view = admin.set_tenant_share(db_url, "acme", weight=2.5, priority_ceiling=4, actor="t")
    assert (view.weight, view.priority_ceiling) == (2.5, 4)
    assert admin.set_tenant_share(db_url, "acme", priority_ceiling=-1).priority_ceiling is None
    with pytest.raises(ValidationError) as err:
        admin.set_tenant_share(db_url, "acme", priority_ceiling=11)
    assert err.value.field == "--priority-ceiling"


def test_use_counts_active_chips_period_spend_and_decayed_usage(db_url: str) -> None:
    upgrade_db(db_url)
    admin.create_tenant(db_url, "acme")
    admin.create_tenant(db_url, "beta")
    admin.set_tenant_share(db_url, "beta", weight=3.0)
    db = Database(db_url)
    try:
        with db.write() as s:
            s.add(_job("j1", "acme", "RUNNING", "H100", 8, 20.0))
            s.add(_job("j2", "acme", "SCHEDULED", "H100", 4, 10.0))
            s.add(_job("j3", "acme", "SUCCEEDED", "H100", 8, 10.0))  # ended: holds nothing
            s.add(_job("j4", "acme", "PENDING", "A100", 4, 10.0))
            s.add(_job("j5", "acme", "SUCCEEDED", "H100", 1, 1.0))
            s.add(_job("j6", "acme", "SUCCEEDED", "H100", 1, 1.0))
            s.flush()
            s.add(_charge("j5", "acme", NOW - timedelta(hours=1), 30.0, "12.50"))  # today
            s.add(_charge("j6", "acme", NOW - timedelta(days=7), 40.0, "7.50"))  # this month
            set_quota(s, "acme", check_quota("chips", 16, "H100", None), NOW)
        with db.read() as s:
            uses = tenant_uses(s, NOW)
            quota_only = tenant_uses(s, NOW, fair_share=False)
    finally:
        db.dispose()
    acme = uses["acme"]
    assert dict(acme.chips) == {"H100": 12}
    assert acme.cu_hours["day"] == pytest.approx(60.0)  # active 30 + charged today 30
    assert acme.cu_hours["month"] == pytest.approx(100.0)
    assert acme.cny["day"] == Decimal("22.50") and acme.cny["month"] == Decimal("30.00")
    assert acme.usage == pytest.approx(30.0 + 30.0 * 0.5 ** (1 / 168) + 20.0)  # 40 decayed ×½
    assert uses["beta"].weight == 3.0 and uses["beta"].usage == 0.0
    assert set(quota_only) == {"acme"}  # without fair share only tenants with quotas


def test_several_pending_tenants_is_true_only_with_two(db_url: str) -> None:
    upgrade_db(db_url)
    for t in ("acme", "beta"):
        admin.create_tenant(db_url, t)
    db = Database(db_url)
    try:
        with db.read() as s:
            assert not several_pending_tenants(s)
        with db.write() as s:
            s.add(_job("p1", "acme", "PENDING", "H100", 1, 1.0))
            s.add(_job("p2", "acme", "PENDING", "H100", 1, 1.0))
            s.add(_job("r1", "beta", "RUNNING", "H100", 1, 1.0))
        with db.read() as s:
            assert not several_pending_tenants(s)
        with db.write() as s:
            s.add(_job("p3", "beta", "PENDING", "H100", 1, 1.0))
        with db.read() as s:
            assert several_pending_tenants(s)
    finally:
        db.dispose()
