"""Workloads: the synthetic generator, and the Gavel and Alibaba loaders on tiny files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from computenet.catalog import load_network
from computenet.errors import ValidationError
from computenet.model import JobState
from computenet.scheduler.index import network_index
from computenet.sim import SimConfig, Simulation, make_policy, synthetic
from computenet.sim.results import CODE
from computenet.sim.runner import parse_workload
from computenet.sim.traces import gavel_floor_s, gavel_throughput, load_alibaba, load_gavel
from tests.unit.sim.conftest import tiny_network

CMD = "cd %s/x && python3 train.py"


def test_synthetic_workloads_are_reproducible_and_follow_the_seed() -> None:
    net = load_network("china")
    a = synthetic(net, jobs=500, days=2, seed=7)
    b = synthetic(net, jobs=500, days=2, seed=7)
    c = synthetic(net, jobs=500, days=2, seed=8)
    for col in ("arrival", "cls", "count", "cu_hours", "deadline", "data_gb", "data_loc"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    assert not np.array_equal(a.arrival, c.arrival)
    assert len(a) == 500 and np.all(np.diff(a.arrival) >= 0) and a.arrival[-1] < 2 * 86400


def test_synthetic_data_sits_mostly_in_the_east_and_arrivals_peak_by_day() -> None:
    net = load_network("china")
    wl = synthetic(net, jobs=4000, days=3, seed=1)
    nodes = net.node_ids
    region = {c.id: c.region for c in net.centers} | {s.id: s.region for s in net.sites}
    east = np.mean([region[nodes[i]] == "east" for i in wl.data_loc])
    assert east > 0.85
    hours = (wl.arrival // 3600 % 24).astype(int)
    assert np.sum((hours >= 9) & (hours < 17)) > 2 * np.sum(hours < 8)
    has = ~np.isnan(wl.deadline)
    assert 0.7 < has.mean() < 0.9
    assert np.all(wl.deadline[has] > wl.arrival[has])
    req = wl.request(0, SimConfig().epoch)
    assert req.id == "j0000000" and req.cu_hours == wl.cu_hours[0]


def test_bad_workload_specs_name_the_problem() -> None:
    net = tiny_network()
    with pytest.raises(ValidationError, match="unknown synthetic parameter 'jbos'"):
        parse_workload("synthetic:jbos=3", net)
    with pytest.raises(ValidationError, match="unknown workload kind"):
        parse_workload("philly:x", net)
    with pytest.raises(ValidationError, match="throughputs"):
        parse_workload("gavel:x.trace", net)


# ------------------------------------------------------------------------- Gavel


def _gavel_files(tmp: Path) -> tuple[Path, Path]:
    thr = {
        "v100": {
            "('ResNet-18 (batch size 32)', 1)": {"null": 10.0, "('LM (batch size 5)', 1)": [1, 2]},
            "('ResNet-18 (batch size 32)', 2)": {"null": 18.0},
            "('LM (batch size 5)', 1)": {"null": 4.0},
        },
        "p100": {
            "('ResNet-18 (batch size 32)', 1)": {"null": 5.0},
            "('ResNet-18 (batch size 32)', 2)": {"null": 9.0},
            "('LM (batch size 5)', 1)": {"null": 2.0},
        },
        "k80": {
            "('ResNet-18 (batch size 32)', 1)": {"null": 2.0},
            "('ResNet-18 (batch size 32)', 2)": {"null": 0.0},
            "('LM (batch size 5)', 1)": {"null": 1.0},
        },
        "v100_unconsolidated": {},
    }
    tp = tmp / "thr.json"
    tp.write_text(json.dumps(thr))
    trace = tmp / "tiny.trace"
    lines = [
        ("ResNet-18 (batch size 32)", 36000, 0.0, 1),
        ("LM (batch size 5)", 14400, 86400.0, 1),
        ("ResNet-18 (batch size 32)", 72000, 172800.0, 4),  # scale 4 is not measured
    ]
    trace.write_text("".join(f"{t}\t{CMD}\t-step\t1\t{s}\t{a:.6f}\t{n}\n" for t, s, a, n in lines))
    return trace, tp


def test_missing_scale_factors_grow_linearly_from_the_largest_measured() -> None:
    table = {("A", 1): 10.0, ("A", 2): 18.0, ("A", 8): 60.0}
    assert gavel_throughput(table, "A", 2) == 18.0
    assert gavel_throughput(table, "A", 4) == pytest.approx(36.0)
    assert gavel_throughput(table, "A", 32) == pytest.approx(240.0)


def test_gavel_jobs_last_steps_over_throughput_on_their_gpu(tmp_path: Path) -> None:
    trace, tp = _gavel_files(tmp_path)
    wl = load_gavel(load_network("gavel"), trace, tp)
    assert len(wl) == 3 and list(wl.count) == [1, 1, 4]
    r = Simulation(wl, make_policy("ours:fastest"), SimConfig()).run()
    assert np.all(r.records.state == CODE[JobState.SUCCEEDED])
    run = r.records.end - r.records.run_start
    # Alone on the network, each job takes its fastest GPU: V100.
    assert run[0] == pytest.approx(36000 / 10.0, rel=1e-6)
    assert run[1] == pytest.approx(14400 / 4.0, rel=1e-6)
    assert run[2] == pytest.approx(72000 / (18.0 * 4 / 2), rel=1e-6)
    idx = network_index(r.workload.network)
    centers = {r.workload.network.centers[int(idx.pool_center[p])].id for p in r.records.pool}
    assert centers == {"v100"}
    floor = gavel_floor_s(wl, tp, trace)
    assert floor == pytest.approx(np.mean([3600.0, 3600.0, 2000.0]))
    jct = r.records.end - wl.arrival
    assert jct.mean() == pytest.approx(floor, rel=1e-6)


def test_a_gpu_with_zero_throughput_cannot_run_that_job(tmp_path: Path) -> None:
    trace, tp = _gavel_files(tmp_path)
    wl = load_gavel(load_network("gavel"), trace, tp)
    row = wl.network.throughput.efficiency["gavel:ResNet-18 (batch size 32):x4"]
    assert set(row) == {"V100", "P100"}


def test_gavel_jobs_on_a_network_without_those_gpus_are_mapped_and_say_so(tmp_path: Path) -> None:
    trace, tp = _gavel_files(tmp_path)
    wl = parse_workload(f"gavel:{trace},throughputs={tp}", tiny_network())
    text = " | ".join(wl.notes)
    assert "trace GPU K80 is not in network 'tiny'" in text
    assert "A100 runs trace jobs at V100 speed" in text and "H800 runs trace jobs" in text
    r = Simulation(wl, make_policy("ours:fastest"), SimConfig()).run()
    assert np.all(r.records.state == CODE[JobState.SUCCEEDED])
    # Faster chips than a V100: the jobs finish sooner than on the trace's GPUs.
    assert (r.records.end - r.records.run_start)[0] < 3600.0


def test_a_malformed_gavel_line_names_the_line(tmp_path: Path) -> None:
    _, tp = _gavel_files(tmp_path)
    bad = tmp_path / "bad.trace"
    bad.write_text("ResNet-18 (batch size 32)\tcmd\t-step\t1\t100\n")
    with pytest.raises(ValidationError) as e:
        load_gavel(load_network("gavel"), bad, tp)
    assert e.value.field == "bad.trace:1"


# ------------------------------------------------------------------------- Alibaba

PODS = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
    """pod-0,12000,16384,1,1000,V100M16|V100M32,BE,Succeeded,100,7300,100
pod-1,6000,12288,1,460,,LS,Running,200,3800,200
pod-2,4000,8192,0,0,,BE,Succeeded,300,2100,300
pod-3,4000,8192,1,1000,,BE,Pending,400,900,
pod-4,8000,8192,2,1000,T4,Burstable,Failed,500,4100,500
"""
)
NODES = """sn,cpu_milli,memory_mib,gpu,model
node-0,64000,262144,8,T4
node-1,64000,262144,2,P100
node-2,64000,262144,8,T4
"""


def test_alibaba_pods_become_jobs_and_the_loader_says_what_it_mapped(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text(PODS)
    nodes = tmp_path / "nodes.csv"
    nodes.write_text(NODES)
    net = tiny_network()
    wl = load_alibaba(net, pods, nodes)
    assert len(wl) == 4  # pod-3 never ran
    text = " | ".join(wl.notes)
    assert "1 pods never ran" in text
    assert "1 pods asked for a fraction of a GPU" in text
    assert "trace GPU V100M16 → " in text and "trace GPU T4 → " in text
    assert list(wl.count) == [1, 1, 1, 2]
    assert wl.classes[wl.cls[2]] == "cpu-batch"
    assert wl.classes[wl.cls[1]] == "inference"
    assert wl.arrival[0] == 0.0
    r = Simulation(wl, make_policy("ours:fastest"), SimConfig()).run()
    assert np.all(r.records.state == CODE[JobState.SUCCEEDED])


def test_alibaba_pods_on_their_own_gpus_run_as_long_as_in_the_trace(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text(PODS.splitlines()[0] + "\n" + PODS.splitlines()[1] + "\n")
    wl = parse_workload(f"alibaba:{pods}", load_network("gavel"))
    assert "trace GPU V100M16 → V100" in " | ".join(wl.notes)
    r = Simulation(wl, make_policy("ours:fastest"), SimConfig()).run()
    assert (r.records.end - r.records.run_start)[0] == pytest.approx(7200.0, rel=1e-6)


def test_an_alibaba_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    pods = tmp_path / "pods.csv"
    pods.write_text("name,num_gpu\np,1\n")
    with pytest.raises(ValidationError, match="lacks column"):
        load_alibaba(tiny_network(), pods)
