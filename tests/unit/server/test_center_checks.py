"""A center is checked, not believed: bad registrations and heartbeats are refused, store nothing.

Through the HTTP API (center protocol) on the demo network, where ``zhongwei``
declares one pool of 8 H100.
"""

from __future__ import annotations

from typing import Any

import pytest

from computenet.store.centers import get_center
from tests.unit.server.conftest import Net, job_spec

CID = "zhongwei"
GOOD_URL = "http://127.0.0.1:9000/zhongwei"


def _stored(net: Net) -> tuple[bool, Any, Any]:
    """(registered?, stored capacity, stored data_url) of CID."""
    with net.plane.db.read() as s:
        row = get_center(s, CID)
        if row is None:
            return False, None, None
        return True, list(row.capacity or []), row.data_url


def _register(net: Net, capacity: list[dict[str, Any]], data_url: str | None = GOOD_URL) -> Any:
    return net.client.post(
        "/center/v1/register",
        json={"center_id": CID, "capacity": capacity, "data_url": data_url},
        headers=net.center(CID),
    )


def _error(r: Any) -> tuple[int, str]:
    return r.status_code, r.json().get("field", "")


BAD_CAPACITY = [
    pytest.param([{"chip": "Z9000", "total": 8, "free": 8}], "capacity[0].chip", id="unknown-chip"),
    pytest.param([{"chip": "H100", "total": 4, "free": 5}], "capacity[0].free", id="free>total"),
    pytest.param([{"chip": "H100", "total": 64, "free": 64}], "capacity[0].total", id="64-of-8"),
    pytest.param(
        [{"chip": "H100", "total": 4, "free": 4}, {"chip": "H100", "total": 4, "free": 4}],
        "capacity[1].chip",
        id="duplicate-chip",
    ),
    pytest.param([{"chip": "H100", "total": -1, "free": 0}], "capacity[0].total", id="negative"),
    pytest.param([{"chip": "", "total": 1, "free": 1}], "capacity[0].chip", id="empty-chip"),
]


@pytest.mark.parametrize(("capacity", "field"), BAD_CAPACITY)
def test_bad_capacity_on_register_is_refused_and_nothing_stored(
    net: Net, capacity: list[dict[str, Any]], field: str
) -> None:
    r = _register(net, capacity)
    assert _error(r) == (422, field), r.text
    assert r.json()["hint"]
    assert _stored(net)[0] is False
    assert net.client.post(
        "/center/v1/lease", json={"center_id": CID}, headers=net.center(CID)
    ).status_code in (404, 409)


BAD_URLS = [
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("gopher://127.0.0.1:70/", id="gopher"),
    pytest.param("http://", id="no-host"),
    pytest.param("http:///path", id="empty-host"),
    pytest.param("127.0.0.1:9000", id="no-scheme"),
    pytest.param("http://user:pw@127.0.0.1:9000/", id="credentials"),
    pytest.param("http://127.0.0.1:99999/", id="bad-port"),
    pytest.param("http://127.0.0.1:9000/?redirect=x", id="query"),
    pytest.param("http://127.0.0.1:9000/\nHost: evil", id="newline"),
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_bad_data_url_on_register_is_refused_and_nothing_stored(net: Net, url: str) -> None:
    r = _register(net, [{"chip": "H100", "total": 8, "free": 8}], data_url=url)
    assert _error(r) == (422, "data_url"), r.text
    assert _stored(net)[0] is False


def test_a_good_registration_is_stored_and_a_center_with_fewer_chips_may_register(
    net: Net,
) -> None:
    r = _register(net, [{"chip": "H100", "total": 6, "free": 2}])
    assert r.status_code == 200, r.text
    registered, capacity, url = _stored(net)
    assert registered and url == GOOD_URL
    assert capacity == [{"chip": "H100", "total": 6, "free": 2}]
    assert _register(net, [], data_url=None).status_code == 200  # no data endpoint is allowed


@pytest.mark.parametrize(("capacity", "field"), BAD_CAPACITY[:4])
def test_bad_capacity_on_heartbeat_is_refused_and_capacity_unchanged(
    net: Net, capacity: list[dict[str, Any]], field: str
) -> None:
    net.register(CID)
    before = _stored(net)
    r = net.client.post(
        "/center/v1/heartbeat",
        json={"center_id": CID, "capacity": capacity, "running": []},
        headers=net.center(CID),
    )
    assert _error(r) == (422, field), r.text
    assert _stored(net) == before
    assert before[1] == [{"chip": "H100", "total": 8, "free": 8}]


def test_a_replica_endpoint_off_the_centers_own_host_is_refused_and_nothing_changes(
    net: Net,
) -> None:
    """The gateway sends users' requests to a replica's endpoint: a center may name only
    its own host (the one of its registered data endpoint), never another machine."""
    net.register(CID)  # data endpoint on 127.0.0.1
    job_id = net.submit(job_spec(chips={"count": 1, "types": ["H100"]})).json()["id"]
    net.tick()
    (leased,) = [j for j in net.lease(CID) if j["job_id"] == job_id]
    attempt = int(leased["attempt"])
    assert net.report(CID, job_id, attempt, "STAGING").status_code == 200
    r = net.report(CID, job_id, attempt, "RUNNING", endpoint="169.254.169.254:80")
    assert _error(r) == (422, "endpoint")
    assert net.job(job_id)["state"] == "STAGING"  # the refused report changed nothing
    ok = net.report(CID, job_id, attempt, "RUNNING", endpoint="127.0.0.1:8001")
    assert ok.status_code == 200, ok.text
    assert net.job(job_id)["state"] == "RUNNING"
