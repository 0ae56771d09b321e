"""API additions the dashboard reads: pinned submits, tenants list, link traffic, metered split."""

from __future__ import annotations

from tests.unit.server.conftest import Net, job_spec


def test_a_submit_pinned_to_a_center_runs_there_even_when_another_is_cheaper(net: Net) -> None:
    for cid in ("shanghai", "zhongwei", "guian"):
        net.register(cid)
    r = net.client.post(
        "/api/v1/jobs",
        json={"spec": job_spec(chips={"count": 2}), "pin_center": "shanghai"},
        headers=net.user(),
    )
    assert r.status_code == 201, r.text
    net.tick()
    job = net.job(r.json()["id"])
    assert job["center"] == "shanghai"
    assert job["spec"]["center"] == "shanghai"


def test_a_pin_to_an_unknown_center_is_a_422_naming_pin_center(net: Net) -> None:
    r = net.client.post(
        "/api/v1/jobs",
        json={"spec": job_spec(), "pin_center": "atlantis"},
        headers=net.user(),
    )
    assert r.status_code == 422
    assert r.json()["field"] == "pin_center"
    assert net.client.get("/api/v1/jobs", headers=net.user()).json() == []


def test_a_pin_to_a_center_without_the_stack_stays_pending_with_the_reason(net: Net) -> None:
    net.register("chongqing")
    r = net.submit(job_spec(center="chongqing"))
    net.tick()
    job = net.job(r.json()["id"])
    assert job["state"] == "PENDING"
    assert any("pinned to chongqing" in x for x in job["reasons"])


def test_admins_list_tenants_and_users_may_not(net: Net) -> None:
    net.user("ann", "acme")
    net.user("bob", "globex")
    r = net.client.get("/api/v1/admin/tenants", headers=net.admin)
    assert r.status_code == 200
    assert {t["name"] for t in r.json()} >= {"acme", "globex"}
    assert net.client.get("/api/v1/admin/tenants", headers=net.user()).status_code == 403


def test_network_view_shows_staging_traffic_on_the_link(net: Net) -> None:
    net.register("shanghai")
    net.register("zhongwei")
    r = net.client.post(
        "/api/v1/datasets",
        json={
            "id": "corpus",
            "center": "shanghai",
            "size_bytes": 10_000_000,
            "sha256": "a" * 64,
        },
        headers=net.user(),
    )
    assert r.status_code == 201, r.text
    job_id = net.submit(job_spec(inputs=["corpus"], chips={"count": 2, "types": ["H100"]})).json()[
        "id"
    ]
    net.tick()
    (leased,) = net.lease("zhongwei")
    assert net.report("zhongwei", job_id, leased["attempt"], "STAGING").status_code == 200
    view = net.client.get("/api/v1/network", headers=net.user()).json()
    (t,) = view["transfers"]
    assert (t["from"], t["to"], t["job_id"]) == ("shanghai", "zhongwei", job_id)
    assert t["gbps"] > 0
    link = next(x for x in view["links"] if {x["a"], x["b"]} == {"shanghai", "zhongwei"})
    assert link["traffic_gbps"] == t["gbps"] and link["transfers"] == 1
    quiet = next(x for x in view["links"] if {x["a"], x["b"]} == {"guian", "chongqing"})
    assert quiet["traffic_gbps"] == 0
    # Another tenant sees the route and the rate, not whose job or which dataset; an admin all.
    other = net.client.get("/api/v1/network", headers=net.user("bo", "rival")).json()
    (o,) = other["transfers"]
    assert (o["from"], o["to"], o["gbps"]) == ("shanghai", "zhongwei", t["gbps"])
    assert o["job_id"] is None and o["dataset"] is None
    assert job_id not in str(other) and "corpus" not in str(other)
    (a,) = net.client.get("/api/v1/network", headers=net.admin).json()["transfers"]
    assert (a["job_id"], a["dataset"]) == (job_id, "corpus")
