"""A region's member centers at the parent (docs/federation.md, dashboard): taken from a region's
heartbeat only, bounded, kept in memory and shown in the centers view; absent otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from computenet.protocol import HeartbeatRequest
from computenet.protocol.center import MAX_MEMBERS
from tests.unit.server.conftest import Net, make_net
from tests.unit.server.test_rollup import REGION, _beat, _network, _ordinary


@pytest.fixture
def fed(db_url: str) -> Iterator[Net]:
    yield from make_net(db_url, network=_network())


def member(cid: str, online: bool = True, free: int = 2) -> dict[str, Any]:
    return {
        "id": cid,
        "name": cid.upper(),
        "lat": 22.6,
        "lon": 114.1,
        "online": online,
        "pools": [{"chip": "H100", "total": 2, "free": free}],
    }


def _view(net: Net, cid: str) -> dict[str, Any]:
    views = net.client.get("/api/v1/centers", headers=net.user()).json()
    return next(v for v in views if v["id"] == cid)


def test_a_regions_members_show_in_its_center_view_and_follow_its_heartbeats(fed: Net) -> None:
    fed.register(REGION)
    assert _view(fed, REGION)["members"] is None  # nothing reported yet
    r = _beat(fed, REGION, members=[member("sz"), member("gz", online=False, free=0)])
    assert r.status_code == 200, r.text
    got = _view(fed, REGION)["members"]
    assert [(m["id"], m["name"], m["online"]) for m in got] == [
        ("sz", "SZ", True),
        ("gz", "GZ", False),
    ]
    assert got[0]["pools"] == [{"chip": "H100", "total": 2, "free": 2}]
    # The next list replaces it; a heartbeat without members forgets it.
    assert _beat(fed, REGION, members=[member("sz", free=1)]).status_code == 200
    assert [m["pools"][0]["free"] for m in _view(fed, REGION)["members"]] == [1]
    assert _beat(fed, REGION).status_code == 200
    assert _view(fed, REGION)["members"] is None


def test_an_ordinary_center_may_not_list_members(fed: Net) -> None:
    cid = _ordinary(fed)
    fed.register(cid)
    r = _beat(fed, cid, members=[member("sz")])
    assert (r.status_code, r.json()["field"]) == (422, "members"), r.text
    assert "not a region" in r.json()["error"]
    assert _view(fed, cid)["members"] is None


def test_members_are_bounded_and_checked(fed: Net) -> None:
    fed.register(REGION)
    too_many = [member(f"c{i}") for i in range(MAX_MEMBERS + 1)]
    r = _beat(fed, REGION, members=too_many)
    assert r.status_code == 422 and "members" in r.json()["field"], r.text
    bad = {**member("sz"), "lat": 123.0}
    r = _beat(fed, REGION, members=[bad])
    assert r.status_code == 422 and "members" in r.json()["field"], r.text
    assert _view(fed, REGION)["members"] is None


def test_members_are_off_the_wire_while_unset() -> None:
    req = HeartbeatRequest(center_id="gba")
    assert "members" not in req.model_dump(mode="json")
    req = HeartbeatRequest(center_id="gba", members=[member("sz")])  # type: ignore[list-item]
    assert req.model_dump(mode="json")["members"][0]["id"] == "sz"
