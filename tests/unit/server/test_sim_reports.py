"""Reports written by `cnet sim compare --out` are listed and served to signed-in users."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.server.conftest import Net, make_net


@pytest.fixture
def net_with_reports(db_url: str, tmp_path: Path) -> Iterator[tuple[Net, Path]]:
    folder = tmp_path / "reports"
    yield from ((n, folder) for n in make_net(db_url, sim_reports_dir=folder))


def write_report(folder: Path, name: str, bound: float) -> None:
    d = folder / name
    d.mkdir(parents=True)
    result = {
        "network": "china",
        "workload": "synthetic:jobs=100",
        "bound_cny": bound,
        "policies": [{"name": "ours", "total_cny": bound * 1.03}],
    }
    (d / "results.json").write_text(json.dumps(result))
    (d / "report.html").write_text("<html><body><h1>ours wins</h1></body></html>")


def test_reports_are_listed_opened_and_served_as_html(
    net_with_reports: tuple[Net, Path],
) -> None:
    net, folder = net_with_reports
    assert net.client.get("/api/v1/sim/reports", headers=net.user()).json() == []
    write_report(folder, "week-1", 1000.0)
    (folder / "not-a-report").mkdir()
    (listed,) = net.client.get("/api/v1/sim/reports", headers=net.user()).json()
    assert listed["id"] == "week-1" and listed["policies"] == ["ours"]
    assert listed["bound_cny"] == 1000.0
    one = net.client.get("/api/v1/sim/reports/week-1", headers=net.user()).json()
    assert one["result"]["policies"][0]["total_cny"] == pytest.approx(1030.0)
    html = net.client.get(one["html_url"], headers=net.user())
    assert html.status_code == 200 and "ours wins" in html.text


def test_unknown_or_escaping_report_ids_are_404_and_tokens_are_required(
    net_with_reports: tuple[Net, Path],
) -> None:
    net, folder = net_with_reports
    write_report(folder, "week-1", 1.0)
    assert net.client.get("/api/v1/sim/reports/nope", headers=net.user()).status_code == 404
    assert net.client.get("/api/v1/sim/reports/..", headers=net.user()).status_code == 404
    assert net.client.get("/api/v1/sim/reports").status_code == 401
