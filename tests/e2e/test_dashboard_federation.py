"""The dashboard of a national plane whose centers are regions, in a real browser.

A real federation on 127.0.0.1: a regional control plane `gba` with two centers
(`sz`, `gz`, 2 H100 each) run by local agents, joined to the national plane `cn`
by `cnet agent --backend network`; the national network file also declares a
second region, `yrd`, whose agent never starts (so it stays offline). A person
looks at the network page (each region drawn as a group, with its capacity:
4 H100 free but no job larger than 2 fits now, and gba's member centers as its
agent lists them) and at a delegated job's page
(its path: cn picked gba, gba picked one of its centers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Network
from tests.e2e.test_dashboard import go, sign_in
from tests.helpers.processes import log_tail, start_server

pytestmark = pytest.mark.e2e

Shots = Callable[[Any, str], Path]
ONLINE_TIMEOUT_S = 60.0
JOB_TIMEOUT_S = 90.0

# Flat tariffs: neither plane has a reason to wait for a cheaper hour.
REGION = """
name: gba
identifier: cn.gba
time_scale: 600
centers:
  - {id: sz, name: Shenzhen, region: east, lat: 22.6, lon: 114.1, pools: [{chip: H100, count: 2}],
     pue: 1.2, tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5,
     service_price_per_cuh: 1}
  - {id: gz, name: Guangzhou, region: east, lat: 23.1, lon: 113.3, pools: [{chip: H100, count: 2}],
     pue: 1.3, tariff: {flat: 0.7, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.6,
     service_price_per_cuh: 2}
links: []
"""

NATIONAL = """
name: cn
identifier: cn
time_scale: 600
centers:
  - {{id: gba, name: Greater Bay Area, region: east, lat: 22.8, lon: 113.7, backend: network,
     pools: [{{chip: H100, count: 4}}], pue: 1.25, tariff: {{flat: 0.6, peak: 1, valley: 1}},
     carbon_kg_per_kwh: 0.55, service_price_per_cuh: 1.5, tags: [region, "url:{gba_url}"]}}
  - {{id: yrd, name: Yangtze River Delta, region: east, lat: 31.2, lon: 121.5, backend: network,
     pools: [{{chip: H100, count: 2}}], pue: 1.25, tariff: {{flat: 0.8, peak: 1, valley: 1}},
     carbon_kg_per_kwh: 0.6, service_price_per_cuh: 1.5, tags: [region]}}
links: []
"""


def _agent(root: Path, center: str, url: str, token: str, *args: str) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "computenet.agent", "--center", center, "--server", url,
        "--token", token, "--state-dir", str(root / center / "state"),
        "--data-root", str(root / center / "data"), *args,
    ]  # fmt: skip
    with (root / f"agent-{center}.log").open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _until(what: str, check: Callable[[], Any], root: Path | None, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    logs = (
        "\n".join(f"--- {p.name}\n{log_tail(p)}" for p in sorted(root.rglob("*.log")))
        if root
        else ""
    )
    raise TimeoutError(f"timed out waiting for {what}\n{logs}")


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The national plane as `Network` (user alice of tenant acme), over region gba.

    Overrides conftest's `network`, so the `page` fixture opens this plane's dashboard.
    `tokens["gba-link"]` is the region's account the national jobs run as, and
    `tokens["gba-url"]` the region's URL (for the test's own checks).
    """
    root = tmp_path_factory.mktemp("e2e-fed")
    (root / "gba").mkdir()
    (root / "gba" / "region.yaml").write_text(REGION)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        gba_url, gba_admin, server = start_server(
            root / "gba", str(root / "gba" / "region.yaml"), cycle_interval=0.2,
            heartbeat_interval=0.3,
        )  # fmt: skip
        procs.append(server)
        with httpx.Client(base_url=gba_url, headers={"Authorization": f"Bearer {gba_admin}"}) as a:
            for center in ("sz", "gz"):
                token = a.post(f"/api/v1/admin/centers/{center}/token").json()["token"]
                procs.append(
                    _agent(
                        root / "gba",
                        center,
                        gba_url,
                        token,
                        "--network",
                        str(root / "gba" / "region.yaml"),
                    )
                )
            a.post("/api/v1/admin/tenants", json={"name": "national"}).raise_for_status()
            r = a.post("/api/v1/admin/users", json={"name": "cn-link", "tenant": "national"})
            link_token = r.json()["token"]
        link_file = root / "gba-link.token"
        link_file.write_text(link_token)
        os.chmod(link_file, 0o600)

        (root / "cn").mkdir()
        (root / "cn" / "national.yaml").write_text(NATIONAL.format(gba_url=gba_url))
        url, admin_token, national = start_server(
            root / "cn", str(root / "cn" / "national.yaml"), cycle_interval=0.2,
            heartbeat_interval=0.3,
        )  # fmt: skip
        procs.append(national)
        net = Network(url=url, admin_token=admin_token, procs=procs)
        with net.api("admin") as adm:
            adm.post("/api/v1/admin/tenants", json={"name": "acme"}).raise_for_status()
            r = adm.post("/api/v1/admin/users", json={"name": "alice", "tenant": "acme"})
            net.tokens["alice"] = r.json()["token"]
            gba_token = adm.post("/api/v1/admin/centers/gba/token").json()["token"]
            args = [
                "--network", str(root / "cn" / "national.yaml"), "--backend", "network",
                "--backend-opt", f"url={gba_url}", "--backend-opt", f"token_file={link_file}",
                "--backend-opt", "origin=cn",
            ]  # fmt: skip
            procs.append(_agent(root / "cn", "gba", url, gba_token, *args))

            def gba_ready() -> bool:
                (gba,) = [c for c in adm.get("/api/v1/centers").json() if c["id"] == "gba"]
                return bool(
                    gba["online"]
                    and gba["pools"][0].get("largest_free") == 2
                    and len(gba.get("members") or []) == 2  # its agent lists sz and gz
                )

            _until("gba online at cn with its capacity", gba_ready, root, ONLINE_TIMEOUT_S)
        net.tokens["gba-link"] = link_token
        net.tokens["gba-url"] = gba_url
        yield net
    finally:
        from tests.helpers.processes import stop_process

        for p in reversed(procs):  # the network agent before the planes it cancels in
            stop_process(p)


def test_regions_are_drawn_as_groups_with_their_capacity(
    page: Any, network: Network, shots: Shots
) -> None:
    sign_in(page, network, "alice")
    go(page, "network")
    # On the map: both regions are groups (a dashed ring), gba online, yrd offline.
    page.locator("g.center.region .region-ring").nth(1).wait_for()
    assert page.locator("g.center.region").count() == 2
    assert "offline" in page.locator('g.center[data-region="yrd"]').get_attribute("class")
    assert "offline" not in page.locator('g.center[data-region="gba"]').get_attribute("class")

    # The regions section: gba's capacity as its network agent reports it — 4 H100
    # free, but no job larger than 2 fits now (two centers of 2).
    card = page.locator('[data-testid=region-group][data-region="gba"]')
    card.wait_for()
    row = card.locator('tr[data-chip="H100"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[:3] == ["4", "4", "2"], cells  # total, free, largest job now
    # Its member centers, as gba's network agent lists them with its heartbeat: each
    # with its state and chips, drawn as dots inside the group on the map.
    members = card.locator("li[data-member]")
    members.nth(1).wait_for()
    assert sorted(members.evaluate_all("els => els.map(e => e.dataset.member)")) == ["gz", "sz"]
    assert "Shenzhen" in card.locator('li[data-member="sz"]').inner_text()
    assert "Member centers (2)" in card.inner_text()
    assert sorted(
        page.locator('g.center[data-region="gba"] circle.member').evaluate_all(
            "els => els.map(e => e.dataset.member)"
        )
    ) == ["gz", "sz"]
    # And a link to the region's own dashboard (its url: tag, through GET /api/v1/resolve).
    link = card.get_by_role("link", name="the region's own dashboard")
    link.wait_for()
    assert link.get_attribute("href") == network.tokens["gba-url"]
    # yrd never came up: no agent, no member list; its card says what is shown instead.
    yrd = page.locator('[data-testid=region-group][data-region="yrd"]')
    yrd.get_by_test_id("region-members-note").wait_for()
    assert yrd.locator("li[data-member]").count() == 0
    shots(page, "1-regions")

    # Selecting the group opens the region's panel with its largest job shape.
    page.locator('g.center[data-region="gba"]').click()
    panel = page.get_by_test_id("center-panel")
    panel.wait_for()
    assert "a region" in panel.inner_text()
    page.get_by_role("heading", name="Region capacity").wait_for()

    # The national API itself carries them: gba's members, none for the offline yrd.
    with network.api("alice") as api:
        views = {c["id"]: c for c in api.get("/api/v1/centers").json()}
    assert [m["id"] for m in views["gba"]["members"]] == ["sz", "gz"]
    assert views["gba"]["members"][0]["pools"] == [{"chip": "H100", "total": 2, "free": 2}]
    assert views["yrd"].get("members") is None


def test_a_delegated_jobs_page_shows_its_path_through_the_levels(
    page: Any, network: Network, shots: Shots
) -> None:
    spec = {
        "name": "e2e-delegated",
        "class": "llm-train",
        "command": 'echo "hello from $CNET_CENTER"; sleep 1',
        "chips": {"count": 2, "types": ["H100"]},
        "work": {"cu_hours": 0.3},
    }
    with network.api("alice") as alice:
        r = alice.post("/api/v1/jobs", json={"spec": spec})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        done = _until(
            "the job to succeed",
            lambda: (
                (d := alice.get(f"/api/v1/jobs/{job_id}").json())["state"] == "SUCCEEDED"
                and len(d.get("path") or []) == 2
                and d
            ),
            None,
            JOB_TIMEOUT_S,
        )
    # The job that ran it in the region: the region's own record, read as its account.
    with httpx.Client(
        base_url=network.tokens["gba-url"],
        headers={"Authorization": f"Bearer {network.tokens['gba-link']}"},
    ) as link:
        (child,) = [j for j in link.get("/api/v1/jobs").json() if j["name"] == f"cn/{job_id}:1"]
    assert child["center"] in ("sz", "gz")

    sign_in(page, network, "alice")
    go(page, f"jobs/{job_id}")
    path = page.get_by_test_id("job-path")
    try:
        # The page reads the job and its path through the levels: give a loaded CI machine
        # time, and keep what it showed if it never came.
        path.wait_for(timeout=30_000)
    except Exception:
        shots(page, "job-path-missing")
        raise
    hops = path.locator("li.hop")
    assert hops.count() == 2
    assert (
        hops.nth(0).get_attribute("data-network"),
        hops.nth(0).get_attribute("data-center"),
    ) == (
        "cn",
        "gba",
    )
    assert (
        hops.nth(1).get_attribute("data-network"),
        hops.nth(1).get_attribute("data-center"),
    ) == (
        "gba",
        child["center"],
    )
    assert "H100 × 2" in hops.nth(1).inner_text()
    assert child["id"] in hops.nth(1).inner_text()  # the job's id at that level
    assert "SUCCEEDED" in hops.nth(0).inner_text()
    assert json.dumps(done["path"][1]["center"]) == json.dumps(child["center"])
    shots(page, "job-path")
