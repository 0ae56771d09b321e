"""The market between regions, real processes: the region quotes, the parent picks.

A national plane ``cn`` over two regions, each a ComputeNet plane of its own
joined by ``cnet agent --backend network`` (docs/federation.md):

- ``gba``: two centers, ``sz`` cheap (1 H100) and ``gz`` dear (its own service
  price ¥40 per CU·h, 1 H100). The nation declares gba cheap, and gba's rate
  card (a reference job on a free region) is sz's price.
- ``yrd``: one center ``sh`` (1 H100), its own service price ¥5 per CU·h; the
  nation declares it dearer than gba.

With sz busy for days, gba's own scheduler can meet a 3-hour deadline only at
gz: its quote for the job is far dearer than what the nation's declaration
and gba's rate card imply, and the nation places the job at yrd, priced by
yrd's own quote. A third national center, ``plain``, is no region: its quotes
are refused (422 naming ``quotes``). A fourth, ``hk``, is a region the test
itself speaks for (no agent: it comes online only in the last test), declared
almost free: its stale quote is ignored.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from computenet.agent.client import CenterClient
from computenet.errors import ValidationError
from computenet.model import JobState
from computenet.protocol import PoolCapacity
from computenet.protocol.center import JobQuote
from computenet.sdk import Client
from tests.helpers.federation import (
    Region,
    logs_under,
    network_agent,
    start_region,
    stop_all,
    until,
)
from tests.helpers.processes import start_server

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

GBA = """
name: gba
time_scale: 600
data_scale: 1
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 1}], pue: 1.2,
     tariff: {flat: 0.3, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
  - {id: gz, region: gba, lat: 23.1, lon: 113.3, pools: [{chip: H100, count: 1}], pue: 1.2,
     tariff: {flat: 0.3, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 40}
links:
  - {a: sz, b: gz, bandwidth_gbps: 10, latency_ms: 2, price_per_gb: 0.01}
"""

YRD = """
name: yrd
time_scale: 600
data_scale: 1
centers:
  - {id: sh, region: yrd, lat: 31.2, lon: 121.5, pools: [{chip: H100, count: 1}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 5}
links: []
"""

# The nation's declaration: gba cheaper than yrd (as gba's rate card says too).
NATIONAL = """
name: cn
time_scale: 600
data_scale: 1
centers:
  - {id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.3, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1,
     tags: [region, "fee:5%"]}
  - {id: yrd, region: yrd, lat: 31.2, lon: 121.5, pools: [{chip: H100, count: 1}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 10,
     tags: [region]}
  - {id: plain, region: yrd, lat: 31.0, lon: 121.0, pools: [{chip: H100, count: 1}], pue: 1.2,
     tariff: {flat: 2, peak: 2, valley: 2}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 90}
  - {id: hk, region: gba, lat: 22.3, lon: 114.2, pools: [{chip: H100, count: 1}], pue: 1.2,
     tariff: {flat: 0.01, peak: 0.01, valley: 0.01}, carbon_kg_per_kwh: 0.5,
     service_price_per_cuh: 0.01, tags: [region]}
links:
  - {a: gba, b: yrd, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}
  - {a: yrd, b: plain, bandwidth_gbps: 10, latency_ms: 3, price_per_gb: 0.05}
"""


@dataclass
class Nation:
    tmp: Path
    url: str
    admin: Client
    user: Client
    regions: dict[str, Region]

    def logs(self) -> str:
        return logs_under(self.tmp)


@pytest.fixture(scope="module")
def nation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nation]:
    tmp = tmp_path_factory.mktemp("quotes")
    (tmp / "national").mkdir()
    (tmp / "national.yaml").write_text(NATIONAL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        regions = {
            "gba": start_region(tmp, "gba-region", GBA, procs),
            "yrd": start_region(tmp, "yrd-region", YRD, procs),
        }
        for r in regions.values():
            clients += [r.admin, r.link]
        url, token, procs["national"] = start_server(
            tmp / "national",
            str(tmp / "national.yaml"),
            cycle_interval=0.2,
            heartbeat_interval=0.3,
            lease_timeout=20.0,
        )
        admin = Client(url, token)
        admin.create_tenant("acme")
        user = Client(url, admin.create_user("ann", "acme").token)
        clients += [admin, user]
        for name, region in regions.items():
            until(
                f"{name}'s centers online",
                lambda r=region: all(c.online for c in r.link.centers()),  # type: ignore[misc]
                tmp,
            )
            procs[name] = network_agent(
                tmp, name, url, admin.center_token(name).token, region.url, region.link_token_file
            )
        until(
            "both regions online",
            lambda: all(c.online for c in user.centers() if c.id in regions),
            tmp,
        )
        yield Nation(tmp, url, admin, user, regions)
    finally:
        stop_all(procs, clients)


def spec(**more: Any) -> dict[str, Any]:
    return {
        "name": "market",
        "class": "llm-train",
        "command": "echo priced",
        "chips": {"count": 1, "types": ["H100"]},
        "work": {"cu_hours": 0.5},
        **more,
    }


def test_the_nation_places_a_job_at_the_region_whose_own_quote_is_cheaper(nation: Nation) -> None:
    gba = nation.regions["gba"]
    # sz, gba's cheap center, is taken for days by a job of gba's own.
    blocker = gba.link.submit(
        {**spec(command="sleep 600"), "center": "sz", "work": {"cu_hours": 200}}
    )
    until(
        "the blocker running at sz",
        lambda: gba.link.job(blocker.id).state == JobState.RUNNING,
        nation.tmp,
    )
    # What the regions' own schedulers say for the job: gba only at dear gz, yrd at sh.
    probe = {**spec(), "deadline": "3h"}
    gba_own = [o for o in gba.link.quote(probe).options if o.feasible]
    yrd_own = [o for o in nation.regions["yrd"].link.quote(probe).options if o.feasible]
    assert {o.center for o in gba_own} == {"gz"}
    assert min(o.total_cny for o in gba_own) > min(o.total_cny for o in yrd_own)
    # The nation's own estimate (its declaration) still ranks gba first.
    mine = {o.center: o.total_cny for o in nation.user.quote(probe).options if o.feasible}
    assert mine["gba"] < mine["yrd"]

    job = nation.user.submit(probe)

    def placed() -> Any:
        d = nation.user.job(job.id)
        return d if d.center is not None else None

    d = until("the job placed at the top", placed, nation.tmp, timeout=60)
    assert d.center == "yrd", (d.reasons, nation.logs())
    assert any(r.startswith("priced by region yrd's own quote") for r in d.reasons), d.reasons
    # The estimate is yrd's own price for it (no fee declared for yrd, no transfer).
    yrd_price = min(o.total_cny for o in yrd_own)
    assert d.estimated_cny is not None
    assert abs(d.estimated_cny - yrd_price) <= Decimal("0.05"), (d.estimated_cny, yrd_price)
    until(
        "the job succeeded",
        lambda: nation.user.job(job.id).state == JobState.SUCCEEDED,
        nation.tmp,
        timeout=60,
    )
    gba.link.cancel(blocker.id)


def test_a_center_that_is_not_a_region_may_not_send_quotes(nation: Nation) -> None:
    token = nation.admin.center_token("plain").token
    client = CenterClient(nation.url, token, "plain")
    try:
        client.register(
            backend="local", data_url=None, capacity=[PoolCapacity(chip="H100", total=1, free=1)]
        )
        # An ordinary heartbeat is taken; one with quotes (even none) is refused.
        client.heartbeat([PoolCapacity(chip="H100", total=1, free=1)], [])
        with pytest.raises(ValidationError) as got:
            client.heartbeat([PoolCapacity(chip="H100", total=1, free=1)], [], quotes=[])
        assert got.value.field == "quotes"
        with pytest.raises(ValidationError) as got:
            q = JobQuote(job_id="j1", price_cny=Decimal("1.00"), finish_real=1e9, ttl_s=10)
            client.heartbeat([PoolCapacity(chip="H100", total=1, free=1)], [], quotes=[q])
        assert got.value.field == "quotes"
    finally:
        client.close()


def test_a_region_quote_over_the_bounds_is_refused_naming_the_field(nation: Nation) -> None:
    """Quotes are checked before anything is kept: a ttl past 120 s is a 422 on that field."""
    import httpx

    token = nation.admin.center_token("yrd").token
    body = {
        "center_id": "yrd",
        "capacity": [{"chip": "H100", "total": 1, "free": 1}],
        "running": [],
        "quotes": [{"job_id": "j1", "price_cny": "1.00", "finish_real": 1e9, "ttl_s": 500}],
    }
    r = httpx.post(
        f"{nation.url}/center/v1/heartbeat",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 422, r.text
    assert "ttl_s" in str(r.json().get("field", "")), r.text


def test_a_stale_quote_is_ignored_and_the_estimate_prices_the_region(nation: Nation) -> None:
    """hk answers quotes but its one answer is stale by the time the cycle reads it: the job,
    held for hk's quote at most a few heartbeats, is then placed at hk by the estimate."""
    token = nation.admin.center_token("hk").token
    client = CenterClient(nation.url, token, "hk")
    cap = [PoolCapacity(chip="H100", total=1, free=1)]
    try:
        client.register(backend="network", data_url=None, capacity=cap)
        client.heartbeat(cap, [], quotes=[])  # hk answers quotes
        job = nation.user.submit({**spec(), "deadline": "3h"})

        def asked() -> bool:
            reply = client.heartbeat(cap, [], quotes=[])
            return any(q.job_id == job.id for q in reply.quote_requests or [])

        until("the nation asks hk to price the job", asked, nation.tmp)
        # hk's own price: ¥999, good for a millisecond — stale before any cycle reads it.
        stale = JobQuote(
            job_id=job.id,
            chip="H100",
            price_cny=Decimal("999.00"),
            finish_real=time.time() + 60,
            ttl_s=0.001,
        )
        client.heartbeat(cap, [], quotes=[stale])

        def placed() -> Any:
            d = nation.user.job(job.id)
            return d if d.center is not None else None

        d = until("the job placed", placed, nation.tmp, timeout=60)
        assert d.center == "hk", d.reasons
        assert not any(r.startswith("priced by region hk") for r in d.reasons), d.reasons
        assert d.estimated_cny is not None and d.estimated_cny < Decimal("1.00")
    finally:
        client.close()
