"""`cnet sim run|compare --workload azure-llm:…`: the serving simulator's output (table or JSON).

`cli/sim.py` hands a workload that names an LLM trace here before the batch
runner sees it (docs/simulator.md, "Inference services").
"""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table

from computenet.catalog import load_network
from computenet.sim.serving import (
    ServingResult,
    compare_serving,
    goal,
    parse_serving_policies,
    parse_serving_workload,
)


def report_json(network: str, workload: str, results: list[ServingResult], **extra: object) -> str:
    """The `--json` document: every policy's figures and the goal line."""
    return json.dumps(
        {
            "network": network,
            "workload": workload,
            "policies": [r.as_dict() for r in results],
            "goal": goal(results),
            **extra,
        },
        indent=2,
    )


def table(results: list[ServingResult], title: str) -> Table:
    """The comparison table for people."""
    t = Table(title=title)
    heads = (
        "policy",
        "¥/Mtok",
        "total ¥",
        "SLO %",
        "p50 TTFT s",
        "p99 TTFT s",
        "p50 e2e s",
        "p99 e2e s",
        "replica·h",
        "peak",
        "kWh",
        "kg CO2",
        "replica·h by center",
    )
    for h in heads:
        t.add_column(h, justify="left" if h in ("policy", "replica·h by center") else "right")
    for r in results:
        t.add_row(
            r.policy,
            f"{r.cost_per_mtok_cny:.4f}",
            f"{r.total_cny:,.2f}",
            f"{r.slo_attainment_pct:.2f}",
            f"{r.p50_ttft_s:.3f}",
            f"{r.p99_ttft_s:.3f}",
            f"{r.p50_e2e_s:.2f}",
            f"{r.p99_e2e_s:.2f}",
            f"{r.replica_hours:.2f}",
            str(r.peak_replicas),
            f"{r.kwh:.1f}",
            f"{r.co2_kg:.1f}",
            ", ".join(f"{c} {h:.2f}" for c, h in r.replica_hours_by_center.items()),
        )
    return t


def serving_compare(
    network: str, workload: str, policies: str, *, json_out: bool, flag: str = "--policies"
) -> None:
    """Load, replay every policy and print; ComputeNetError on bad input (the CLI exits 2)."""
    net = load_network(network)
    work = parse_serving_workload(workload, net)
    names = parse_serving_policies(policies, flag=flag)
    results = compare_serving(net, work, names)
    spec = work.spec
    if json_out:
        print(
            report_json(
                net.name,
                workload,
                results,
                requests=len(work.t_s),
                tokens=work.tokens,
                objective_ttft_s=spec.latency.p99_ttfb_ms / 1000.0,
                service=spec.model_dump(mode="json", exclude={"command", "env"}),
            )
        )
        return
    out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 220)
    out.print(
        table(
            results,
            f"{work.name} on {net.name}: {len(work.t_s):,} requests, {work.tokens:,} tokens,"
            f" objective TTFT <= {spec.latency.p99_ttfb_ms:g} ms",
        )
    )
    g = goal(results)
    if g is not None:
        out.print(
            f"ours costs {g['cost_ratio']:.3f}x static-peak per Mtok"
            f" ({g['saved_pct']:.1f} % cheaper),"
            f" SLO {g['ours_slo_pct']:.2f} % vs {g['static_peak_slo_pct']:.2f} %;"
            f" goal (>= 30 % cheaper, >= 99 % and >= static-peak's SLO):"
            f" {'met' if g['met'] else 'missed'}"
        )
