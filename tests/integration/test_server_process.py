"""The real server process on 127.0.0.1, driven over HTTP by a user and two hand-rolled agents."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.processes import start_server, stop_process

pytestmark = pytest.mark.integration

SPEC = {
    "name": "train",
    "class": "llm-train",
    "command": "echo hi",
    "chips": {"count": 2, "stack": "cuda"},
    "work": {"cu_hours": 1},
}


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[tuple[str, str]]:
    url, admin, proc = start_server(
        tmp_path,
        "demo",
        db=db_url,
        cycle_interval=0.2,
        heartbeat_interval=0.3,
        lease_timeout=2.0,
        # These tests are about leases and fencing, not price holds: at 600x the default
        # 4 h patience is 24 s real, longer than their waits, so no job is held for power.
        extra_args=("--patience", "0"),
    )
    try:
        yield url, admin
    finally:
        stop_process(proc)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def until(
    what: str,
    check: Callable[[], Any],
    timeout: float = 20.0,
    tick: Callable[[], None] | None = None,
) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_job_survives_its_center_going_silent_over_real_http(server: tuple[str, str]) -> None:
    url, admin = server
    with httpx.Client(base_url=url, timeout=10) as http:
        assert (
            http.post(
                "/api/v1/admin/tenants", json={"name": "acme"}, headers=bearer(admin)
            ).status_code
            == 201
        )
        user = http.post(
            "/api/v1/admin/users", json={"name": "ann", "tenant": "acme"}, headers=bearer(admin)
        ).json()["token"]
        agents = {
            cid: http.post(f"/api/v1/admin/centers/{cid}/token", headers=bearer(admin)).json()[
                "token"
            ]
            for cid in ("zhongwei", "shanghai")
        }
        for cid, tok in agents.items():
            r = http.post(
                "/center/v1/register",
                json={"center_id": cid, "data_url": f"http://127.0.0.1:9/{cid}"},
                headers=bearer(tok),
            )
            assert r.status_code == 200 and r.json()["time_scale"] == 600

        alive = set(agents)

        def beat() -> None:
            for cid in alive:
                http.post(
                    "/center/v1/heartbeat", json={"center_id": cid}, headers=bearer(agents[cid])
                )

        first = http.post(
            "/api/v1/jobs", json={"spec": SPEC, "idempotency_key": "once"}, headers=bearer(user)
        )
        again = http.post(
            "/api/v1/jobs", json={"spec": SPEC, "idempotency_key": "once"}, headers=bearer(user)
        )
        assert (first.status_code, again.status_code) == (201, 200)
        job_id = first.json()["id"]
        assert again.json()["id"] == job_id

        def job() -> dict[str, Any]:
            return dict(http.get(f"/api/v1/jobs/{job_id}", headers=bearer(user)).json())

        placed = until(
            "the loop to schedule the job",
            lambda: job()["state"] == "SCHEDULED" and job(),
            tick=beat,
        )
        center = placed["center"]
        other = ({"zhongwei", "shanghai"} - {center}).pop()

        def lease(cid: str) -> list[dict[str, Any]]:
            r = http.post("/center/v1/lease", json={"center_id": cid}, headers=bearer(agents[cid]))
            return list(r.json()["jobs"])

        (leased,) = until("a lease", lambda: lease(center), tick=beat)
        assert leased["attempt"] == 1
        status = f"/center/v1/jobs/{job_id}/status"
        assert (
            http.post(
                status, json={"attempt": 1, "state": "RUNNING"}, headers=bearer(agents[center])
            ).status_code
            == 200
        )

        # The holder goes silent: its lease expires and the job is placed at the other center.
        alive.discard(center)
        moved = until(
            "the job to move",
            lambda: (j := job())["center"] == other and j["state"] == "SCHEDULED" and j,
            tick=beat,
        )
        assert moved["attempts"] == 1
        (second,) = until("a second lease", lambda: lease(other), tick=beat)
        assert second["attempt"] == 2
        late = http.post(
            status,
            json={"attempt": 1, "state": "SUCCEEDED", "exit_code": 0},
            headers=bearer(agents[center]),
        )
        assert late.status_code == 409
        for state in ("RUNNING", "SUCCEEDED"):
            r = http.post(
                status,
                json={"attempt": 2, "state": state, "exit_code": 0},
                headers=bearer(agents[other]),
            )
            assert r.status_code == 200, r.text
        done = job()
        assert done["state"] == "SUCCEEDED" and done["center"] == other

        bob_admin = http.post(
            "/api/v1/admin/users",
            json={"name": "bob", "tenant": "acme", "role": "user"},
            headers=bearer(admin),
        )
        assert bob_admin.status_code == 201
        http.post("/api/v1/admin/tenants", json={"name": "beta"}, headers=bearer(admin))
        eve = http.post(
            "/api/v1/admin/users", json={"name": "eve", "tenant": "beta"}, headers=bearer(admin)
        ).json()["token"]
        assert http.get(f"/api/v1/jobs/{job_id}", headers=bearer(eve)).status_code == 404

        bill = http.get("/api/v1/bill", headers=bearer(user)).json()
        assert len(bill["lines"]) == 1 and bill["lines"][0]["center"] == other
        assert Decimal(bill["total_cny"]) == sum(Decimal(x["total_cny"]) for x in bill["lines"])


def test_bad_options_exit_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "computenet.server",
            "--db",
            str(tmp_path / "x.db"),
            "--network",
            str(tmp_path / "none.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "network" in proc.stderr
