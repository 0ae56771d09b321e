"""Two-level scheduling in the simulator (issue 9, item 9): consistency, capacity, bills."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from computenet.backends.network import NetworkBackend
from computenet.catalog import load_network
from computenet.errors import ComputeNetError, ValidationError
from computenet.model import JobState, Network
from computenet.protocol.capacity import aggregate_capacity
from computenet.scheduler import HORIZON_SLOTS, build_snapshot
from computenet.sim.federation import (
    compare_federation,
    declared_network,
    federated_policy,
    hub_regions,
    load_regions,
    make_regions,
    parse_counts,
)
from computenet.sim.policies import make_policy
from computenet.sim.results import CODE, DEFAULT_EPOCH, SimConfig, SimResult
from computenet.sim.runner import parse_workload
from computenet.sim.simulator import Simulation
from tests.unit.sim.test_cli import _cnet

# Small enough for a unit test, large enough that cycles batch many jobs and pools fill.
WL = "synthetic:jobs=300,days=0.5,seed=4,scale=4"
RECORDS = ("state", "pool", "attempts", "placed", "hold_start", "run_start", "end")
BILLS = ("energy_fen", "service_fen", "transfer_fen", "planned_fen")


@pytest.fixture(scope="module")
def china() -> Network:
    return load_network("china")


def _run(net: Network, policy: Any, wl: str = WL) -> SimResult:
    return Simulation(parse_workload(wl, net), policy, SimConfig()).run()


# ----------------------------------------------------------------- one region is flat


@pytest.mark.parametrize("policy", ["ours", "ours:greedy"])
def test_one_region_of_every_center_schedules_exactly_as_flat(china: Network, policy: str) -> None:
    flat = _run(china, make_policy(policy))
    fed_policy = federated_policy(china, hub_regions(china, 1), policy, "quoted")
    fed = _run(china, fed_policy)
    for name in RECORDS + BILLS:
        a, b = getattr(flat.records, name), getattr(fed.records, name)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert (fed.placements, fed.cycles) == (flat.placements, flat.cycles)
    # The run did exercise both levels, and something was contended.
    assert fed_policy.quotes > 0 and fed_policy.by_region == [flat.placements]
    assert flat.cycles > 10


def test_with_more_regions_the_run_differs_but_every_job_succeeds_once(china: Network) -> None:
    regions = hub_regions(china)
    pol = federated_policy(china, regions, "ours:greedy", "quoted")
    res = _run(china, pol)
    r = res.records
    ok = r.state == CODE[JobState.SUCCEEDED]
    assert ok.all()
    # Placed once each (no failures in this run: one attempt, one placement per job).
    assert res.placements == len(r.state) and (r.attempts == 0).all()
    assert sum(pol.by_region) == res.placements
    # Each job ran where its region's members are, and the policy's count agrees.
    region_of = regions.of()
    idx = res.workload.network
    centers = [idx.centers[int(c)].id for c in _pool_center(res)]
    per_region = Counter(region_of[c] for c in centers)
    assert [per_region[k] for k in range(len(regions))] == pol.by_region


def _pool_center(res: SimResult) -> np.ndarray:
    from computenet.scheduler.index import network_index

    idx = network_index(res.workload.network)
    center: np.ndarray = idx.pool_center[res.records.pool]
    return center


# ----------------------------------------------------------------- one cycle


@pytest.mark.parametrize("pricing", ["quoted", "declared", "declared-per-chip"])
def test_a_cycle_places_each_job_once_inside_its_region_without_overbooking(
    china: Network, pricing: str
) -> None:
    wl = parse_workload(WL, china)
    jobs = [wl.request(i, DEFAULT_EPOCH) for i in range(120)]
    now = DEFAULT_EPOCH + timedelta(hours=3)
    jobs = [j for j in jobs if j.submitted_at is not None and j.submitted_at <= now] or jobs
    snap = build_snapshot(china, now)
    # A tight network: few chips free in the first hours, so regions compete.
    snap.free[:, :6] = np.minimum(snap.free[:, :6], 8)
    regions = hub_regions(china, 4)
    pol = federated_policy(china, regions, "ours:greedy", pricing)
    decisions = pol(snap, jobs)
    assert [d.job_id for d in decisions] == [j.id for j in jobs]
    used = np.zeros_like(snap.free)
    region_of = regions.of()
    placed = [d for d in decisions if d.placement is not None]
    assert placed, "nothing placed: the test says nothing"
    idx = snap.index
    for d in placed:
        pl = d.placement
        assert pl is not None
        p = idx.pool_of[(pl.center, pl.chip)]
        s0 = (
            0
            if pl.planned_start <= snap.now
            else int(np.floor((pl.planned_start - snap.hour0).total_seconds() / 3600.0))
        )
        s1 = int(np.ceil((pl.finish - snap.hour0).total_seconds() / 3600.0))
        used[p, s0 : min(max(s1, s0 + 1), HORIZON_SLOTS)] += pl.count
    assert (used <= snap.free).all()
    assert sum(pol.by_region) == len(placed)
    assert {region_of[d.placement.center] for d in placed if d.placement} <= set(range(4))


# ----------------------------------------------------------------- capacity


@dataclass
class _View:
    """What `NetworkBackend.capacity` reads of a child center."""

    pools: list[dict[str, Any]]
    online: bool
    queued: int = 0
    backend: str = "local"
    id: str = "c"


@dataclass
class _Child:
    """The child's user API as the backend's capacity reads it: centers, and no quote."""

    views: list[_View]

    def centers(self) -> list[_View]:
        return self.views

    def quote(self, *_: Any, **__: Any) -> Any:
        raise ComputeNetError("the child is away", field="url")


def test_capacity_aggregation_is_the_network_backends_rule() -> None:
    rng = random.Random(9)
    for _ in range(200):
        centers = []
        for _c in range(rng.randint(1, 5)):
            pools = []
            for chip in rng.sample(["H100", "A100", "910B"], rng.randint(1, 3)):
                total = rng.randint(1, 16)
                free = rng.randint(0, total)
                pool: dict[str, Any] = {"chip": chip, "total": total, "free": free}
                if rng.random() < 0.3:  # the child center is itself a region
                    pool["largest_free"] = rng.randint(0, free)
                pools.append(pool)
            centers.append(_View(pools, rng.random() < 0.8))
        ours = aggregate_capacity(
            (
                c.online,
                [(p["chip"], p["total"], p["free"], p.get("largest_free")) for p in c.pools],
            )
            for c in centers
        )
        declared = {p.chip: p.total for p in ours}
        backend = NetworkBackend(
            pools=declared,
            client=_Child(centers),  # type: ignore[arg-type]
            capacity_ttl_s=0,
        )
        # The shape of capacity (total, free, largest_free); the backend also reports use.
        theirs = {(p.chip, p.total, p.free, p.largest_free) for p in backend.capacity()}
        assert {(p.chip, p.total, p.free, p.largest_free) for p in ours} == theirs


def test_the_national_snapshot_sums_the_calendar_and_caps_now_at_one_center(
    china: Network,
) -> None:
    regions = make_regions(
        china,
        {
            "north": ["zhangjiakou", "horinger", "zhongwei", "qingyang"],
            "rest": ["yrd-demo-zone", "wuhu", "shaoguan", "tianfu", "chongqing", "guian"],
        },
        "regions",
    )
    pol = federated_policy(china, regions, "ours:greedy", "declared")
    snap = build_snapshot(china, DEFAULT_EPOCH)
    idx = snap.index
    # H800 in the north: zhangjiakou 512, horinger 1024, zhongwei 1024.
    snap.free[idx.pool_of[("zhangjiakou", "H800")]] = 300
    snap.free[idx.pool_of[("horinger", "H800")]] = 200
    snap.free[idx.pool_of[("zhongwei", "H800")], 0] = 100
    snap.online[[c.id for c in china.centers].index("zhangjiakou")] = False
    nat = pol.national_snapshot(snap)
    row = nat.index.pool_of[("region-0", "H800")]
    # Slot 0: online centers only (200 + 100), one job at most the largest (200).
    assert nat.free[row, 0] == 200
    # Later slots: the calendar summed (the offline center comes back).
    assert nat.free[row, 1] == 300 + 200 + 1024
    assert nat.index.pool_total[row] == 512 + 1024 + 1024


def test_per_chip_a_region_declares_each_chip_at_the_price_of_the_centers_that_have_it(
    china: Network,
) -> None:
    regions = make_regions(
        china,
        {
            "north": ["zhangjiakou", "horinger", "zhongwei", "qingyang"],
            "rest": ["yrd-demo-zone", "wuhu", "shaoguan", "tianfu", "chongqing", "guian"],
        },
        "regions",
    )
    nat = declared_network(china, regions, per_chip=True)
    by_id = {c.id: c for c in china.centers}
    # The northern H200s are all at Zhongwei: its declaration is Zhongwei's own price.
    (h200,) = [c for c in nat.centers if c.pools[0].chip == "H200"]
    assert h200.id.startswith("region-0-")
    assert h200.tariff == by_id["zhongwei"].tariff and h200.pue == by_id["zhongwei"].pue
    # Every (region, chip) once, chips summed.
    assert sum(c.total_chips for c in nat.centers) == sum(c.total_chips for c in china.centers)
    pol = federated_policy(china, regions, "ours:greedy", "declared-per-chip")
    nat_snap = pol.national_snapshot(build_snapshot(china, DEFAULT_EPOCH))
    row = nat_snap.index.pool_of[(h200.id, "H200")]
    assert nat_snap.free[row, 1] == 512


def test_the_declared_region_is_its_centers_summed_and_averaged(china: Network) -> None:
    regions = hub_regions(china, 2)
    nat = declared_network(china, regions)
    assert len(nat.centers) == 2
    for c, ids in zip(nat.centers, regions.members, strict=True):
        members = [m for m in china.centers if m.id in ids]
        assert c.total_chips == sum(m.total_chips for m in members)
        prices = [m.tariff.hourly[3] for m in members]
        assert min(prices) <= c.tariff.hourly[3] <= max(prices)
    # The link between the two regions is the best of the links between their members.
    a, b = (set(ms) for ms in regions.members)
    crossing = [lk for lk in china.links if {lk.a, lk.b} & a and {lk.a, lk.b} & b]
    (between,) = [lk for lk in nat.links if {lk.a, lk.b} == {"region-0", "region-1"}]
    assert between.price_per_gb == min(lk.price_per_gb for lk in crossing)
    assert between.latency_ms == min(lk.latency_ms for lk in crossing)


# ----------------------------------------------------------------- bills


def test_bills_sum_over_regions_to_the_national_total(china: Network) -> None:
    regions = hub_regions(china, 4)
    res = _run(china, federated_policy(china, regions, "ours:greedy", "quoted"))
    r = res.records
    per_job = r.energy_fen + r.service_fen + r.transfer_fen
    region_of = regions.of()
    centers = [china.centers[int(c)].id for c in _pool_center(res)]
    per_region = Counter[int]()
    for c, fen in zip(centers, per_job, strict=True):
        per_region[region_of[c]] += int(fen)
    total = res.totals.energy_fen + res.totals.service_fen + res.totals.transfer_fen
    assert sum(per_region.values()) == total == int(per_job.sum())
    assert len([k for k, v in per_region.items() if v > 0]) >= 2


def test_compare_federation_reports_flat_first_and_the_gap(china: Network) -> None:
    wl = parse_workload("synthetic:jobs=80,days=0.25,seed=3", china)
    rows = compare_federation(wl, [hub_regions(china, 1)], "ours:greedy", ["quoted"])
    assert rows[0].label == "flat" and len(rows) == 2
    assert rows[1].cost_vs_flat_pct == 0.0
    assert rows[1].metrics.total_cny == rows[0].metrics.total_cny
    json.dumps([r.as_dict() for r in rows])


# ----------------------------------------------------------------- regions


def test_hub_regions_group_every_center_once(china: Network) -> None:
    hubs = {c.hub for c in china.centers}
    for n in (1, 2, 4, None):
        regs = hub_regions(china, n)
        assert len(regs) == (len(hubs) if n is None else n)
        flat = [c for ms in regs.members for c in ms]
        assert sorted(flat) == sorted(c.id for c in china.centers)
    assert parse_counts("1,2,all", china) == [1, 2, None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [zhangjiakou]\nb: [nowhere]\n", "unknown center 'nowhere'"),
        ("a: [zhangjiakou]\nb: [zhangjiakou]\n", "is in regions"),
        ("a: [zhangjiakou]\n", "centers in no region"),
        ("- zhangjiakou\n", "must map region names"),
        ("a: zhangjiakou\n", "needs a list"),
    ],
)
def test_a_bad_regions_file_names_the_problem(
    china: Network, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "regions.yaml"
    path.write_text(text)
    with pytest.raises(ValidationError) as err:
        load_regions(china, path)
    assert message in err.value.message
    assert err.value.field is not None and err.value.field.startswith("--regions")


def test_counts_out_of_range_and_baselines_are_refused(china: Network) -> None:
    with pytest.raises(ValidationError) as err:
        parse_counts("1,99", china)
    assert err.value.field == "--counts"
    with pytest.raises(ValidationError) as err:
        federated_policy(china, hub_regions(china, 2), "random")
    assert err.value.field == "--policy"


# ----------------------------------------------------------------- CLI


def test_cli_prints_flat_and_two_level_rows(tmp_path: Path) -> None:
    regions = tmp_path / "regions.yaml"
    regions.write_text(
        "north: [zhangjiakou, horinger, zhongwei, qingyang]\n"
        "south: [yrd-demo-zone, wuhu, shaoguan, tianfu, chongqing, guian]\n"
    )
    code, out, _ = _cnet(
        "federation",
        "--network",
        "china",
        "--workload",
        "synthetic:jobs=60,days=0.25,seed=5",
        "--regions",
        str(regions),
        "--policy",
        "ours:greedy",
        "--json",
    )
    assert code == 0, out
    data = json.loads(out)
    assert [r["regions"] for r in data["runs"]] == [0, 2, 2, 2]
    assert {r["pricing"] for r in data["runs"][1:]} == {
        "quoted",
        "declared",
        "declared-per-chip",
    }
    assert all(r["succeeded"] == 60 for r in data["runs"])


@pytest.mark.parametrize(
    ("args", "fld"),
    [
        (["--counts", "0"], "--counts"),
        (["--pricing", "cheap"], "--pricing"),
        (["--policy", "random"], "--policy"),
        (["--regions", "/nonexistent.yaml"], "--regions"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args: list[str], fld: str) -> None:
    code, _out, err = _cnet(
        "federation", "--network", "china", "--workload", "synthetic:jobs=5,days=0.1", *args
    )
    assert code == 2
    assert fld in err and len(err.strip().splitlines()) == 1


def test_quotes_in_one_pass_are_each_regions_own_placement(china: Network) -> None:
    from computenet.scheduler.framework import place
    from computenet.scheduler.plugins import PROFILES

    wl = parse_workload(WL, china)
    snap = build_snapshot(china, DEFAULT_EPOCH + timedelta(hours=5))
    snap.free[:, :4] = np.minimum(snap.free[:, :4], 16)
    regions = hub_regions(china, 4)
    pol = federated_policy(china, regions, "ours:greedy", "quoted")
    views = [pol.region_view(snap, r) for r in range(len(regions))]
    prof = PROFILES["min-cost"]
    checked = 0
    for i in range(0, 300, 7):
        job = wl.request(i, DEFAULT_EPOCH)
        if job.latency_class != "batch" or (job.deadline and job.deadline <= snap.now):
            continue
        best = pol._best_quote(snap, views, list(range(len(regions))), job, prof, snap.free)
        own = [place(v, snap.free.copy(), job, prof, explain_it=False) for v in views]
        placed = [(float(d.placement.total_cny), r) for r, d in enumerate(own) if d.placement]
        if best is None:
            assert not placed
            continue
        r, hold = best
        pl = own[r].placement
        assert pl is not None and hold is not None
        # The winner's hold is the pool its own placement would take, at the cheapest price.
        assert snap.index.pool_of[(pl.center, pl.chip)] == hold[0]
        assert float(pl.total_cny) <= min(placed)[0] + 0.011
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("policy", ["ours", "ours:greedy"])
def test_quoting_splits_a_one_by_one_strategy_exactly_by_region(
    china: Network, policy: str
) -> None:
    # One by one in the scheduler's order, the best of the regions' best quotes is the
    # best option overall: every hub a region, the decisions are still the flat ones.
    flat = _run(china, make_policy(policy))
    pol = federated_policy(china, hub_regions(china), policy, "quoted")
    fed = _run(china, pol)
    for name in RECORDS + BILLS:
        a, b = getattr(flat.records, name), getattr(fed.records, name)
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert sum(1 for n in pol.by_region if n) >= 3  # the work did spread over regions
