"""The serving simulator (sim/serving.py): a generated trace in the Azure LLM format, the china
network; what each policy must hold whatever the numbers (nothing read from ../shared)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from computenet.catalog import load_network
from computenet.errors import ValidationError
from computenet.gateway.scoring import tariff_now
from computenet.metering.pricing import charge
from computenet.model import Network
from computenet.model.service import Autoscale, parse_service_text
from computenet.sim.serving import (
    POLICIES,
    PREFILL_TOKENS_PER_PFLOPS,
    WORKLOAD_CLASS,
    Group,
    ServingRun,
    ServingWorkload,
    autoscale_tick,
    diurnal_share,
    goal,
    hysteresis,
    load_azure_llm,
    parse_serving_policies,
    parse_serving_workload,
    replica_speed,
    window_peak_inflight,
)


@pytest.fixture(scope="module")
def china() -> Network:
    return load_network("china")


def write_trace(path: Path, seconds: float = 1200.0, seed: int = 3) -> Path:
    """Requests over `seconds` whose rate rises from 3.2/s to 12.8/s and falls back (a smooth
    swell, as the real trace's: a sudden step would outrun any reactive autoscaler)."""
    rng = np.random.default_rng(seed)
    peak = 12.8
    cand = np.cumsum(rng.exponential(1.0 / peak, int(seconds * peak * 1.2)))
    cand = cand[cand < seconds]
    rate = 8.0 * (1.0 - 0.6 * np.cos(2 * np.pi * cand / seconds))
    t = cand[rng.random(len(cand)) < rate / peak]
    start = dt.datetime(2023, 11, 16, 13, 0, 0)
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for x in t:
        when = start + dt.timedelta(seconds=float(x))
        ctx = int(rng.integers(50, 3000))
        gen = int(rng.integers(5, 400))
        lines.append(f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond:06d}0,{ctx},{gen}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(tmp_path_factory.mktemp("llm") / "trace.csv")


@pytest.fixture(scope="module")
def work(china: Network, trace_path: Path) -> ServingWorkload:
    # The autoscaler compares a 30 s mean of the in-flight requests (the service's default
    # `autoscale.lookback_s`, Ray Serve's look-back): with 2 s means alone, a noisy load holds
    # scale-ups back (docs/simulator.md).
    return parse_serving_workload(f"azure-llm:{trace_path},seed=5", china)


@pytest.fixture(scope="module")
def runs(china: Network, work: ServingWorkload) -> dict[str, ServingRun]:
    out = {}
    for p in POLICIES:
        run = ServingRun(china, work, p)
        run.result = run.run()  # type: ignore[attr-defined]
        out[p] = run
    return out


# ----------------------------------------------------------------- input


def test_trace_is_read_in_order_with_seven_digit_fractions(trace_path: Path) -> None:
    tr = load_azure_llm(trace_path)
    assert 8500 < len(tr) < 10700
    assert tr.t_s[0] == 0.0 and np.all(np.diff(tr.t_s) >= 0)
    assert 1150 < tr.t_s[-1] <= 1200.001
    assert tr.context.min() >= 50 and tr.generated.max() < 400


@pytest.mark.parametrize(
    ("row", "field_has"),
    [
        ("2023-11-16 18:15:46.68,12", "trace.csv:3"),
        ("yesterday,12,4", "trace.csv:3"),
        ("2023-11-16 18:15:46.68,12,x", "trace.csv:3"),
        ("2023-11-16 18:15:46.68,-1,4", "trace.csv:3"),
    ],
)
def test_a_bad_row_is_named_by_file_and_line(tmp_path: Path, row: str, field_has: str) -> None:
    p = tmp_path / "trace.csv"
    p.write_text(f"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1,3,4\n{row}\n")
    with pytest.raises(ValidationError) as e:
        load_azure_llm(p)
    assert e.value.field == field_has


def test_bad_header_missing_file_and_bad_options(china: Network, trace_path: Path) -> None:
    bad = trace_path.parent / "bad.csv"
    bad.write_text("time,prompt,output\n")
    for spec, field in [
        (f"azure-llm:{bad}", "--workload"),
        ("azure-llm:/no/such/file.csv", "--workload"),
        (f"azure-llm:{trace_path},colour=red", "--workload"),
        (f"azure-llm:{trace_path},rate=0", "--workload rate"),
        (f"azure-llm:{trace_path},hour=24", "--workload hour"),
        (f"azure-llm:{trace_path},lookback=1", "--workload lookback"),
        (f"azure-llm:{trace_path},sites=atlantis:1", "--workload sites"),
        (f"azure-llm:{trace_path},service=/no/such.yaml", "--workload service"),
    ]:
        with pytest.raises(ValidationError) as e:
            parse_serving_workload(spec, china)
        assert e.value.field == field, spec
    with pytest.raises(ValidationError):
        parse_serving_policies("nearest,fastest")
    assert parse_serving_policies("all") == list(POLICIES)


def test_a_service_file_is_parsed_by_the_service_model(china: Network, trace_path: Path) -> None:
    svc = trace_path.parent / "svc.yaml"
    svc.write_text(
        "name: small\ncommand: serve\nchips: {count: 2, types: [H800]}\n"
        "target_inflight: 6\nlatency: {p99_ttfb_ms: 800}\n"
    )
    w = parse_serving_workload(f"azure-llm:{trace_path},service={svc},batch=9", china)
    assert w.spec.name == "small" and w.spec.chips.count == 2 and w.batch == 9
    res = ServingRun(china, w, "nearest").run()
    assert all(
        k in ("zhangjiakou", "shaoguan", "horinger", "yrd-demo-zone", "zhongwei")
        for k in res.replica_hours_by_center
    )
    svc.write_text("name: small\ncommand: serve\nreplicas: {min: 3, max: 1}\n")
    with pytest.raises(ValidationError) as e:
        parse_serving_workload(f"azure-llm:{trace_path},service={svc}", china)
    assert e.value.field == "replicas"


def test_origins_are_seeded_and_weighted(china: Network, trace_path: Path) -> None:
    a = parse_serving_workload(f"azure-llm:{trace_path},seed=1", china)
    b = parse_serving_workload(f"azure-llm:{trace_path},seed=1", china)
    assert np.array_equal(a.origin, b.origin)
    only = parse_serving_workload(f"azure-llm:{trace_path},sites=beijing:1/chengdu:0", china)
    assert set(only.sites[i] for i in only.origin) == {"beijing"}


# ----------------------------------------------------------------- invariants of every policy


@pytest.mark.parametrize("policy", POLICIES)
def test_every_request_is_served_and_ttft_is_never_below_its_rtt(
    runs: dict[str, ServingRun], policy: str
) -> None:
    run = runs[policy]
    assert np.all(run.served_by >= 0) and not np.isnan(run.ttft).any()
    rtt = np.array(
        [run.replicas[k].rtt_s[o] for k, o in zip(run.served_by, run.work.origin, strict=True)]
    )
    prefill = run.work.trace.context / np.array(
        [run.replicas[k].prefill_tps for k in run.served_by]
    )
    assert np.all(run.ttft >= rtt + prefill - 1e-9)
    assert np.all(run.e2e >= run.ttft)
    assert rtt.max() > 0  # the sites are not at the centers


@pytest.mark.parametrize("policy", POLICIES)
def test_cost_is_the_replica_hours_priced_by_the_metering_charge(
    runs: dict[str, ServingRun], policy: str
) -> None:
    run = runs[policy]
    res = run.result  # type: ignore[attr-defined]
    total = Decimal(0)
    kwh = 0.0
    for r in run.replicas:
        assert r.stopped is not None and r.stopped >= r.started
        ch = charge(
            r.opt.center,
            r.opt.chip,
            run.net.throughput,
            WORKLOAD_CLASS,
            run.count,
            run.work.epoch + dt.timedelta(seconds=r.started),
            run.work.epoch + dt.timedelta(seconds=r.stopped),
        )
        total += ch.total_cny
        kwh += ch.kwh
    assert res.total_cny == pytest.approx(float(total), abs=1e-9)
    assert res.kwh == pytest.approx(kwh)
    assert res.cost_per_mtok_cny == pytest.approx(res.total_cny / (run.work.tokens / 1e6))
    assert sum(res.replica_hours_by_center.values()) == pytest.approx(res.replica_hours, abs=1e-3)


def test_static_peak_never_scales_and_sits_at_each_sites_nearest_center(
    runs: dict[str, ServingRun],
) -> None:
    run = runs["static-peak"]
    assert run.result.scale_events == 0  # type: ignore[attr-defined]
    end = max(r.stopped or 0.0 for r in run.replicas)
    assert all(r.started == 0.0 and r.stopped == end for r in run.replicas)
    for s in range(len(run.work.sites)):
        near = run.nearest(s).center.id
        served = {run.replicas[k].opt.center.id for k in run.served_by[run.work.origin == s]}
        assert served == {near}


def test_autoscaled_policies_follow_the_burst(runs: dict[str, ServingRun]) -> None:
    """The trace's middle third is 3× as busy: ours starts replicas for it and stops them after."""
    run = runs["ours"]
    assert run.result.scale_events > 0  # type: ignore[attr-defined]
    late = [r for r in run.replicas if r.started > 0]
    assert late and all(r.ready_at == r.started + run.work.startup_s for r in late)


def test_ours_meets_the_objective_and_is_cheaper_than_static_peak(
    runs: dict[str, ServingRun],
) -> None:
    res = {p: r.result for p, r in runs.items()}  # type: ignore[attr-defined]
    assert res["ours"].slo_attainment_pct >= 99.0
    assert res["ours"].cost_per_mtok_cny < res["static-peak"].cost_per_mtok_cny
    g = goal(list(res.values()))
    assert g is not None and g["cost_ratio"] == pytest.approx(
        res["ours"].cost_per_mtok_cny / res["static-peak"].cost_per_mtok_cny
    )


def test_cheapest_power_runs_where_power_is_cheapest(
    china: Network, runs: dict[str, ServingRun]
) -> None:
    run = runs["cheapest-power"]
    when = run.work.epoch
    centers = {o.center.id for o in run.opts}
    cheapest = min(tariff_now(china, c, when) for c in centers)
    for r in run.replicas:
        assert tariff_now(china, r.opt.center.id, when) == cheapest


# ----------------------------------------------------------------- routing


def _busy(run: ServingRun, loads: list[int]) -> None:
    run.live = []
    for k, load in enumerate(loads):
        run.start_replica(run.groups[0], 0.0, warm=True)
        run.replicas[k].inflight = load
    run.refresh()


def test_least_loaded_picks_the_fewest_in_flight(china: Network, work: ServingWorkload) -> None:
    run = ServingRun(china, work, "least-loaded")
    rng = np.random.default_rng(0)
    for _ in range(20):
        run.replicas.clear()
        for g in run.groups:
            g.replicas.clear()
        loads = [int(x) for x in rng.integers(0, 9, size=5)]
        _busy(run, loads)
        r = run.route(0, 0, 0.0)
        assert r.inflight == min(loads)


def test_round_robin_visits_every_replica_in_turn(china: Network, work: ServingWorkload) -> None:
    run = ServingRun(china, work, "round-robin")
    _busy(run, [0, 5, 9, 1])
    seen = [run.route(0, 0, 0.0).idx for _ in range(8)]
    assert sorted(seen[:4]) == [0, 1, 2, 3] and seen[:4] == seen[4:]


def test_nearest_routes_to_the_lowest_rtt(china: Network, work: ServingWorkload) -> None:
    run = ServingRun(china, work, "nearest")
    for g in run.groups:  # one deployment per site, at its nearest center
        run.start_replica(g, 0.0, warm=True)
    run.refresh()
    assert len({r.opt.center.id for r in run.live}) == len(run.groups) > 1
    for s in range(len(work.sites)):
        r = run.route(0, s, 0.0)
        assert r.rtt_s[s] == min(x.rtt_s[s] for x in run.live)


# ----------------------------------------------------------------- autoscaling


def test_hysteresis_is_the_servers_autoscale() -> None:
    """The same target sequence moves the server's keeper and the simulator's group alike."""
    from computenet.server.services import autoscale

    spec = parse_service_text(
        "name: s\ncommand: x\nreplicas: {min: 1, max: 20}\ntarget_inflight: 2\n"
        "autoscale: {up_delay_s: 6, down_delay_s: 20}\n"
    )
    assert spec.autoscale is not None
    rng = np.random.default_rng(7)
    row = SimpleNamespace(name="s", wanted=1, above_since=None, below_since=None, load={})
    g = Group((0,), 1, None, True)
    t = 0.0
    for _ in range(400):
        t += 2.0
        inflight = float(rng.choice([0.5, 3.0, 9.0, 15.0]) if rng.random() < 0.1 else 4.0)
        row.load = {"gw": [inflight, t]}
        autoscale(row, spec, t)  # type: ignore[arg-type]
        from computenet.model.service import replicas_for

        hysteresis(g, replicas_for(spec, inflight), t, spec.autoscale)
        assert g.wanted == row.wanted, t


def test_hysteresis_waits_for_its_delays() -> None:
    g = Group((0,), 2, None, True)
    d = Autoscale(up_delay_s=30, down_delay_s=600)
    hysteresis(g, 5, 0.0, d)
    hysteresis(g, 5, 28.0, d)
    assert g.wanted == 2
    hysteresis(g, 5, 30.0, d)
    assert g.wanted == 5
    hysteresis(g, 1, 40.0, d)
    hysteresis(g, 5, 41.0, d)  # back up: the lull restarts
    hysteresis(g, 1, 600.0, d)
    assert g.wanted == 5
    hysteresis(g, 1, 1200.0, d)
    assert g.wanted == 1


def test_window_peak_inflight() -> None:
    # Two requests of 30 s in the first minute (mean 1.0), one of 60 s filling the second.
    peak, first = window_peak_inflight(
        np.array([0.0, 30.0, 60.0]), np.array([30.0, 30.0, 60.0]), 60.0
    )
    assert first == pytest.approx(1.0) and peak == pytest.approx(1.0)
    peak, first = window_peak_inflight(
        np.array([0.0, 0.0, 60.0]), np.array([60.0, 60.0, 6.0]), 60.0
    )
    assert first == pytest.approx(2.0) and peak == pytest.approx(2.0)


def test_a_day_repeats_the_trace_hour_by_hour_with_the_diurnal_share(
    china: Network, trace_path: Path
) -> None:
    one = parse_serving_workload(f"azure-llm:{trace_path}", china)
    day = parse_serving_workload(f"azure-llm:{trace_path},day=1", china)
    assert day.epoch == one.epoch
    hours = (day.t_s // 3600).astype(int)
    assert hours.min() == 0 and hours.max() == 23
    counts = np.bincount(hours, minlength=24)
    local = [(one.epoch.hour + k) % 24 for k in range(24)]
    busiest, quietest = local.index(15), local.index(3)
    assert counts[busiest] > 3 * counts[quietest]
    assert counts.max() <= len(one.t_s) and counts.sum() < 24 * len(one.t_s)
    assert diurnal_share(15) == pytest.approx(1.0) and diurnal_share(3) == pytest.approx(0.2)
    with pytest.raises(ValidationError) as e:
        parse_serving_workload(f"azure-llm:{trace_path},day=2", china)
    assert e.value.field == "--workload day"


def test_the_look_back_is_the_service_files_unless_the_workload_overrides_it(
    china: Network, trace_path: Path
) -> None:
    from computenet.model.service import LOOKBACK_S

    assert parse_serving_workload(f"azure-llm:{trace_path}", china).lookback_s == LOOKBACK_S
    svc = trace_path.parent / "lookback.yaml"
    svc.write_text("name: lb\ncommand: serve\nautoscale: {lookback_s: 8}\n")
    own = parse_serving_workload(f"azure-llm:{trace_path},service={svc}", china)
    assert own.lookback_s == 8.0
    over = parse_serving_workload(f"azure-llm:{trace_path},service={svc},lookback=2", china)
    assert over.lookback_s == 2.0


def test_the_servers_averaged_demand_is_the_simulators() -> None:
    """The same readings every 2 s: the keeper's mean (its `Lookback`) and the simulator's
    tick give the same mean and the same replicas wanted."""
    from computenet.model.service import Lookback, replicas_for
    from computenet.server.services import autoscale

    spec = parse_service_text(
        "name: s\ncommand: x\nreplicas: {min: 1, max: 20}\ntarget_inflight: 2\n"
        "autoscale: {up_delay_s: 6, down_delay_s: 20, lookback_s: 12}\n"
    )
    assert spec.autoscale is not None
    rng = np.random.default_rng(11)
    row = SimpleNamespace(name="s", wanted=1, above_since=None, below_since=None, load={})
    window = Lookback(spec.autoscale.lookback_s)
    g = Group((0,), 1, None, True)
    t, moved = 0.0, 0
    for _ in range(400):
        t += 2.0
        inflight = float(rng.choice([0.5, 3.0, 9.0, 15.0]) if rng.random() < 0.3 else 4.0)
        row.load = {"gw": [inflight, t]}
        server = autoscale(row, spec, t, window)  # type: ignore[arg-type]
        before = g.wanted
        sim = autoscale_tick(g, inflight, t, spec, spec.autoscale.lookback_s, 1)
        moved += g.wanted != before
        assert server == pytest.approx(sim), t
        assert g.wanted == row.wanted, t
    assert moved > 5  # the series made both scale, both ways
    assert replicas_for(spec, 4.0) == 2


def test_placement_starts_from_the_prefill_of_the_p99_prompt_on_the_slowest_chip(
    china: Network, trace_path: Path
) -> None:
    w = parse_serving_workload(f"azure-llm:{trace_path}", china)
    run = ServingRun(china, w, "ours")
    slowest = min(replica_speed(china, o.chip, 1) for o in run.opts)
    p99 = float(np.percentile(w.trace.context, 99))
    assert run.ttfb_prior_ms == pytest.approx(1000.0 * p99 / (slowest * PREFILL_TOKENS_PER_PFLOPS))
    assert run.measured_service_ms([], 0.0) == run.ttfb_prior_ms  # nothing measured yet
    run.run()
    # After the replay the measure is the simulated requests' own, not the prior.
    last = float(w.t_s[-1])
    placed = [r.opt.center.id for r in run.replicas]
    got = run.measured_service_ms(placed, last)
    assert got != run.ttfb_prior_ms and 0.0 <= got < 1000.0 * float(np.nanmax(run.ttft))
