"""Lists are paged: `limit` and `cursor` in, the next page linked in the headers."""

from __future__ import annotations

from typing import Any

import pytest

from computenet.server.admin import create_tenant
from tests.unit.server.conftest import Net, job_spec


def follow(net: Net, url: str, who: dict[str, str]) -> tuple[list[Any], int]:
    """Every item of a paged list, following Link rel=next; and the number of pages."""
    items: list[Any] = []
    pages = 0
    while url:
        r = net.client.get(url, headers=who)
        assert r.status_code == 200, r.text
        items.extend(r.json())
        pages += 1
        link = r.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link else ""
        assert (r.headers.get("X-Next-Cursor") is None) == (link is None)
    return items, pages


def test_jobs_page_through_newest_first_without_repeats(net: Net) -> None:
    ids = []
    for i in range(25):
        ids.append(net.submit(job_spec(name=f"j{i}")).json()["id"])
        if i % 3 == 0:
            net.time.advance(1)  # some share a submit time: the id breaks the tie
    items, pages = follow(net, "/api/v1/jobs?limit=10", net.user())
    assert pages == 3
    listed = [j["id"] for j in items]
    assert sorted(listed) == sorted(ids) and len(set(listed)) == 25
    one_page = net.client.get("/api/v1/jobs?limit=100", headers=net.user()).json()
    assert listed == [j["id"] for j in one_page]
    assert "Link" not in net.client.get("/api/v1/jobs?limit=100", headers=net.user()).headers


def test_a_job_submitted_while_paging_is_neither_repeated_nor_skipped_behind_the_cursor(
    net: Net,
) -> None:
    for i in range(6):
        net.submit(job_spec(name=f"j{i}"))
        net.time.advance(1)
    first = net.client.get("/api/v1/jobs?limit=3&state=PENDING", headers=net.user())
    net.submit(job_spec(name="newer"))
    nxt = first.headers["Link"].split(";")[0].strip("<>")
    assert "state=PENDING" in nxt
    second = net.client.get(nxt, headers=net.user()).json()
    seen = [j["name"] for j in first.json()] + [j["name"] for j in second]
    assert seen == ["j5", "j4", "j3", "j2", "j1", "j0"]


def test_datasets_and_tenants_are_paged(net: Net) -> None:
    for i in range(5):
        r = net.client.post(
            "/api/v1/datasets",
            json={"id": f"d{i}", "center": "shanghai", "size_bytes": 1, "sha256": "0" * 64},
            headers=net.user(),
        )
        assert r.status_code == 201, r.text
    items, pages = follow(net, "/api/v1/datasets?limit=2", net.user())
    assert [d["id"] for d in items] == [f"d{i}" for i in range(5)] and pages == 3
    for name in ("t1", "t2", "t3"):
        create_tenant(net.plane.db, name)
    names, pages = follow(net, "/api/v1/admin/tenants?limit=2", net.admin)
    assert [t["name"] for t in names] == sorted(t["name"] for t in names) and pages >= 2
    assert {"t1", "t2", "t3"} <= {t["name"] for t in names}


def test_the_sdk_follows_pages_up_to_its_limit(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    from computenet.sdk import client as sdk

    monkeypatch.setattr(sdk, "MAX_PAGE", 2)  # pages of 2, so that 5 jobs take 3 pages
    for i in range(7):
        net.submit(job_spec(name=f"j{i}"))
        net.time.advance(1)
    token = net.user()["Authorization"].removeprefix("Bearer ")
    # The app in process, through the test client's transport.
    with sdk.Client("http://testserver", token, transport=net.client._transport) as cn:
        assert [j.name for j in cn.jobs(limit=5)] == ["j6", "j5", "j4", "j3", "j2"]
        assert len(cn.jobs()) == 7
