"""Per-tenant limits: submissions per second and pending jobs, 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from computenet.model import limits
from computenet.server.limits import OVERRIDES_TTL_S, set_tenant_limits
from computenet.store.schema import AuditRow, JobRow
from tests.unit.server.conftest import EPOCH, Net, job_spec, make_net


@pytest.fixture
def strict(db_url: str) -> Iterator[Net]:
    """A plane whose tenants may submit 2 jobs a second and keep 3 pending."""
    yield from make_net(db_url, submits_per_s=2.0, max_pending_jobs=3)


def stored(net: Net, tenant: str = "acme") -> int:
    with net.plane.db.read() as s:
        return s.query(JobRow).filter(JobRow.tenant_id == tenant).count()


def test_submitting_faster_than_the_rate_is_429_with_retry_after(strict: Net) -> None:
    codes = [strict.submit(job_spec()).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    r = strict.submit(job_spec())
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["field"] == "submits_per_s" and r.json()["hint"]
    assert stored(strict) == 2
    strict.time.advance(1.0)  # the bucket refills at 2 a second
    assert strict.submit(job_spec()).status_code == 201


def test_one_tenants_rate_does_not_limit_another(strict: Net) -> None:
    for _ in range(3):
        strict.submit(job_spec())
    assert strict.submit(job_spec(), strict.user("bob", "beta")).status_code == 201


def test_pending_jobs_over_the_cap_are_429_naming_the_limit(strict: Net) -> None:
    codes = []
    for _ in range(4):
        codes.append(strict.submit(job_spec(), key=f"k{len(codes)}").status_code)
        strict.time.advance(1.0)
    assert codes == [201, 201, 201, 429]
    r = strict.submit(job_spec())
    assert r.status_code == 429 and r.json()["field"] == "max_pending_jobs"
    assert "Retry-After" in r.headers
    assert stored(strict) == 3
    # A repeat of a seen idempotency key still gets its job, even at the cap.
    strict.time.advance(1.0)
    assert strict.submit(job_spec(), key="k0").status_code == 200


def test_a_cancelled_job_frees_its_place_under_the_cap(strict: Net) -> None:
    ids = []
    for _ in range(3):
        ids.append(strict.submit(job_spec()).json()["id"])
        strict.time.advance(1.0)
    strict.client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=strict.user())
    strict.time.advance(1.5)  # the cached pending count is re-read after a second
    assert strict.submit(job_spec()).status_code == 201


def test_an_admin_override_applies_to_that_tenant_and_is_audited(strict: Net) -> None:
    strict.user("bob", "beta")
    set_tenant_limits(
        strict.plane.db, "beta", submits_per_s=100.0, max_pending_jobs=50, actor="root", now=EPOCH
    )
    strict.time.advance(OVERRIDES_TTL_S + 1)  # the server re-reads overrides every few seconds
    codes = [strict.submit(job_spec(), strict.user("bob", "beta")).status_code for _ in range(10)]
    assert codes == [201] * 10
    with strict.plane.db.read() as s:
        audit = s.query(AuditRow).filter(AuditRow.action == "tenant.limits").one()
    assert audit.target == "tenant:beta" and audit.actor == "root"
    assert audit.detail == {"max_pending_jobs": 50, "submits_per_s": 100.0}


def test_zero_means_no_limit(db_url: str) -> None:
    for net in make_net(db_url, submits_per_s=0.0, max_pending_jobs=0):
        codes = {net.submit(job_spec()).status_code for _ in range(30)}
        assert codes == {201}


def test_a_jobs_log_is_cut_at_its_bound_and_says_so(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "MAX_JOB_LOG_BYTES", 1000)
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips={"count": 1})).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    offset = 0
    for _ in range(5):
        text = "x" * 299 + "\n"
        r = net.client.post(
            f"/center/v1/jobs/{job_id}/logs",
            json={"attempt": attempt, "offset": offset, "text": text},
            headers=net.center("zhongwei"),
        )
        assert r.status_code == 200, r.text
        offset += len(text)
    log = net.client.get(f"/api/v1/jobs/{job_id}/logs", headers=net.user()).json()
    assert len(log["text"].encode()) <= 1000
    assert log["text"].endswith("[cnet: log cut at 1000 bytes]\n")
    assert log["text"].startswith("x" * 299 + "\n" + "x" * 299)
