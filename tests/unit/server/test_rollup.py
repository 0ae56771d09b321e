"""Roll-up at the parent (docs/federation.md): a region's reports of where its jobs are,
its queue and used chips, queue positions, and the region's declared fee.

Through the HTTP API on the demo network, where ``zhongwei`` (8 H100) is made a
region with a 5 % fee and every other center stays an ordinary center.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.errors import ValidationError
from computenet.model import limits
from computenet.model.network import Network
from computenet.protocol.center import MeteredCharge
from computenet.server.center_checks import fee_rate
from computenet.server.metering import metered_charges
from tests.unit.server.conftest import Net, job_spec, make_net

REGION = "zhongwei"


def _network(tags: tuple[str, ...] = ("region", "fee:5%")) -> Network:
    net = load_network("demo")
    centers = [
        c.model_copy(update={"tags": (*c.tags, *tags)}) if c.id == REGION else c
        for c in net.centers
    ]
    return net.model_copy(update={"centers": centers})


@pytest.fixture
def fed(db_url: str) -> Iterator[Net]:
    yield from make_net(db_url, network=_network())


def _ordinary(net: Net) -> str:
    return next(c.id for c in net.plane.network.centers if c.id != REGION and c.pools)


def _hop(network: str, **kw: Any) -> dict[str, Any]:
    return {"network": network, **kw}


def _beat(net: Net, cid: str, **extra: Any) -> Any:
    c = net.plane.network.center(cid)
    cap = [{"chip": p.chip, "total": p.count, "free": p.count} for p in c.pools]
    body = {"center_id": cid, "capacity": cap, "running": extra.pop("running", []), **extra}
    return net.client.post("/center/v1/heartbeat", json=body, headers=net.center(cid))


def test_an_ordinary_center_may_not_report_a_path_and_its_queue_is_not_believed(
    fed: Net,
) -> None:
    cid = _ordinary(fed)
    fed.register(cid)
    r = _beat(fed, cid, progress=[])
    assert (r.status_code, r.json()["field"]) == (422, "progress"), r.text
    c = fed.plane.network.center(cid)
    cap = [
        {"chip": p.chip, "total": p.count, "free": p.count, "used": 1, "queued": 9,
         "quote_cny_per_cuh": "0.01"}
        for p in c.pools
    ]  # fmt: skip
    r = fed.client.post(
        "/center/v1/heartbeat",
        json={"center_id": cid, "capacity": cap, "running": []},
        headers=fed.center(cid),
    )
    assert r.status_code == 200, r.text  # taken as an ordinary center's capacity
    views = fed.client.get("/api/v1/centers", headers=fed.user()).json()
    pools = next(v for v in views if v["id"] == cid)["pools"]
    assert all(set(p) == {"chip", "total", "free", "identifier"} for p in pools), pools


def test_the_path_below_is_shown_at_the_top_with_the_deepest_reason_first(fed: Net) -> None:
    fed.register(REGION)
    view = fed.submit(job_spec(center=REGION)).json()
    attempt = fed.run_to_running(REGION, view["id"])
    below = [
        _hop("gba", center="gz", job_id="j-1", state="RUNNING", reason="placed at sub"),
        _hop("sub", center="sz", chip="H100", count=2, job_id="j-2", state="SCHEDULED",
             reason="waiting for 2 H100 at sz", position=3),
    ]  # fmt: skip
    r = _beat(
        fed,
        REGION,
        running=[view["id"]],
        progress=[{"job_id": view["id"], "attempt": attempt, "path": below}],
    )
    assert r.status_code == 200, r.text
    d = fed.job(view["id"])
    path = d["path"]
    assert [(h["network"], h["center"], h["job_id"]) for h in path] == [
        (fed.plane.network.name, REGION, view["id"]),
        ("gba", "gz", "j-1"),
        ("sub", "sz", "j-2"),
    ]
    assert path[2]["position"] == 3
    assert d["reasons"][0] == "sub: waiting for 2 H100 at sz"
    assert d["queue_position"] is None  # handed to the region: it waits there

    # A report for another attempt changes nothing; a path too deep is refused.
    stale = [{"job_id": view["id"], "attempt": attempt + 1, "path": below[:1]}]
    assert _beat(fed, REGION, running=[view["id"]], progress=stale).status_code == 200
    assert len(fed.job(view["id"])["path"]) == 3
    deep = [_hop(f"n{i}") for i in range(limits.MAX_PATH_HOPS)]
    r = _beat(
        fed,
        REGION,
        running=[view["id"]],
        progress=[{"job_id": view["id"], "attempt": attempt, "path": deep}],
    )
    assert r.status_code == 422, r.text
    assert "path" in r.json()["field"]


def test_a_late_heartbeat_does_not_bring_a_finished_region_job_back_to_running(
    fed: Net,
) -> None:
    fed.register(REGION)
    view = fed.submit(job_spec(center=REGION)).json()
    attempt = fed.run_to_running(REGION, view["id"])

    def beat(state: str) -> None:
        hop = _hop("gba", center="gz", job_id="j-1", state=state)
        progress = [{"job_id": view["id"], "attempt": attempt, "path": [hop]}]
        r = _beat(fed, REGION, running=[view["id"]], progress=progress)
        assert r.status_code == 200, r.text

    beat("SUCCEEDED")  # as the usage report carries it at the end
    beat("RUNNING")  # a heartbeat built before the region's job ended, arriving after
    assert fed.job(view["id"])["path"][1]["state"] == "SUCCEEDED"


def test_a_regions_queue_and_used_chips_show_in_its_center_view(fed: Net) -> None:
    fed.register(REGION)
    cap = [{"chip": "H100", "total": 8, "free": 2, "used": 6, "queued": 4}]
    r = fed.client.post(
        "/center/v1/heartbeat",
        json={"center_id": REGION, "capacity": cap, "running": []},
        headers=fed.center(REGION),
    )
    assert r.status_code == 200, r.text
    views = fed.client.get("/api/v1/centers", headers=fed.user()).json()
    (pool,) = next(c for c in views if c["id"] == REGION)["pools"]
    assert (pool["used"], pool["queued"], pool["free"]) == (6, 4, 2)
    cap[0]["used"] = 9  # more than its chips
    r = fed.client.post(
        "/center/v1/heartbeat",
        json={"center_id": REGION, "capacity": cap, "running": []},
        headers=fed.center(REGION),
    )
    assert r.status_code == 422, r.text


def test_queue_positions_follow_priority_then_submit_time(net: Net) -> None:
    ids = []
    for priority in (0, 5, 0):
        ids.append(net.submit(job_spec(priority=priority)).json()["id"])
        net.time.advance(1.0)  # the fake clock stands still: one submit time each
    low, high, later = ids
    assert [net.job(j)["queue_position"] for j in (high, low, later)] == [1, 2, 3]
    assert net.job(low)["path"][0]["position"] == 2
    assert net.job(low)["path"][0]["center"] is None  # not placed yet


def test_a_region_fee_is_read_from_its_tag_and_malformed_ones_are_refused() -> None:
    c = _network().center(REGION)
    assert fee_rate(c) == Decimal("0.05")
    assert fee_rate(c.model_copy(update={"tags": ("region", "fee:2.5%")})) == Decimal("0.025")
    assert fee_rate(c.model_copy(update={"tags": ("region",)})) == 0
    for tags in (
        ("region", "fee:5"),
        ("region", "fee:101%"),
        ("region", "fee:-1%"),
        ("region", "fee:1.234%"),
        ("region", "fee:1%", "fee:2%"),
        ("fee:5%",),  # not a region
    ):
        with pytest.raises(ValidationError) as err:
            fee_rate(c.model_copy(update={"tags": tags}))
        assert err.value.field == "tags", tags


def test_a_region_with_a_malformed_fee_cannot_register(db_url: str) -> None:
    for net in make_net(db_url, network=_network(("region", "fee:five"))):
        r = net.client.post(
            "/center/v1/register",
            json={"center_id": REGION, "capacity": []},
            headers=net.center(REGION),
        )
        assert (r.status_code, r.json()["field"]) == (422, "tags"), r.text


def test_the_fee_is_on_the_regions_amount_rounded_once_to_the_fen() -> None:
    region = MeteredCharge(
        energy_cny=Decimal("0.84"), service_cny=Decimal("2.45"), transfer_cny=Decimal("0.10")
    )
    ch = metered_charges(region.model_dump(mode="json"), Decimal("0.05"), Decimal("0.05"))
    # 5 % of ¥3.39 is ¥0.1695 → ¥0.17, billed as service; the parent's own transfer has no fee.
    assert ch.service_cny == Decimal("2.62")
    assert ch.transfer_cny == Decimal("0.15")
    assert ch.total_cny == region.total_cny + Decimal("0.17") + Decimal("0.05")


def test_a_region_reports_its_copy_of_a_dataset_as_region_id_only(fed: Net) -> None:
    fed.register(REGION)
    other = _ordinary(fed)
    fed.register(other)
    sha = "b" * 64
    r = fed.client.post(
        "/api/v1/datasets",
        json={"id": "corpus", "center": other, "size_bytes": 3, "sha256": sha},
        headers=fed.user(),
    )
    assert r.status_code == 201, r.text

    def report(cid: str, path: str, digest: str = sha) -> Any:
        return fed.client.post(
            "/center/v1/datasets/corpus/replicas",
            json={"path": path, "sha256": digest},
            headers=fed.center(cid),
        )

    # A region's copy is inside it: region:ID, nothing else; other bytes are refused.
    assert report(REGION, "tenants/acme/corpus").json()["field"] == "path"
    assert report(REGION, "region:").json()["field"] == "path"
    assert report(REGION, "region:corpus", "c" * 64).json()["field"] == "sha256"
    ok = report(REGION, "region:corpus")
    assert ok.status_code == 200, ok.text
    assert {"center": REGION, "path": "region:corpus"} in ok.json()["replicas"]
    # An ordinary center's copy is a file in the tenant's area, never region:ID.
    assert report(other, "region:corpus").json()["field"] == "path"
