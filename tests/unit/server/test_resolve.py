"""GET /api/v1/resolve/{identifier}: centers, pools, dataset replicas and jobs by their
compute identifier; tenants see only their own; regions below answered with `delegate`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.model import Network
from tests.unit.server.conftest import Net, job_spec, make_net

SHA = "ab" * 32


def resolve(net: Net, identifier: str, who: dict[str, str] | None = None) -> Any:
    return net.client.get(f"/api/v1/resolve/{identifier}", headers=who or net.user())


def test_a_center_resolves_to_its_view_and_this_plane(net: Net) -> None:
    net.register("shanghai")
    r = resolve(net, "demo.shanghai")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "center"
    assert body["center"]["id"] == "shanghai" and body["center"]["online"] is True
    assert body["center"]["identifier"] == "demo.shanghai"
    assert body["reach"]["network"] == "demo" and body["reach"]["center"] == "shanghai"
    assert body["reach"]["url"].startswith("http")
    assert body["delegate"] is None


def test_a_pool_resolves_to_its_capacity(net: Net) -> None:
    chip = net.plane.network.center("shanghai").pools[0].chip
    body = resolve(net, f"demo.shanghai.pool.{chip}").json()
    assert body["kind"] == "pool"
    assert body["pool"]["chip"] == chip
    assert body["pool"]["identifier"] == f"demo.shanghai.pool.{chip}"
    r = resolve(net, "demo.shanghai.pool.K9000")
    assert r.status_code == 404 and r.json()["field"] == "identifier"


def test_a_dataset_replica_resolves_for_its_tenant_only(net: Net) -> None:
    body = {"id": "corpus.v1", "center": "shanghai", "size_bytes": 10, "sha256": SHA}
    r = net.client.post("/api/v1/datasets", json=body, headers=net.user("ann", "acme"))
    assert r.status_code == 201, r.text
    assert r.json()["identifiers"] == ["demo.shanghai.dataset.corpus.v1"]
    got = resolve(net, "demo.shanghai.dataset.corpus.v1", net.user("ann", "acme"))
    assert got.status_code == 200, got.text
    assert got.json()["kind"] == "dataset" and got.json()["dataset"]["id"] == "corpus.v1"
    assert got.json()["reach"]["center"] == "shanghai"
    # No replica at that center; another tenant's dataset: both simply absent.
    assert resolve(net, "demo.zhongwei.dataset.corpus.v1").status_code == 404
    other = resolve(net, "demo.shanghai.dataset.corpus.v1", net.user("bo", "rival"))
    assert other.status_code == 404
    assert "acme" not in other.text
    admin = resolve(net, "demo.shanghai.dataset.corpus.v1", net.admin)
    assert admin.status_code == 200


def test_a_job_resolves_to_its_view_and_center_and_not_for_other_tenants(net: Net) -> None:
    r = net.submit(job_spec(), net.user("ann", "acme"))
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json()["identifier"] == f"demo.job.{job_id}"
    assert net.job(job_id, net.user("ann", "acme"))["identifier"] == f"demo.job.{job_id}"
    listed = net.client.get("/api/v1/jobs", headers=net.user("ann", "acme")).json()
    assert listed[0]["identifier"] == f"demo.job.{job_id}"
    for c in net.plane.network.centers:
        net.register(c.id)
    net.tick()
    body = resolve(net, f"demo.job.{job_id}", net.user("ann", "acme")).json()
    assert body["kind"] == "job" and body["job"]["id"] == job_id
    assert body["reach"]["center"] == body["job"]["center"] is not None
    foreign = resolve(net, f"demo.job.{job_id}", net.user("bo", "rival"))
    assert foreign.status_code == 404, foreign.text
    assert foreign.json()["field"] == "identifier"
    assert resolve(net, "demo.job.j-000000000000").status_code == 404


@pytest.mark.parametrize(
    "bad",
    [
        "shanghai",  # no prefix
        "demo..shanghai",
        "demo.Shanghai",
        "demo.shanghai.pool.",
        "job.j-1",
        "demo.pool.H100",  # a pool needs a center
        "demo.shanghai.pool.H100.x",
        "x" * 500,
    ],
)
def test_a_malformed_identifier_is_422_naming_the_field(net: Net, bad: str) -> None:
    r = resolve(net, bad)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "identifier"
    assert r.json()["hint"]


def test_unknown_and_foreign_identifiers_are_404(net: Net) -> None:
    for ident in ("demo.atlantis", "cn.shanghai", "demo.shanghai.zone-1"):
        r = resolve(net, ident)
        assert r.status_code == 404, (ident, r.text)
        assert r.json()["field"] == "identifier"


def test_resolve_needs_a_user_token(net: Net) -> None:
    assert net.client.get("/api/v1/resolve/demo.shanghai").status_code == 401
    r = net.client.get("/api/v1/resolve/demo.shanghai", headers=net.center("shanghai"))
    assert r.status_code == 403


def _national() -> Network:
    """The demo network as a national plane `cn` whose `guian` center is a region."""
    demo = load_network("demo")
    centers = tuple(
        c.model_copy(update={"backend": "network", "tags": ("url:http://gba.example:8080",)})
        if c.id == "guian"
        else c
        for c in demo.centers
    )
    return Network.model_validate(
        {**dict(demo), "identifier": "cn", "centers": centers, "name": "national"}
    )


@pytest.fixture
def national(db_url: str) -> Iterator[Net]:
    yield from make_net(db_url, network=_national())


def test_an_identifier_below_a_region_is_delegated_to_it(national: Net) -> None:
    body = resolve(national, "cn.guian.shenzhen-1.pool.H100").json()
    assert body["delegate"] == {
        "center": "guian",
        "identifier": "cn.guian.shenzhen-1.pool.H100",
        "url": "http://gba.example:8080",
    }
    assert body["kind"] == "pool" and body["reach"]["region_url"] == "http://gba.example:8080"
    job = resolve(national, "cn.guian.job.j-0123456789ab").json()
    assert job["delegate"]["center"] == "guian" and job["kind"] == "job"
    # The region itself, as a center of this plane, is answered here.
    here = resolve(national, "cn.guian").json()
    assert here["delegate"] is None and here["reach"]["region_url"] == "http://gba.example:8080"
    # Below a center that is not a region there is nothing to ask.
    r = resolve(national, "cn.shanghai.room-2")
    assert r.status_code == 404 and "not a region" in r.json()["error"]
    assert resolve(national, "cn.atlantis.x").status_code == 404
