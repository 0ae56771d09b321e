"""Overflow up with input datasets — real processes (docs/federation.md, "Inputs go up").

The federation of test_federation_overflow.py: the nation ``cn`` with the region ``gba``
(a network agent) and ``bj`` (H100, A100, a local agent); the region with ``sz`` (2 H100)
and its parent as the center ``cn`` (the uplink). Here the uplink runs with an inbox:
``bj``, whose data root it writes. A region job that needs an A100 (only the parent has
one) and reads a dataset held at ``sz`` goes up: the uplink agent stages the dataset from
sz (ticket, sha256), places it at bj and registers it at the nation under the region's
account, and the nation runs the job at bj, where it reads the bytes. A dataset with a
residency tag keeps its job in the region, saying why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.model import JobState
from computenet.sdk import Client
from tests.helpers.federation import center_agent, network_agent, stop_all, until
from tests.helpers.processes import start_server
from tests.integration.test_federation_overflow import NATIONAL, REGION, Overflow, job

pytestmark = [pytest.mark.integration, pytest.mark.own_db]


def _uplink_agent(
    tmp: Path, region_url: str, token: str, national_url: str, up_token_file: Path
) -> subprocess.Popen[bytes]:
    """`cnet agent --backend uplink` for the region's center `cn`, with bj as its inbox."""
    log = tmp / "region" / "agent-cn.log"
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", "cn", "--server", region_url, "--token", token,
        "--network", str(tmp / "region" / "region.yaml"),
        "--state-dir", str(tmp / "region" / "cn" / "state"),
        "--data-root", str(tmp / "region" / "cn" / "data"),
        "--backend", "uplink",
        "--backend-opt", f"url={national_url}",
        "--backend-opt", f"token_file={up_token_file}",
        "--backend-opt", "origin=gba",
        "--backend-opt", "inbox=bj",
        "--backend-opt", f"inbox_root={tmp / 'national' / 'bj' / 'data'}",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def ovf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Overflow]:
    tmp = tmp_path_factory.mktemp("overflow-inputs")
    home, top = tmp / "region", tmp / "national"
    home.mkdir()
    top.mkdir()
    (top / "bj" / "data").mkdir(parents=True)  # the inbox: bj's agent's data root
    (home / "region.yaml").write_text(REGION)
    (tmp / "national.yaml").write_text(NATIONAL)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    clients: list[Client] = []
    try:
        fast = {"cycle_interval": 0.2, "heartbeat_interval": 0.3, "lease_timeout": 20.0}
        region_url, region_token, procs["region"] = start_server(
            home, str(home / "region.yaml"), **fast
        )
        national_url, national_token, procs["national"] = start_server(
            top, str(tmp / "national.yaml"), **fast
        )
        region_admin = Client(region_url, region_token)
        national_admin = Client(national_url, national_token)
        clients += [region_admin, national_admin]
        region_admin.create_tenant("acme")
        region = Client(region_url, region_admin.create_user("ann", "acme").token)
        region_admin.create_tenant("national")
        link = Client(region_url, region_admin.create_user("cn-link", "national").token)
        link_file = tmp / "gba-link.token"
        link_file.write_text(str(link.token))
        national_admin.create_tenant("people")
        national = Client(national_url, national_admin.create_user("bo", "people").token)
        national_admin.create_tenant("gba")
        up_token = national_admin.create_user("gba-up", "gba").token
        up_file = tmp / "gba-up.token"
        up_file.write_text(up_token)
        for f in (link_file, up_file):
            os.chmod(f, 0o600)
        up = Client(national_url, up_token)
        clients += [region, national, up, link]
        region_net, national_net = home / "region.yaml", tmp / "national.yaml"
        procs["sz"] = center_agent(
            home, "sz", region_url, region_admin.center_token("sz").token, region_net
        )
        procs["bj"] = center_agent(
            top, "bj", national_url, national_admin.center_token("bj").token, national_net
        )
        procs["gba"] = network_agent(
            tmp, "gba", national_url, national_admin.center_token("gba").token, region_url,
            link_file,
        )  # fmt: skip
        procs["cn"] = _uplink_agent(
            tmp, region_url, region_admin.center_token("cn").token, national_url, up_file
        )
        fed = Overflow(tmp, region, national, up, link, region_url, procs)
        until("every center online", lambda: all(c.online for c in region.centers()), tmp)
        until("every center online", lambda: all(c.online for c in national.centers()), tmp)
        yield fed
    finally:
        stop_all(procs, clients)


def _dataset_at_sz(ovf: Overflow, name: str, data: bytes, residency: str | None = None) -> str:
    """A file in sz's data root registered in the region by its user; its sha256."""
    path = ovf.tmp / "region" / "sz" / "data" / "tenants" / "acme" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    ovf.region.add_dataset(name, "sz", f"tenants/acme/{name}", len(data), sha, residency=residency)
    return sha


def test_a_job_with_an_input_overflows_and_reads_it_at_the_parent(ovf: Overflow) -> None:
    data = "corpus rows α β γ\n".encode() * 2000
    sha = _dataset_at_sz(ovf, "corpus", data)
    view = ovf.region.submit(
        job('sha256sum < "$CNET_INPUT_CORPUS"; echo "at $CNET_CENTER"', chip="A100",
            inputs=["corpus"])
    )  # fmt: skip
    done = ovf.wait(view.id)
    assert (done.state, done.center, done.exit_code) == (JobState.SUCCEEDED, "cn", 0), ovf.logs()
    assert done.placement is not None
    assert done.placement.reasons[0].startswith("overflow to the parent network (center cn)")
    # The job read the region's bytes at bj: its checksum is the dataset's.
    assert "".join(ovf.region.follow_logs(view.id, poll_s=0.2)) == f"{sha}  -\nat bj\n"
    (up,) = ovf.sent_up(view.id)  # one job at the nation
    assert (up.state, up.center) == (JobState.SUCCEEDED, "bj")
    # The nation holds the input under the region's account, at the inbox, same checksum.
    (corpus,) = [d for d in ovf.up.datasets() if d.id == "corpus"]
    assert (corpus.sha256, corpus.size_bytes) == (sha, len(data))
    assert "bj" in {r.get("center") for r in corpus.replicas}
    placed = ovf.tmp / "national" / "bj" / "data" / "tenants" / "gba" / "corpus"
    assert placed.read_bytes() == data
    # Staged once, from sz, as the usage of the region's job says.
    usage = ovf.region.job(view.id).usage or {}
    assert usage.get("bytes_staged") == len(data), usage
    assert usage.get("staged_from") == "sz", usage


def test_a_second_job_reuses_the_copy_at_the_parent(ovf: Overflow) -> None:
    """The parent already holds the input (same id, same sha256): nothing is staged again."""
    until("the first job's input at the nation", lambda: ovf.up.datasets(), ovf.tmp)
    view = ovf.region.submit(job('wc -c < "$CNET_INPUT_CORPUS"', chip="A100", inputs=["corpus"]))
    done = ovf.wait(view.id)
    assert (done.state, done.center) == (JobState.SUCCEEDED, "cn"), ovf.logs()
    size = len("corpus rows α β γ\n".encode() * 2000)
    assert "".join(ovf.region.follow_logs(view.id, poll_s=0.2)).strip() == str(size)
    assert (ovf.region.job(view.id).usage or {}).get("bytes_staged", 0) == 0


def test_a_residency_bound_input_still_keeps_its_job_in_the_region(ovf: Overflow) -> None:
    _dataset_at_sz(ovf, "patients", b"rows that may not leave\n", residency="gba")
    view = ovf.region.submit(job("true", chip="A100", inputs=["patients"]))
    assert ovf.reasons(view.id) == ["inputs must stay in gba: no eligible center there"]
    assert ovf.region.job(view.id).state is JobState.PENDING
    assert ovf.sent_up(view.id) == []
    assert "patients" not in {d.id for d in ovf.up.datasets()}
    ovf.region.cancel(view.id)
