"""The network backend against the SDK's in-memory fake API: a child network as one center."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from computenet.backends.base import Backend, BackendJob, BackendState
from computenet.backends.network import NetworkBackend
from computenet.backends.registry import make_backend
from computenet.catalog.loader import load_network
from computenet.errors import BackendError, ValidationError
from computenet.model import JobSpec, JobState
from computenet.protocol import BillLine, BillView, CenterView
from computenet.sdk import Client
from computenet.sdk.testing import FakeAPI

REGION = """
name: gba
time_scale: 600
centers:
  - {id: sz, region: gba, lat: 22.5, lon: 114.1, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
  - {id: gz, region: gba, lat: 23.1, lon: 113.3, pools: [{chip: H100, count: 2}], pue: 1.2,
     tariff: {flat: 0.6, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
  - {id: hk, region: gba, lat: 22.3, lon: 114.2, pools: [{chip: H100, count: 8}], pue: 1.2,
     tariff: {flat: 0.9, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5, service_price_per_cuh: 1}
links:
  - {a: sz, b: gz, bandwidth_gbps: 10, latency_ms: 2, price_per_gb: 0.01}
  - {a: sz, b: hk, bandwidth_gbps: 10, latency_ms: 2, price_per_gb: 0.01}
"""

SPEC = JobSpec.model_validate(
    {
        "name": "train",
        "class": "llm-train",
        "command": "echo hi",
        "chips": {"count": 1, "types": ["H100", "A100"]},
        "work": {"cu_hours": 0.5},
        "deadline": "6h",
        "env": {"SEED": "7"},
    }
)


@dataclass
class Region(FakeAPI):
    """The fake API with pools, online flags and bill lines a test sets."""

    free: dict[str, int] = field(default_factory=dict)  # center → free H100
    offline: set[str] = field(default_factory=set)
    largest: dict[str, int] = field(default_factory=dict)  # center → its own largest_free
    lines: list[BillLine] = field(default_factory=list)

    def _center(self, cid: str) -> CenterView:
        view = super()._center(cid)
        pools: list[dict[str, int | str]] = []
        for p in view.pools:
            pool = dict(p)
            pool["free"] = self.free.get(cid, int(p["total"]))
            if cid in self.largest:
                pool["largest_free"] = self.largest[cid]
            pools.append(pool)
        return view.model_copy(update={"pools": pools, "online": cid not in self.offline})

    def _bill(self, period: str) -> BillView:
        view = super()._bill(period)
        return view.model_copy(update={"lines": list(self.lines)})


@pytest.fixture
def region(tmp_path: Path) -> Region:
    path = tmp_path / "gba.yaml"
    path.write_text(REGION)
    return Region(network=load_network(str(path)))


def backend_for(region: Region, tmp_path: Path, **kw: Any) -> NetworkBackend:
    client = Client("http://region", region.token, transport=region.transport())
    kw.setdefault("capacity_ttl_s", 0)
    return NetworkBackend(
        tmp_path / "state", {"H100": 8}, origin="cn", center="gba", client=client, **kw
    )


def bjob(attempt: int = 1, count: int = 2, spec: JobSpec | None = SPEC) -> BackendJob:
    return BackendJob(
        "j-abc", attempt, "echo hi", "H100", count, {"CNET_JOB_ID": "j-abc"}, spec=spec
    )


def test_it_is_a_backend_built_by_name(tmp_path: Path, region: Region) -> None:
    token = tmp_path / "child.token"
    token.write_text(region.token)
    os.chmod(token, 0o600)
    backend = make_backend(
        "network",
        state_dir=tmp_path,
        pools={"H100": 4},
        url="http://region",
        token_file=str(token),
        watchdog="false",
    )
    assert isinstance(backend, Backend) and backend.kind == "network"


@pytest.mark.parametrize(
    ("options", "fld"),
    [
        ({"token_file": "x"}, "url"),
        ({"url": "http://r"}, "token_file"),
        ({"url": "http://r", "token_file": "/nonexistent"}, "token_file"),
    ],
)
def test_missing_child_and_token_name_the_option(
    options: dict[str, str], fld: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNET_CHILD_URL", raising=False)
    monkeypatch.delenv("CNET_CHILD_TOKEN_FILE", raising=False)
    with pytest.raises(ValidationError) as err:
        NetworkBackend(**options)  # type: ignore[arg-type]
    assert err.value.field == fld


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "child.token"
    token.write_text("secret")
    os.chmod(token, 0o644)
    with pytest.raises(ValidationError) as err:
        NetworkBackend(url="http://r", token_file=str(token))
    assert err.value.field == "token_file"


def test_free_sums_online_centers_and_the_largest_shape_is_one_center(
    tmp_path: Path, region: Region
) -> None:
    # kueue#9988: 1 + 2 free H100 in two centers is 3 free, but no job of 3 fits now.
    region.free = {"sz": 1, "gz": 2}
    region.offline = {"hk"}
    (pool,) = backend_for(region, tmp_path).capacity()
    assert (pool.chip, pool.total, pool.free, pool.largest_free) == ("H100", 8, 3, 2)


def test_capacity_is_capped_by_what_the_parent_declares(tmp_path: Path, region: Region) -> None:
    client = Client("http://region", region.token, transport=region.transport())
    small = NetworkBackend(pools={"H100": 6}, client=client)
    (pool,) = small.capacity()
    assert (pool.total, pool.free, pool.largest_free) == (6, 6, 6)


def test_a_child_region_reports_its_own_largest_shape_so_levels_nest(
    tmp_path: Path, region: Region
) -> None:
    region.offline = {"sz", "gz"}
    region.largest = {"hk": 3}  # hk is itself a region: 8 free, at most 3 in one place
    (pool,) = backend_for(region, tmp_path).capacity()
    assert (pool.free, pool.largest_free) == (8, 3)


def test_offline_centers_count_in_the_total_not_in_the_free(tmp_path: Path, region: Region) -> None:
    region.offline = {"hk"}
    (pool,) = backend_for(region, tmp_path).capacity()
    assert (pool.total, pool.free, pool.largest_free) == (8, 4, 2)  # capped at the declared 8


def test_one_read_of_the_childs_centers_serves_the_agents_ticks(
    tmp_path: Path, region: Region
) -> None:
    backend = backend_for(region, tmp_path, capacity_ttl_s=60)
    first = backend.capacity()
    region.free = {"sz": 0}
    assert backend.capacity() == first  # within the TTL: no second call
    assert sum(r.url.path == "/api/v1/centers" for r in region.requests) == 1


def test_an_unreachable_child_offers_nothing(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = Client("http://region", "t", transport=httpx.MockTransport(down))
    backend = NetworkBackend(pools={"H100": 4}, client=client)
    (pool,) = backend.capacity()
    # Nothing free, but the chips still exist: a job leased just now waits, it is not refused.
    assert (pool.total, pool.free, pool.largest_free) == (4, 0, 0)


def test_submit_is_idempotent_and_carries_the_origin_qualified_identity(
    tmp_path: Path, region: Region
) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    assert backend.submit(bjob(), "j-abc:1") == handle
    assert len(region.jobs) == 1
    child = region.jobs[handle]
    assert child.name == "cn/j-abc:1"
    assert region.keys == {(region.tenant, "cn/j-abc:1"): handle}
    # The parent chose chip and count; the child picks the center. Its clock is its own.
    assert (child.spec.chips.types, child.spec.chips.count) == (("H100",), 2)
    assert child.spec.deadline is None
    assert child.spec.env == {
        "SEED": "7",
        "CNET_ORIGIN_JOB": "cn/j-abc",
        "CNET_ORIGIN_ATTEMPT": "1",
        "CNET_ORIGIN_HOP": "down",  # delegated down: never sent back up
    }
    # A new attempt is a new child job.
    assert backend.submit(bjob(attempt=2), "j-abc:2") != handle


def test_the_top_identity_is_kept_through_levels(tmp_path: Path, region: Region) -> None:
    spec = SPEC.model_copy(
        update={"env": {"CNET_ORIGIN_JOB": "top/j-1", "CNET_ORIGIN_ATTEMPT": "3"}}
    )
    handle = backend_for(region, tmp_path).submit(bjob(spec=spec), "j-abc:1")
    assert region.jobs[handle].spec.env["CNET_ORIGIN_JOB"] == "top/j-1"


def test_a_job_larger_than_any_child_center_fails_at_submit(tmp_path: Path, region: Region) -> None:
    with pytest.raises(BackendError, match="the most in one is 8"):
        backend_for(region, tmp_path).submit(bjob(count=9), "j-abc:1")
    assert region.jobs == {}


def test_a_job_with_inputs_is_refused_not_run_without_them(tmp_path: Path, region: Region) -> None:
    spec = SPEC.model_copy(update={"inputs": ("corpus",)})
    # The child stages inputs itself: one it has no copy of is refused, naming it.
    with pytest.raises(BackendError, match="input corpus has no copy in the child"):
        backend_for(region, tmp_path).submit(bjob(spec=spec), "j-abc:1")
    assert region.jobs == {}


def test_a_busy_child_is_asked_again_with_the_same_key(tmp_path: Path, region: Region) -> None:
    busy = {"left": 2}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and busy["left"]:
            busy["left"] -= 1
            return httpx.Response(429, json={"error": "too many submissions", "field": None})
        return region.handle(request)

    client = Client("http://region", region.token, transport=httpx.MockTransport(flaky))
    backend = NetworkBackend(pools={"H100": 8}, origin="cn", client=client, submit_retry_s=5)
    handle = backend.submit(bjob(), "j-abc:1")
    assert list(region.jobs) == [handle]


def test_a_job_without_its_spec_is_refused(tmp_path: Path, region: Region) -> None:
    with pytest.raises(BackendError, match="spec"):
        backend_for(region, tmp_path).submit(bjob(spec=None), "j-abc:1")


def test_find_uses_its_record_then_the_childs_job_list(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    assert backend.find("j-abc:1") == handle
    assert backend.find("j-abc:2") is None
    # The backend's record lost: the child's job list still knows it, by name.
    fresh = backend_for(region, tmp_path / "elsewhere")
    calls = len(region.requests)
    assert fresh.find("j-abc:1") == handle
    assert any(r.url.path == "/api/v1/jobs" for r in region.requests[calls:])
    # Read once per process: the next miss does not list the child's jobs again.
    calls = len(region.requests)
    assert fresh.find("j-abc:9") is None
    assert len(region.requests) == calls
    # The record survives a restart of the agent (same state dir).
    assert backend_for(region, tmp_path).find("j-abc:1") == handle


def test_list_jobs_names_only_this_origins_jobs(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    other = Client("http://region", region.token, transport=region.transport())
    other.submit(SPEC.model_copy(update={"deadline": None}))  # a region user's own job
    assert backend.list_jobs() == {"j-abc:1": handle}


def test_poll_maps_the_childs_states(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")

    def state_after(**update: Any) -> tuple[BackendState, int | None]:
        region.jobs[handle] = region.jobs[handle].model_copy(update=update)
        status = backend.poll([handle])[handle]
        return status.state, status.exit_code

    assert state_after(state=JobState.SCHEDULED) == (BackendState.PENDING, None)
    assert state_after(state=JobState.STAGING) == (BackendState.PENDING, None)
    assert state_after(state=JobState.RUNNING) == (BackendState.RUNNING, None)
    assert state_after(state=JobState.FAILED, exit_code=3) == (BackendState.FAILED, 3)
    assert state_after(state=JobState.SUCCEEDED, exit_code=0) == (BackendState.SUCCEEDED, 0)
    assert backend.poll(["j-nope"])["j-nope"].state is BackendState.UNKNOWN


def test_cancel_cancels_in_the_child_and_is_idempotent(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    backend.cancel(handle)
    assert region.jobs[handle].state is JobState.CANCELLED
    backend.cancel(handle)  # already final: nothing to do
    backend.cancel("j-nope")
    assert backend.poll([handle])[handle].state is BackendState.CANCELLED


def test_logs_follow_the_childs_byte_offsets(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    region.logs[handle] = "héllo\n"
    text, offset = backend.logs(handle, 0)
    assert (text, offset) == ("héllo\n", 7)
    region.logs[handle] += "wörld\n"
    assert backend.logs(handle, offset) == ("wörld\n", 14)
    assert backend.logs("j-nope", 5) == ("", 5)


def test_metered_is_the_childs_bill_line_once_final(tmp_path: Path, region: Region) -> None:
    backend = backend_for(region, tmp_path)
    handle = backend.submit(bjob(), "j-abc:1")
    assert backend.metered(handle) is None  # not finished: nothing billed yet
    line = BillLine(
        job_id=handle,
        job_name="cn/j-abc:1",
        center="sz",
        chip="H100",
        chips=2,
        started_at=region.now,
        finished_at=region.now,
        chip_hours=1.0,
        cu_hours=2.5,
        kwh=1.68,
        co2_kg=0.84,
        energy_cny=Decimal("0.84"),
        service_cny=Decimal("2.50"),
        transfer_cny=Decimal("0.00"),
        total_cny=Decimal("3.34"),
    )
    region.lines = [line]
    region.jobs[handle] = region.jobs[handle].model_copy(
        update={
            "state": JobState.SUCCEEDED,
            "finished_at": region.now,
            "cost_cny": Decimal("3.34"),
        }
    )
    charge = backend.metered(handle)
    assert charge is not None
    assert (charge.energy_cny, charge.service_cny, charge.total_cny) == (
        Decimal("0.84"),
        Decimal("2.50"),
        Decimal("3.34"),
    )
    assert (charge.kwh, charge.cu_hours) == (1.68, 2.5)
