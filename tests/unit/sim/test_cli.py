"""`cnet sim run | compare | sweep` on tiny workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from computenet.cli.sim import sim_app
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sim.runner import sweep, sweep_tasks

WL = "synthetic:jobs=40,days=0.5,seed=2,max_count=8,scale=0.3"


def _cnet(*args: str) -> tuple[int, str, str]:
    """Run `cnet sim …` the way the main app mounts it."""
    app = typer.Typer()
    app.add_typer(sim_app, name="sim")

    @app.callback()
    def _root() -> None:
        """cnet"""

    res = CliRunner().invoke(app, ["sim", *args])
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    from tests.unit.sim.conftest import tiny_network

    net = tiny_network()
    path = tmp_path / "tiny.yaml"
    import yaml

    raw = {
        "name": "tiny",
        "auto_links": {"bandwidth_gbps": 10, "price_per_gb": 0.05},
        "centers": [
            c.model_dump(mode="json", exclude={"tariff"})
            | {"tariff": {"flat": 0.8 if c.id == "east" else 0.36}}
            for c in net.centers
        ],
        "sites": [s.model_dump(mode="json") for s in net.sites],
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_sim_run_prints_the_figures_of_one_policy(tiny_file: Path) -> None:
    code, out, _ = _cnet(
        "run", "--network", str(tiny_file), "--workload", WL, "--policy", "ours", "-q"
    )
    assert code == 0, out
    assert "ours" in out and "succeeded" in out and "jobs/s" in out


def test_sim_run_json(tiny_file: Path) -> None:
    code, out, _ = _cnet("run", "-n", str(tiny_file), "-w", WL, "-p", "random", "--json")
    assert code == 0
    data = json.loads(out)
    row = data["policies"][0]
    assert row["name"] == "random" and row["jobs"] == 40 and row["total_cny"] > 0


def test_sim_compare_writes_plots_and_a_self_contained_report(
    tiny_file: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "report"
    code, out, _ = _cnet(
        "compare",
        "-n",
        str(tiny_file),
        "-w",
        WL,
        "--policies",
        "ours,random,cheapest-energy",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, out
    data = json.loads(out)
    names = [p["name"] for p in data["policies"]]
    assert names == ["ours", "random", "cheapest-energy"]
    assert data["bound_cny"] > 0
    for p in data["policies"]:
        assert {"total_cny", "deadline_miss_pct", "avg_jct_s", "ratio_to_bound"} <= set(p)
        assert p["ratio_to_bound"] == pytest.approx(p["total_cny"] / data["bound_cny"])
    for name in ("cost_vs_misses.png", "utilization.png", "jct_cdf.png", "report.html"):
        assert (out_dir / name).stat().st_size > 1000
    html = (out_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "<img" in html and 'src="http' not in html
    (t,) = data["tradeoffs"]
    assert f"ours saves ¥{t['saved_cny']:,.0f}" in html and "patience for jobs without" in html


def test_bad_input_is_one_line_and_exit_2(tiny_file: Path) -> None:
    code, _out, err = _cnet("run", "-n", str(tiny_file), "-w", "synthetic:jobz=3", "-q")
    assert code == 2
    assert err.strip().startswith("error: workload: unknown synthetic parameter 'jobz'")
    assert len(err.strip().splitlines()) == 1
    code, _out, err = _cnet("compare", "-n", str(tiny_file), "-w", WL, "--policies", "ours,fifo")
    assert code == 2 and "unknown policy 'fifo'" in err


def test_a_sweep_runs_every_combination_in_local_processes(tiny_file: Path) -> None:
    tasks = sweep_tasks(str(tiny_file), [WL], ["ours", "random"], {"seed": ["1", "2"]})
    assert len(tasks) == 4
    rows, used = sweep(tasks, backend="local", workers=2)
    assert used == "local"
    assert sorted((r["policy"], r["workload"][-6:]) for r in rows) == sorted(
        (p, f"seed={s}") for p in ("ours", "random") for s in ("1", "2")
    )
    assert all(r["jobs"] == 40 and r["patience_h"] == DEFAULT_PATIENCE_H for r in rows)


def test_compare_says_what_the_savings_cost_in_job_completion_time(tiny_file: Path) -> None:
    args = ("compare", "-n", str(tiny_file), "-w", WL, "--policies", "ours,random,cheapest-energy")
    code, out, _ = _cnet(*args, "--no-bound", "--patience", "2", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["patience_h"] == 2.0
    by = {p["name"]: p for p in data["policies"]}
    (t,) = data["tradeoffs"]
    cheap = min(("random", "cheapest-energy"), key=lambda n: by[n]["total_cny"])
    assert t["policy"] == "ours" and t["baseline"] == cheap
    assert t["saved_cny"] == pytest.approx(by[cheap]["total_cny"] - by["ours"]["total_cny"])
    assert t["extra_avg_jct_h"] == pytest.approx(
        (by["ours"]["avg_jct_s"] - by[cheap]["avg_jct_s"]) / 3600
    )
    assert t["extra_p95_jct_h"] == pytest.approx(
        (by["ours"]["p95_jct_s"] - by[cheap]["p95_jct_s"]) / 3600
    )
    code, out, _ = _cnet(*args, "--no-bound", "--patience", "2", "-q")
    assert code == 0, out
    header = next(line for line in out.splitlines() if "total ¥" in line)
    # JCT sits next to cost, and the table is followed by what ours saves and at what JCT.
    assert header.index("avg JCT h") < header.index("p95 JCT h") < header.index("kWh")
    assert f"ours saves ¥{t['saved_cny']:,.0f}" in out and "average JCT" in out
    assert "patience 2 h" in out


@pytest.mark.parametrize("bad", ["-1", "25", "nan"])
def test_a_bad_patience_is_one_line_and_exit_2(tiny_file: Path, bad: str) -> None:
    for cmd in ("run", "compare", "sweep"):
        code, _out, err = _cnet(cmd, "-n", str(tiny_file), "-w", WL, f"--patience={bad}", "-q")
        assert code == 2, (cmd, err)
        assert err.strip().startswith("error: --patience: "), err
        assert len(err.strip().splitlines()) == 1
