"""Body limits and per-tenant limits on the real server process (uvicorn), over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.model import limits
from computenet.server.admin import create_user
from tests.helpers.processes import start_server, stop_process

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

SPEC = {"class": "inference", "command": "true", "work": {"cu_hours": 0.01}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A server whose tenants may submit once a second, and a user's headers."""
    url, _admin, proc = start_server(tmp_path, extra_args=["--submits-per-s", "1"])
    try:
        user = create_user(
            f"sqlite:///{tmp_path / 'cnet.db'}", "ann", "acme", create_tenant_if_missing=True
        )
        yield url, {"Authorization": f"Bearer {user.token}"}
    finally:
        stop_process(proc)


def test_oversize_bodies_are_413_naming_the_body_declared_or_streamed(
    server: tuple[str, dict[str, str]],
) -> None:
    url, who = server
    big = b'{"spec": {"command": "' + b"x" * (limits.MAX_BODY_BYTES + 1) + b'"}}'

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    headers = {**who, "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=30) as c:
        declared = c.post("/api/v1/jobs", content=big, headers=headers)
        streamed = c.post("/api/v1/jobs", content=chunks(), headers=headers)
    for r in (declared, streamed):
        assert r.status_code == 413, r.text
        assert r.json()["field"] == "body"
    with httpx.Client(base_url=url, timeout=30) as c:
        ok = c.post("/api/v1/jobs", json={"spec": SPEC}, headers=who)
        assert ok.status_code == 201, ok.text
        assert c.get("/api/v1/jobs", headers=who).json()[0]["id"] == ok.json()["id"]


def test_a_burst_over_the_rate_gets_429_with_retry_after(
    server: tuple[str, dict[str, str]],
) -> None:
    url, who = server
    with httpx.Client(base_url=url, timeout=30) as c:
        answers = [c.post("/api/v1/jobs", json={"spec": SPEC}, headers=who) for _ in range(20)]
        listed = c.get("/api/v1/jobs", headers=who).json()
    limited = [r for r in answers if r.status_code == 429]
    assert limited, [r.status_code for r in answers]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in limited)
    assert {r.json()["field"] for r in limited} == {"submits_per_s"}
    assert len(listed) == sum(r.status_code == 201 for r in answers)
