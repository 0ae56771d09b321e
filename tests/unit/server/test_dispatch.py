"""Scheduling loop, dispatcher and reconciler: placements, leases, loss, cancel, staging."""

from __future__ import annotations

import threading

from computenet.protocol.tickets import ticket_problem
from computenet.server import dispatcher
from computenet.store.centers import get_center
from tests.unit.server.conftest import LEASE_TIMEOUT_S, Net, job_spec

H100 = {"count": 2, "types": ["H100"]}


def test_a_job_stays_pending_with_reasons_while_no_center_is_online(net: Net) -> None:
    job_id = net.submit(job_spec()).json()["id"]
    net.tick()
    job = net.job(job_id)
    assert job["state"] == "PENDING"
    assert job["reasons"] and job["reasons"] != ["waiting for the next scheduling cycle"]


def test_the_cycle_places_a_job_at_an_online_center(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    assert net.tick().scheduled == 1
    job = net.job(job_id)
    assert job["state"] == "SCHEDULED"
    assert job["center"] == "zhongwei" and job["chip"] == "H100"
    assert job["placement"]["center"] == "zhongwei"
    assert job["reasons"] and job["estimated_cny"] is not None
    assert [e["state"] for e in job["events"]] == ["PENDING", "SCHEDULED"]


def test_a_job_is_leased_only_by_its_center_and_only_once(net: Net) -> None:
    net.register("zhongwei")
    net.register("guian")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    assert net.lease("guian") == []
    (leased,) = net.lease("zhongwei")
    assert leased["job_id"] == job_id and leased["attempt"] == 1
    assert leased["planned_run_s"] > 0
    assert net.lease("zhongwei") == []


def test_concurrent_leases_hand_out_a_job_once(net: Net) -> None:
    net.register("zhongwei")
    ids = [net.submit(job_spec(chips=H100)).json()["id"] for _ in range(3)]
    net.tick()
    got: list[str] = []
    lock = threading.Lock()

    def agent() -> None:
        reply = dispatcher.lease(net.plane, "zhongwei", 8)
        with lock:
            got.extend(j.job_id for j in reply.jobs)

    threads = [threading.Thread(target=agent) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)


def test_a_lost_center_returns_its_jobs_to_pending_and_they_run_elsewhere(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    job_id = net.submit(job_spec(chips={"count": 2, "stack": "cuda"})).json()["id"]
    net.tick()
    first = net.job(job_id)["center"]
    other = "shanghai" if first == "zhongwei" else "zhongwei"
    attempt = net.run_to_running(first, job_id)
    # The first center goes silent; the other keeps heartbeating.
    for _ in range(3):
        net.time.advance(LEASE_TIMEOUT_S / 2)
        net.heartbeat(other)
    report = net.tick()
    assert report.requeued == 1
    job = net.job(job_id)
    assert job["state"] in ("PENDING", "SCHEDULED")
    assert job["attempts"] == attempt
    assert any("lost at " + first in e["message"] for e in job["events"])
    assert job["center"] == other
    # It is never leased back to the lost center, and the old holder's reports are refused.
    assert net.lease(first) == []
    r = net.report(first, job_id, attempt, "SUCCEEDED", exit_code=0)
    assert r.status_code == 409 and r.json()["field"] == "attempt"
    assert net.heartbeat(first, running=[job_id])["cancel"] == [job_id]
    (leased,) = net.lease(other)
    assert leased["attempt"] == attempt + 1
    net.report(other, job_id, attempt + 1, "RUNNING")
    assert net.report(other, job_id, attempt + 1, "SUCCEEDED", exit_code=0).status_code == 200
    assert net.job(job_id)["state"] == "SUCCEEDED"


def test_a_job_planned_at_a_center_that_goes_offline_is_replanned(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    assert net.job(job_id)["state"] == "SCHEDULED"
    net.time.advance(LEASE_TIMEOUT_S + 1)
    net.tick()
    job = net.job(job_id)
    assert job["state"] == "PENDING"
    assert "re-planning" in job["events"][-1]["message"]


def test_reports_out_of_order_are_rejected_and_change_nothing(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    (leased,) = net.lease("zhongwei")
    r = net.report("zhongwei", job_id, leased["attempt"], "SUCCEEDED", exit_code=0)
    assert r.status_code == 409 and r.json()["field"] == "state"
    assert net.job(job_id)["state"] == "SCHEDULED"
    net.report("zhongwei", job_id, 1, "RUNNING")
    assert net.report("zhongwei", job_id, 1, "RUNNING").status_code == 200  # a retry
    net.report("zhongwei", job_id, 1, "FAILED", exit_code=3)
    r = net.report("zhongwei", job_id, 1, "RUNNING")
    assert r.status_code == 409
    job = net.job(job_id)
    assert job["state"] == "FAILED" and job["exit_code"] == 3


def test_reports_from_another_center_are_409(net: Net) -> None:
    net.register("zhongwei")
    net.register("guian")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.tick()
    net.lease("zhongwei")
    r = net.report("guian", job_id, 1, "RUNNING")
    assert r.status_code == 409
    logs = net.client.post(
        f"/center/v1/jobs/{job_id}/logs",
        json={"attempt": 1, "offset": 0, "text": "forged"},
        headers=net.center("guian"),
    )
    assert logs.status_code == 409
    assert net.job(job_id)["state"] == "SCHEDULED"


def test_a_heartbeat_listing_an_unknown_job_is_told_to_cancel_it(net: Net) -> None:
    net.register("zhongwei")
    assert net.heartbeat("zhongwei", running=["j-ghost"])["cancel"] == ["j-ghost"]


def test_cancel_of_a_pending_job_is_immediate(net: Net) -> None:
    job_id = net.submit(job_spec()).json()["id"]
    r = net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=net.user())
    assert r.status_code == 200 and r.json()["state"] == "CANCELLED"
    again = net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=net.user())
    assert again.status_code == 200
    net.register("zhongwei")
    net.tick()
    assert net.job(job_id)["state"] == "CANCELLED"


def test_cancel_of_a_running_job_goes_through_its_center(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    r = net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=net.user())
    assert r.status_code == 200 and r.json()["state"] == "RUNNING"
    assert net.heartbeat("zhongwei", running=[job_id])["cancel"] == [job_id]
    # The agent kills it; a non-zero exit of a cancelled job ends CANCELLED.
    net.report("zhongwei", job_id, attempt, "FAILED", exit_code=-15)
    assert net.job(job_id)["state"] == "CANCELLED"


def test_a_finished_job_cannot_be_cancelled(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    net.report("zhongwei", job_id, attempt, "SUCCEEDED", exit_code=0)
    r = net.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=net.user())
    assert r.status_code == 409


def test_a_job_the_agent_stops_listing_is_requeued(net: Net) -> None:
    net.register("zhongwei")
    net.register("shanghai")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    net.run_to_running("zhongwei", job_id)
    net.heartbeat("zhongwei", running=[job_id])
    net.heartbeat("zhongwei", running=[])  # e.g. the agent restarted and lost it
    for _ in range(3):
        net.time.advance(LEASE_TIMEOUT_S / 2)
        net.heartbeat("zhongwei", running=[])
        net.heartbeat("shanghai")
    net.tick()
    job = net.job(job_id)
    assert job["state"] in ("PENDING", "SCHEDULED")
    assert "no longer reports it" in " ".join(e["message"] for e in job["events"])


def test_logs_flow_from_the_holder_to_the_user(net: Net) -> None:
    net.register("zhongwei")
    job_id = net.submit(job_spec(chips=H100)).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    for text in ("step 1\n", "step 1\nstep 2\n"):
        r = net.client.post(
            f"/center/v1/jobs/{job_id}/logs",
            json={"attempt": attempt, "offset": 0, "text": text},
            headers=net.center("zhongwei"),
        )
        assert r.status_code == 200
    chunk = net.client.get(f"/api/v1/jobs/{job_id}/logs", headers=net.user()).json()
    assert chunk["text"] == "step 1\nstep 2\n" and not chunk["complete"]
    net.report("zhongwei", job_id, attempt, "SUCCEEDED", exit_code=0)
    done = net.client.get(
        f"/api/v1/jobs/{job_id}/logs?offset={chunk['next_offset']}", headers=net.user()
    ).json()
    assert done["text"] == "" and done["complete"]


DATA = {
    "id": "corpus",
    "center": "shanghai",
    "path": "tenants/acme/corpus.bin",
    "size_bytes": 1_000_000,
    "sha256": "ab" * 32,
}


def test_a_job_away_from_its_data_gets_sources_with_valid_tickets(net: Net) -> None:
    net.register("shanghai", data_url="http://127.0.0.1:7001")
    net.register("zhongwei", data_url="http://127.0.0.1:7002")
    assert net.client.post("/api/v1/datasets", json=DATA, headers=net.user()).status_code == 201
    job_id = net.submit(job_spec(chips=H100, inputs=["corpus"])).json()["id"]
    net.tick()
    (leased,) = net.lease("zhongwei")
    (inp,) = leased["inputs"]
    assert inp["local_path"] is None and inp["sha256"] == DATA["sha256"]
    (src,) = inp["sources"]
    assert src["center"] == "shanghai"
    path = DATA["path"]
    assert src["url"] == "http://127.0.0.1:7001/data/corpus?path=tenants%2Facme%2Fcorpus.bin"
    assert src["bandwidth_gbps"] > 0 and src["latency_ms"] > 0
    assert inp["dest_path"] == "tenants/acme/corpus"
    with net.plane.db.read() as s:
        key = get_center(s, "shanghai").data_key  # type: ignore[union-attr]

    def problem(
        k: str = key, dataset: str = "corpus", p: str = path, center: str = "zhongwei"
    ) -> str | None:
        return ticket_problem(
            k, src["ticket"], dataset=dataset, path=p, center=center, now_unix=net.time()
        )

    # The ticket lets zhongwei fetch this dataset at its registered path, and nothing else.
    assert problem() is None
    assert problem(p="tenants/acme/../other/x") is not None
    assert problem(dataset="other") is not None
    assert problem(center="guian") is not None
    assert problem(k="wrong") is not None
    # Short-lived: the default lifetime is five minutes of real time.
    expires = int(src["ticket"].split(".")[2])
    assert expires - net.time() <= 300
    assert job_id == leased["job_id"]


def test_a_job_at_its_data_gets_the_local_path(net: Net) -> None:
    net.register("shanghai")
    net.client.post("/api/v1/datasets", json=DATA, headers=net.user())
    net.submit(job_spec(chips={"count": 1, "types": ["A100"]}, inputs=["corpus"]))
    net.tick()
    (leased,) = net.lease("shanghai")
    assert leased["inputs"][0]["local_path"] == "tenants/acme/corpus.bin"
    assert leased["inputs"][0]["sources"] == []


def test_a_verified_replica_is_recorded_and_a_corrupt_one_refused(net: Net) -> None:
    net.register("zhongwei")
    net.client.post("/api/v1/datasets", json=DATA, headers=net.user())
    url = "/center/v1/datasets/corpus/replicas"
    here = "tenants/acme/corpus"
    bad = net.client.post(
        url, json={"path": here, "sha256": "cd" * 32}, headers=net.center("zhongwei")
    )
    assert bad.status_code == 422 and bad.json()["field"] == "sha256"
    outside = net.client.post(
        url, json={"path": "tenants/rival/c", "sha256": DATA["sha256"]},
        headers=net.center("zhongwei"),
    )  # fmt: skip
    assert outside.status_code == 422 and outside.json()["field"] == "path"
    ok = net.client.post(
        url, json={"path": here, "sha256": DATA["sha256"]}, headers=net.center("zhongwei")
    )
    assert ok.status_code == 200
    (ds,) = net.client.get("/api/v1/datasets", headers=net.user()).json()
    assert {r["center"] for r in ds["replicas"]} == {"shanghai", "zhongwei"}


def test_centers_and_network_views_show_live_state(net: Net) -> None:
    net.register("zhongwei")
    centers = {c["id"]: c for c in net.client.get("/api/v1/centers", headers=net.user()).json()}
    assert centers["zhongwei"]["online"] and not centers["guian"]["online"]
    assert len(centers["zhongwei"]["tariff_hourly"]) == 24
    network = net.client.get("/api/v1/network", headers=net.user()).json()
    assert network["name"] == "demo" and network["time_scale"] == 600
    assert network["now"].startswith("2026-11-02T10:00")
    assert len(network["links"]) >= 4
