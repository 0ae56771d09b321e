"""Levels nest: a region of regions, three levels deep — real processes (docs/federation.md).

``cn`` (national: the region ``gba`` and ``bj``, a machine room with A100) → ``gba`` (a
region with no machine room of its own: the sub-region ``sub``, and its parent ``cn``
through an uplink) → ``sub`` (``sz``, two H100, and its parent ``gba`` through an uplink).
Every plane is a ``cnet server``, every machine room a local agent, every link between two
planes a ``cnet agent`` with the network backend (down) or the uplink backend (up).

Down: a job submitted at the top runs at ``sz``, three levels below, with the top's
identity; its path at the top names every level. Up: a job submitted at ``sub`` that needs
an A100 — which neither ``sub`` nor ``gba`` has — goes up twice and runs at ``bj``, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from computenet.model import JobState
from computenet.sdk import Client
from tests.helpers.federation import logs_under, stop_all, until
from tests.helpers.processes import start_server

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

_PRICES = "pue: 1.2, tariff: {flat: 0.5, peak: 1, valley: 1}, carbon_kg_per_kwh: 0.5"

NATIONAL = f"""
name: cn
time_scale: 600
centers:
  - {{id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{{chip: H100, count: 2}}], {_PRICES},
     service_price_per_cuh: 1, tags: [region]}}
  - {{id: bj, region: bj, lat: 39.9, lon: 116.4, pools: [{{chip: A100, count: 2}}], {_PRICES},
     service_price_per_cuh: 1}}
links:
  - {{a: gba, b: bj, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}}
"""

# The middle: a region of one sub-region, and its parent (A100 elsewhere) as a center.
GBA = f"""
name: gba
time_scale: 600
centers:
  - {{id: sub, region: gba, lat: 22.5, lon: 114.1, pools: [{{chip: H100, count: 2}}], {_PRICES},
     service_price_per_cuh: 1, tags: [region]}}
  - {{id: cn, region: cn, lat: 39.9, lon: 116.4, pools: [{{chip: A100, count: 2}}], {_PRICES},
     service_price_per_cuh: 1, tags: [region, parent]}}
links:
  - {{a: sub, b: cn, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}}
"""

SUB = f"""
name: sub
time_scale: 600
centers:
  - {{id: sz, region: sub, lat: 22.5, lon: 114.1, pools: [{{chip: H100, count: 2}}], {_PRICES},
     service_price_per_cuh: 1}}
  - {{id: gba, region: gba, lat: 22.8, lon: 113.7, pools: [{{chip: A100, count: 2}}], {_PRICES},
     service_price_per_cuh: 1, tags: [region, parent]}}
links:
  - {{a: sz, b: gba, bandwidth_gbps: 10, latency_ms: 30, price_per_gb: 0.05}}
"""


@dataclass
class Levels:
    tmp: Path
    top: Client  # a user of cn
    sub: Client  # a user of sub
    accounts: dict[str, Client] = field(default_factory=dict)  # plane/account → client

    def logs(self) -> str:
        return logs_under(self.tmp)


def _agent(
    tmp: Path, plane: str, center: str, url: str, token: str, *backend: str
) -> subprocess.Popen[bytes]:
    """`cnet agent` for `center` of plane `plane` (its network file tmp/PLANE.yaml)."""
    home = tmp / plane / center
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", center, "--server", url, "--token", token,
        "--network", str(tmp / f"{plane}.yaml"),
        "--state-dir", str(home / "state"), "--data-root", str(home / "data"),
        *backend,
    ]  # fmt: skip
    with (tmp / f"agent-{plane}-{center}.log").open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _account(tmp: Path, admin: Client, tenant: str, name: str) -> tuple[Client, Path]:
    """A tenant and a user of `admin`'s plane, and a 0600 file holding its token."""
    admin.create_tenant(tenant)
    token = admin.create_user(name, tenant).token
    path = tmp / f"{name}.token"
    path.write_text(token)
    os.chmod(path, 0o600)
    return Client(admin.url, token), path


def _link(url: str, token_file: Path, origin: str) -> list[str]:
    return [
        "--backend-opt", f"url={url}", "--backend-opt", f"token_file={token_file}",
        "--backend-opt", f"origin={origin}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Levels]:
    tmp = tmp_path_factory.mktemp("levels")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        fast = {"cycle_interval": 0.2, "heartbeat_interval": 0.3, "lease_timeout": 20.0}
        admin: dict[str, Client] = {}
        for plane, text in (("cn", NATIONAL), ("gba", GBA), ("sub", SUB)):
            (tmp / plane).mkdir()
            (tmp / f"{plane}.yaml").write_text(text)
            url, token, procs[plane] = start_server(tmp / plane, str(tmp / f"{plane}.yaml"), **fast)
            admin[plane] = Client(url, token)
        clients += list(admin.values())
        top, _ = _account(tmp, admin["cn"], "people", "bo")
        sub, _ = _account(tmp, admin["sub"], "acme", "ann")
        cn_in_gba, cn_in_gba_file = _account(tmp, admin["gba"], "national", "cn-link")
        gba_in_sub, gba_in_sub_file = _account(tmp, admin["sub"], "gba", "gba-link")
        gba_at_cn, gba_at_cn_file = _account(tmp, admin["cn"], "gba", "gba-up")
        sub_at_gba, sub_at_gba_file = _account(tmp, admin["gba"], "sub", "sub-up")
        clients += [top, sub, cn_in_gba, gba_in_sub, gba_at_cn, sub_at_gba]

        def token(plane: str, center: str) -> str:
            return str(admin[plane].center_token(center).token)

        procs["bj"] = _agent(tmp, "cn", "bj", admin["cn"].url, token("cn", "bj"))
        procs["sz"] = _agent(tmp, "sub", "sz", admin["sub"].url, token("sub", "sz"))
        # Down: cn's center gba is the gba plane; gba's center sub is the sub plane.
        procs["cn>gba"] = _agent(
            tmp, "cn", "gba", admin["cn"].url, token("cn", "gba"), "--backend", "network",
            *_link(admin["gba"].url, cn_in_gba_file, "cn"),
        )  # fmt: skip
        procs["gba>sub"] = _agent(
            tmp, "gba", "sub", admin["gba"].url, token("gba", "sub"), "--backend", "network",
            *_link(admin["sub"].url, gba_in_sub_file, "gba"),
        )  # fmt: skip
        # Up: sub's center gba is the gba plane; gba's center cn is the cn plane.
        procs["sub^gba"] = _agent(
            tmp, "sub", "gba", admin["sub"].url, token("sub", "gba"), "--backend", "uplink",
            *_link(admin["gba"].url, sub_at_gba_file, "sub"),
        )  # fmt: skip
        procs["gba^cn"] = _agent(
            tmp, "gba", "cn", admin["gba"].url, token("gba", "cn"), "--backend", "uplink",
            *_link(admin["cn"].url, gba_at_cn_file, "gba"),
        )  # fmt: skip
        lv = Levels(tmp, top, sub, {"gba@cn": gba_at_cn, "sub@gba": sub_at_gba})
        for plane in ("sub", "gba", "cn"):
            until(
                f"every center of {plane} online",
                lambda p=plane: all(c.online for c in admin[p].centers()),  # type: ignore[misc]
                tmp,
                timeout=90.0,
            )
        yield lv
    finally:
        stop_all(procs, clients)


def test_a_job_at_the_top_runs_three_levels_down_with_its_path(levels: Levels) -> None:
    view = levels.top.submit(
        {
            "name": "deep",
            "class": "llm-train",
            "command": 'echo "at $CNET_CENTER for $CNET_ORIGIN_JOB"',
            "chips": {"count": 1, "types": ["H100"]},
            "work": {"cu_hours": 0.5},
        }
    )
    done = levels.top.wait(view.id, poll_s=0.2, timeout_s=120)
    assert (done.state, done.center) == (JobState.SUCCEEDED, "gba"), levels.logs()
    # The path at the top: cn placed it at gba, gba at sub, sub at sz.
    hops = [(h.network, h.center) for h in done.path or []]
    assert hops == [("cn", "gba"), ("gba", "sub"), ("sub", "sz")], done.path
    log = "".join(levels.top.follow_logs(view.id, poll_s=0.2))
    assert log == f"at sz for cn/{view.id}\n"  # the top's identity at the chips


def test_a_job_neither_sub_nor_gba_can_run_goes_up_twice_and_runs_once(levels: Levels) -> None:
    view = levels.sub.submit(
        {
            "name": "burst",
            "class": "llm-train",
            "command": 'echo "at $CNET_CENTER for $CNET_ORIGIN_JOB"',
            "chips": {"count": 1, "types": ["A100"]},
            "work": {"cu_hours": 0.5},
        }
    )
    done = levels.sub.wait(view.id, poll_s=0.2, timeout_s=120)
    assert (done.state, done.center, done.exit_code) == (JobState.SUCCEEDED, "gba", 0), (
        levels.logs()
    )
    # One job at each level above, each pinned away from the level below.
    (at_gba,) = [j for j in levels.accounts["sub@gba"].jobs() if j.name == f"sub/{view.id}:1"]
    assert (at_gba.state, at_gba.center) == (JobState.SUCCEEDED, "cn")
    (at_cn,) = [j for j in levels.accounts["gba@cn"].jobs() if j.name == f"gba/{at_gba.id}:1"]
    assert (at_cn.state, at_cn.center) == (JobState.SUCCEEDED, "bj")
    hops = [(h.network, h.center) for h in done.path or []]
    assert hops == [("sub", "gba"), ("gba", "cn"), ("cn", "bj")], done.path
    # The first network's identity reaches the chips; the log comes all the way down.
    assert "".join(levels.sub.follow_logs(view.id, poll_s=0.2)) == f"at bj for sub/{view.id}\n"
    assert done.placement is not None
    assert done.placement.reasons[0].startswith("overflow to the parent network (center gba)")
