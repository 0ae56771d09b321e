"""Submitting jobs: validation that names the field and stores nothing, idempotency, isolation."""

from __future__ import annotations

from typing import Any

import pytest

from computenet.store import jobs as job_store
from tests.unit.server.conftest import Net, job_spec


def stored_jobs(net: Net) -> int:
    with net.plane.db.read() as s:
        return len(job_store.list_jobs(s, limit=10_000))


def test_a_valid_job_is_stored_pending(net: Net) -> None:
    r = net.submit(job_spec(deadline="6h"))
    assert r.status_code == 201
    job = r.json()
    assert job["state"] == "PENDING" and job["tenant"] == "acme"
    assert job["deadline"].startswith("2026-11-02T16:00")
    assert net.job(job["id"])["events"][0]["state"] == "PENDING"


def test_the_same_idempotency_key_returns_the_same_job(net: Net) -> None:
    first = net.submit(job_spec(), key="run-42")
    second = net.submit(job_spec(name="other"), key="run-42")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert stored_jobs(net) == 1


def test_an_idempotency_key_is_per_tenant(net: Net) -> None:
    a = net.submit(job_spec(), net.user("ann", "acme"), key="k")
    b = net.submit(job_spec(), net.user("bob", "beta"), key="k")
    assert a.json()["id"] != b.json()["id"]
    assert stored_jobs(net) == 2


BAD: list[tuple[str, Any, str]] = [
    ("negative count", {"spec": job_spec(chips={"count": -1})}, "spec.chips.count"),
    (
        "unknown chip",
        {"spec": job_spec(chips={"count": 1, "types": ["X9"]})},
        "spec.chips.types[0]",
    ),
    ("past deadline", {"spec": job_spec(deadline="2020-01-01T00:00:00+08:00")}, "spec.deadline"),
    ("unknown class", {"spec": job_spec(**{"class": "quantum"})}, "spec.class"),
    ("unknown dataset", {"spec": job_spec(inputs=["nope"])}, "spec.inputs[0]"),
    (
        "missing command",
        {"spec": {k: v for k, v in job_spec().items() if k != "command"}},
        "spec.command",
    ),
    ("extra field", {"spec": job_spec(), "colour": "red"}, "colour"),
    ("no spec", {}, "spec"),
    ("bad duration", {"spec": job_spec(deadline="soon")}, "spec.deadline"),
]


@pytest.mark.parametrize(("what", "body", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_422_naming_the_field_and_stores_nothing(
    net: Net, what: str, body: Any, field: str
) -> None:
    r = net.client.post("/api/v1/jobs", json=body, headers=net.user())
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["field"] == field, err
    assert err["error"]
    assert stored_jobs(net) == 0


def test_a_malformed_body_is_422_and_stores_nothing(net: Net) -> None:
    r = net.client.post(
        "/api/v1/jobs",
        content=b'{"spec": {',
        headers={**net.user(), "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "body"
    assert "malformed JSON" in r.json()["error"]
    assert stored_jobs(net) == 0


def test_another_tenants_job_is_404_everywhere(net: Net) -> None:
    job_id = net.submit(job_spec(), net.user("ann", "acme")).json()["id"]
    bob = net.user("bob", "beta")
    for r in (
        net.client.get(f"/api/v1/jobs/{job_id}", headers=bob),
        net.client.get(f"/api/v1/jobs/{job_id}/logs", headers=bob),
        net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=bob),
    ):
        assert r.status_code == 404
        assert r.json()["field"] == "job_id"
    assert net.client.get("/api/v1/jobs", headers=bob).json() == []
    assert net.job(job_id, net.user("ann", "acme"))["state"] == "PENDING"


def test_an_admin_sees_every_tenants_jobs(net: Net) -> None:
    net.submit(job_spec(), net.user("ann", "acme"))
    net.submit(job_spec(), net.user("bob", "beta"))
    jobs = net.client.get("/api/v1/jobs", headers=net.admin).json()
    assert {j["tenant"] for j in jobs} == {"acme", "beta"}


def test_jobs_are_listed_newest_first_and_filtered_by_state(net: Net) -> None:
    a = net.submit(job_spec(name="a")).json()["id"]
    net.time.advance(1)
    b = net.submit(job_spec(name="b")).json()["id"]
    net.client.post(f"/api/v1/jobs/{a}/cancel", headers=net.user())
    listed = net.client.get("/api/v1/jobs", headers=net.user()).json()
    assert [j["id"] for j in listed] == [b, a]
    pending = net.client.get("/api/v1/jobs?state=PENDING", headers=net.user()).json()
    assert [j["id"] for j in pending] == [b]
    bad = net.client.get("/api/v1/jobs?state=NAPPING", headers=net.user())
    assert bad.status_code == 422 and bad.json()["field"] == "state"


def test_a_dataset_of_another_tenant_cannot_be_an_input(net: Net) -> None:
    r = net.client.post(
        "/api/v1/datasets",
        json={
            "id": "corpus",
            "center": "shanghai",
            "path": "tenants/beta/corpus.bin",
            "size_bytes": 10,
            "sha256": "0" * 64,
        },
        headers=net.user("bob", "beta"),
    )
    assert r.status_code == 201
    r = net.submit(job_spec(inputs=["corpus"]), net.user("ann", "acme"))
    assert r.status_code == 422 and r.json()["field"] == "spec.inputs[0]"
    assert net.client.get("/api/v1/datasets", headers=net.user("ann", "acme")).json() == []


def test_a_dataset_at_an_unknown_center_is_refused(net: Net) -> None:
    r = net.client.post(
        "/api/v1/datasets",
        json={"id": "d", "center": "mars", "path": "d", "size_bytes": 1, "sha256": "0" * 64},
        headers=net.user(),
    )
    assert r.status_code == 422 and r.json()["field"] == "center"


def test_a_quote_lists_options_and_stores_nothing(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    r = net.client.post("/api/v1/quote", json=job_spec(deadline="12h"), headers=net.user())
    assert r.status_code == 200, r.text
    options = r.json()["options"]
    assert {o["center"] for o in options} >= {"zhongwei"}
    assert sum(o["cheapest"] for o in options) == 1
    assert stored_jobs(net) == 0


def test_a_quote_with_bad_input_names_the_field(net: Net) -> None:
    r = net.client.post(
        "/api/v1/quote", json=job_spec(chips={"count": 1, "types": ["X9"]}), headers=net.user()
    )
    assert r.status_code == 422 and r.json()["field"] == "chips.types[0]"
