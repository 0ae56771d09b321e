"""Submits through the real server: one job per idempotency key, every acknowledged one stored."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.server.admin import create_user
from tests.helpers.processes import start_server, stop_process

pytestmark = pytest.mark.integration

SPEC = {"class": "inference", "command": "true", "chips": {"count": 1}, "work": {"cu_hours": 0.01}}


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[tuple[str, str]]:
    url, _admin, proc = start_server(tmp_path, "demo", db=db_url, cycle_interval=0.2)
    try:
        yield url, db_url
    finally:
        stop_process(proc)


def test_concurrent_submits_with_one_key_make_one_job_per_tenant(
    server: tuple[str, str],
) -> None:
    url, db = server
    tokens = {t: create_user(db, f"u-{t}", t, create_tenant_if_missing=True).token for t in "ab"}
    results: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def submit(tenant: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            r = c.post(
                "/api/v1/jobs",
                json={"spec": SPEC, "idempotency_key": "same-key"},
                headers={"Authorization": f"Bearer {tokens[tenant]}"},
            )
        with lock:
            results.append((tenant, r.status_code, r.json()["id"]))

    threads = [threading.Thread(target=submit, args=(t,)) for t in "ab" for _ in range(12)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for tenant in "ab":
        mine = [r for r in results if r[0] == tenant]
        assert len(mine) == 12
        assert len({job_id for _, _, job_id in mine}) == 1, mine
        assert sorted(code for _, code, _ in mine) == [200] * 11 + [201]
        listed = httpx.get(
            f"{url}/api/v1/jobs", headers={"Authorization": f"Bearer {tokens[tenant]}"}
        ).json()
        assert [j["id"] for j in listed] == [mine[0][2]]


def test_every_acknowledged_submit_is_stored_once(server: tuple[str, str]) -> None:
    url, db = server
    token = create_user(db, "flood", "flood", create_tenant_if_missing=True).token
    acked: list[str] = []
    codes: list[int] = []
    lock = threading.Lock()

    # An assert inside a worker thread would not fail the test: collect, then check here.
    def flood(w: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(25):
                r = c.post(
                    "/api/v1/jobs",
                    json={"spec": {**SPEC, "name": f"w{w}-{i}"}, "idempotency_key": f"{w}-{i}"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                with lock:
                    codes.append(r.status_code)
                    if r.status_code == 201:
                        acked.append(r.json()["id"])

    threads = [threading.Thread(target=flood, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    listed = httpx.get(
        f"{url}/api/v1/jobs", params={"limit": 1000}, headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert codes == [201] * 200
    assert len(acked) == 200
    assert sorted(j["id"] for j in listed) == sorted(acked)
