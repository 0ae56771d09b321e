"""docs/grafana-dashboard.json parses, and every metric it queries is one the server serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.unit.server.conftest import Net

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\bcomputenet_[a-z_]+\b")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}


def served_names(net: Net) -> set[str]:
    """Every series name a scrape of this server can hold (also families with no sample yet)."""
    r = net.client.get("/metrics", headers=net.admin)
    assert r.status_code == 200, r.text
    names: set[str] = set()
    for family in text_string_to_metric_families(r.text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(s.name for s in family.samples)
    return names


def targets(doc: dict[str, Any]) -> list[str]:
    """The PromQL of every panel's targets."""
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]


def test_the_dashboard_parses_and_queries_only_served_metrics(net: Net) -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = targets(doc)
    assert exprs, "the dashboard queries nothing"
    served = served_names(net)
    queried = {name for e in exprs for name in METRIC.findall(e)}
    assert queried, exprs
    assert queried <= served, f"not served: {sorted(queried - served)}"
    for e in exprs:
        assert e.count("(") == e.count(")"), e
        assert e.count("{") == e.count("}"), e


def test_the_dashboard_shows_every_family(net: Net) -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queried = " ".join(targets(doc))
    families = {
        "computenet_pending_jobs",
        "computenet_jobs_total",
        "computenet_admission_wait_seconds",
        "computenet_center_chips",
        "computenet_center_up",
        "computenet_scheduling_cycle_seconds",
        "computenet_transfer_bytes_total",
        "computenet_billed_cny_total",
    }
    assert {f for f in families if f in queried} == families


def test_every_panel_names_its_data_source_and_place() -> None:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    for p in doc["panels"]:
        assert {"x", "y", "w", "h"} <= p["gridPos"].keys()
        assert p["datasource"]["uid"].strip("${}") in variables
