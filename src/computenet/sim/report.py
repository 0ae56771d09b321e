"""Comparison reports: PNG plots (matplotlib, Agg) and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from computenet.model import JobState
from computenet.sim.metrics import COLUMNS, cell, hub_utilization, tradeoffs
from computenet.sim.results import CODE
from computenet.sim.runner import Comparison

__all__ = ["COLUMNS", "PLOTS", "cell", "write_report"]


def plot_cost_vs_misses(cmp: Comparison, path: Path) -> None:
    """Total ¥ against deadline misses, one point per policy (the bound as a line)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in cmp.metrics:
        ax.scatter(m.deadline_miss_pct, m.total_cny, s=50)
        ax.annotate(
            m.name,
            (m.deadline_miss_pct, m.total_cny),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
        )
    if cmp.bound is not None:
        ax.axhline(cmp.bound.cny, color="grey", linestyle="--", linewidth=1)
        ax.annotate(
            "LP lower bound",
            (0, cmp.bound.cny),
            textcoords="offset points",
            xytext=(2, -11),
            fontsize=8,
            color="grey",
        )
    ax.set_xlabel("deadline misses (%)")
    ax.set_ylabel("total cost (¥)")
    ax.set_title("Cost against deadline misses")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_utilization(cmp: Comparison, path: Path) -> None:
    """Per-hub share of chips in use, hour by hour, one panel per policy."""
    n = len(cmp.results)
    cols = min(n, 2)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(6.5 * cols, 2.8 * rows), squeeze=False, sharey=True
    )
    for ax, (name, r) in zip(axes.ravel(), cmp.results.items(), strict=False):
        for hub, series in hub_utilization(r).items():
            ax.plot(np.arange(series.size) / 24.0, 100 * series, linewidth=0.8, label=hub)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("day")
        ax.set_ylabel("chips in use (%)")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    handles, labels = axes.ravel()[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_jct_cdf(cmp: Comparison, path: Path) -> None:
    """CDF of job completion time (completion − arrival) per policy, log scale."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    done = CODE[JobState.SUCCEEDED]
    for name, r in cmp.results.items():
        ok = r.records.state == done
        jct = np.sort((r.records.end - r.workload.arrival)[ok]) / 3600.0
        if jct.size:
            ax.plot(np.maximum(jct, 1e-3), np.arange(1, jct.size + 1) / jct.size, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (h)")
    ax.set_ylabel("share of jobs")
    ax.set_title("CDF of job completion time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {
    "cost_vs_misses.png": plot_cost_vs_misses,
    "utilization.png": plot_utilization,
    "jct_cdf.png": plot_jct_cdf,
}


def write_report(cmp: Comparison, out: Path) -> list[Path]:
    """Write the PNGs, results.json and report.html (PNGs inlined) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in PLOTS.items():
        fn(cmp, out / name)
        written.append(out / name)
    (out / "results.json").write_text(json.dumps(cmp.as_json(), indent=2), "utf-8")
    written.append(out / "results.json")
    (out / "report.html").write_text(_html(cmp, out), "utf-8")
    written.append(out / "report.html")
    return written


def _html(cmp: Comparison, out: Path) -> str:
    e = html.escape
    head = "".join(f"<th>{e(t)}</th>" for t, _ in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(cell(m, k))}</td>" for _, k in COLUMNS) + "</tr>"
        for m in cmp.metrics
    )
    imgs = "".join(
        f'<figure><img alt="{e(name)}" src="data:image/png;base64,'
        f'{base64.b64encode((out / name).read_bytes()).decode()}"></figure>'
        for name in PLOTS
    )
    b = cmp.bound
    bound = (
        f"<p>LP lower bound: <b>¥{b.cny:,.2f}</b>"
        f" ({'deadlines enforced' if b.deadlines_enforced else 'no deadlines'};"
        f" {b.columns} columns, {b.iterations} iterations, {b.seconds:.1f} s,"
        f" {'converged' if b.converged else _gap(b.gap)}; {b.method} LP)."
        f" Its fractional plan spends ¥{b.energy_cny:,.0f} on energy,"
        f" ¥{b.service_cny:,.0f} on service and ¥{b.transfer_cny:,.0f} on transfers.</p>"
        if b
        else "<p>No lower bound computed.</p>"
    )
    trade = "".join(f"<p>{e(t.text())}.</p>" for t in tradeoffs(cmp.metrics))
    notes = "".join(f"<li>{e(n)}</li>" for n in cmp.notes)
    wl = cmp.workload
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ComputeNet simulation: {e(wl.name)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}}
table{{border-collapse:collapse;font-size:14px}}
th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th:first-child,td:first-child{{text-align:left}}th{{background:#f3f3f3}}
figure{{margin:1em 0}}img{{max-width:100%}}
</style></head><body>
<h1>Simulation report</h1>
<p>Network <b>{e(wl.network.name)}</b>, workload <b>{e(wl.name)}</b> ({len(wl)} jobs),
scheduling cycle every {cmp.config.cycle_s:g} s, patience for jobs without a deadline
{cmp.config.patience_h:g} h.</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{trade}
{bound}
<ul>{notes}</ul>
{imgs}
</body></html>
"""


def _gap(gap: float) -> str:
    """A bound's gap to its LP's value, or that it is unknown (stopped before one was found)."""
    return f"gap {gap:.2%}" if math.isfinite(gap) else "stopped early, gap unknown"
