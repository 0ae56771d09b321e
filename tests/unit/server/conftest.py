"""A control plane under test: TestClient, a fake wall clock, tokens and agent helpers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from computenet.catalog import load_network
from computenet.model.center import CST
from computenet.server import Settings, create_app
from computenet.server.admin import bootstrap_admin, create_center_token, create_user
from computenet.server.plane import ControlPlane, TickReport

# A Monday, 10:00 in Shanghai.
EPOCH = datetime(2026, 11, 2, 10, 0, tzinfo=CST)
LEASE_TIMEOUT_S = 10.0


class FakeTime:
    """A wall clock that moves only when told to."""

    def __init__(self, t: float = 1_790_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        """Move real time forward."""
        self.t += seconds


def job_spec(**over: Any) -> dict[str, Any]:
    """A small valid job spec (JSON form), with fields replaced by `over`."""
    spec: dict[str, Any] = {
        "name": "train",
        "class": "llm-train",
        "command": "echo hi",
        "chips": {"count": 2},
        "work": {"cu_hours": 1},
    }
    spec.update(over)
    return spec


@dataclass
class Net:
    """The app, its plane, the fake clock and ready-made tokens."""

    client: TestClient
    plane: ControlPlane
    time: FakeTime
    db_url: str
    admin: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def user(self, name: str = "ann", tenant: str = "acme") -> dict[str, str]:
        """Headers of a user of `tenant` (created on first use)."""
        key = f"user:{tenant}:{name}"
        if key not in self.tokens:
            tok = create_user(self.plane.db, name, tenant, create_tenant_if_missing=True)
            self.tokens[key] = tok.token
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def center(self, cid: str) -> dict[str, str]:
        """Headers of the agent of center `cid`."""
        key = f"center:{cid}"
        if key not in self.tokens:
            self.tokens[key] = create_center_token(self.plane.db, cid).token
        return {"Authorization": f"Bearer {self.tokens[key]}"}

    def register(self, cid: str, data_url: str | None = None) -> dict[str, Any]:
        """Register `cid` with all its chips free."""
        c = self.plane.network.center(cid)
        cap = [{"chip": p.chip, "total": p.count, "free": p.count} for p in c.pools]
        r = self.client.post(
            "/center/v1/register",
            json={
                "center_id": cid,
                "capacity": cap,
                "data_url": data_url or f"http://127.0.0.1:1/{cid}",
            },
            headers=self.center(cid),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def heartbeat(self, cid: str, running: list[str] | None = None) -> dict[str, Any]:
        """One heartbeat of `cid`; returns the reply."""
        c = self.plane.network.center(cid)
        cap = [{"chip": p.chip, "total": p.count, "free": p.count} for p in c.pools]
        r = self.client.post(
            "/center/v1/heartbeat",
            json={"center_id": cid, "capacity": cap, "running": running or []},
            headers=self.center(cid),
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def lease(self, cid: str) -> list[dict[str, Any]]:
        """Jobs leased to `cid` now."""
        r = self.client.post("/center/v1/lease", json={"center_id": cid}, headers=self.center(cid))
        assert r.status_code == 200, r.text
        return list(r.json()["jobs"])

    def report(self, cid: str, job_id: str, attempt: int, state: str, **kw: Any) -> httpx.Response:
        """A status report from `cid`."""
        return self.client.post(
            f"/center/v1/jobs/{job_id}/status",
            json={"attempt": attempt, "state": state, **kw},
            headers=self.center(cid),
        )

    def submit(
        self, spec: dict[str, Any], who: dict[str, str] | None = None, key: str | None = None
    ) -> httpx.Response:
        """POST /api/v1/jobs."""
        body: dict[str, Any] = {"spec": spec}
        if key is not None:
            body["idempotency_key"] = key
        return self.client.post("/api/v1/jobs", json=body, headers=who or self.user())

    def job(self, job_id: str, who: dict[str, str] | None = None) -> dict[str, Any]:
        """GET /api/v1/jobs/{id} (asserting 200)."""
        r = self.client.get(f"/api/v1/jobs/{job_id}", headers=who or self.user())
        assert r.status_code == 200, r.text
        return dict(r.json())

    def tick(self) -> TickReport:
        """One control loop pass."""
        return self.plane.tick()

    def run_to_running(self, cid: str, job_id: str) -> int:
        """Schedule, lease and start `job_id` at `cid`; returns the attempt."""
        self.tick()
        leased = {j["job_id"]: j for j in self.lease(cid)}
        assert job_id in leased, f"{job_id} not leased to {cid}: {self.job(job_id)['reasons']}"
        attempt = int(leased[job_id]["attempt"])
        assert self.report(cid, job_id, attempt, "STAGING").status_code == 200
        assert self.report(cid, job_id, attempt, "RUNNING").status_code == 200
        return attempt


def make_net(db_url: str, **settings: Any) -> Iterator[Net]:
    """Build a Net over `db_url` (used by the fixture and by restart tests)."""
    fake = settings.pop("real_time", None) or FakeTime()
    s = Settings(
        db_url=db_url,
        network=settings.pop("network", None) or load_network("demo"),
        epoch=settings.pop("epoch", EPOCH),
        lease_timeout_s=settings.pop("lease_timeout_s", LEASE_TIMEOUT_S),
        heartbeat_interval_s=settings.pop("heartbeat_interval_s", 2.0),
        # Jobs without a deadline start as soon as chips are free (the tests check dispatch,
        # not the wait for cheaper power; tests/unit/server/test_patience.py checks that).
        patience_h=settings.pop("patience_h", 0.0),
        run_loop=False,
        real_time=fake,
        **settings,
    )
    app = create_app(s)
    admin = bootstrap_admin(app.state.plane.db)
    with TestClient(app) as client:
        yield Net(
            client=client,
            plane=app.state.plane,
            time=fake,
            db_url=db_url,
            admin={"Authorization": f"Bearer {admin.token}"},
        )


@pytest.fixture
def net(db_url: str) -> Iterator[Net]:
    """A control plane on a fresh database, demo network, clock at `EPOCH`, loop off."""
    yield from make_net(db_url)
