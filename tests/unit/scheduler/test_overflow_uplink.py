"""The uplink backend against the SDK's in-memory fake API: a region's overflow to its parent."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import pytest

from computenet.backends.base import Backend, BackendJob
from computenet.backends.network import ORIGIN_JOB_ENV as NETWORK_ORIGIN_JOB_ENV
from computenet.backends.registry import make_backend
from computenet.backends.uplink import ParentClient, UplinkBackend
from computenet.catalog import network_from_dict
from computenet.errors import BackendError, ValidationError
from computenet.model import JobSpec
from computenet.model.job import ORIGIN_HOP_ENV, ORIGIN_JOB_ENV
from computenet.sdk import Client
from computenet.sdk.testing import FakeAPI


def center(cid: str, pools: dict[str, int], flat: float, tags: list[str]) -> dict[str, Any]:
    return {
        "id": cid,
        "region": cid,
        "lat": 30,
        "lon": 114,
        "pools": [{"chip": c, "count": n} for c, n in pools.items()],
        "pue": 1.2,
        "tariff": {"flat": flat, "peak": 1, "valley": 1},
        "carbon_kg_per_kwh": 0.5,
        "service_price_per_cuh": 1,
        "tags": tags,
    }


# The parent: the region itself (gba, the cheapest: a quote's first choice) and two others.
PARENT = network_from_dict(
    {
        "name": "cn",
        "centers": [
            center("gba", {"H100": 2, "H800": 2}, 0.2, ["region"]),
            center("bj", {"H100": 2, "A100": 2}, 0.6, []),
            center("wh", {"H100": 2}, 0.8, []),
        ],
        "links": [],
    }
)

SPEC = JobSpec.model_validate(
    {
        "name": "train",
        "class": "llm-train",
        "command": "echo hi",
        "chips": {"count": 1, "types": ["H100"]},
        "work": {"cu_hours": 0.5},
        "env": {"SEED": "7"},
    }
)


@pytest.fixture
def parent() -> FakeAPI:
    return FakeAPI(network=PARENT)


def uplink(parent: FakeAPI, tmp_path: Path, **kw: Any) -> UplinkBackend:
    client = ParentClient("http://parent", parent.token, transport=parent.transport())
    kw.setdefault("capacity_ttl_s", 0)
    kw.setdefault("origin", "gba")
    return UplinkBackend(
        tmp_path / "state", {"H100": 8, "A100": 2}, center="cn", client=client, **kw
    )


def bjob(spec: JobSpec = SPEC, chip: str = "H100") -> BackendJob:
    return BackendJob("j-abc", 1, spec.command, chip, 1, {"CNET_JOB_ID": "j-abc"}, spec=spec)


def test_it_is_a_backend_built_by_name_and_needs_the_regions_name(
    tmp_path: Path, parent: FakeAPI
) -> None:
    token = tmp_path / "parent.token"
    token.write_text(parent.token)
    os.chmod(token, 0o600)
    opts = {"url": "http://parent", "token_file": str(token), "watchdog": "false"}
    backend = make_backend("uplink", state_dir=tmp_path, pools={"H100": 4}, origin="gba", **opts)
    assert isinstance(backend, Backend) and backend.kind == "uplink"
    with pytest.raises(ValidationError) as err:
        make_backend("uplink", state_dir=tmp_path, **opts)
    assert err.value.field == "origin"
    with pytest.raises(ValidationError) as err:
        make_backend("uplink", state_dir=tmp_path, origin="gba", token_file=str(token))
    assert err.value.field == "url" and "CNET_PARENT_URL" in (err.value.hint or "")


def test_the_capacity_is_the_parents_elsewhere(tmp_path: Path, parent: FakeAPI) -> None:
    caps = {c.chip: c for c in uplink(parent, tmp_path).capacity()}
    # gba's own H100 are not offered back to gba: bj's and wh's only, in two places.
    assert (caps["H100"].total, caps["H100"].free, caps["H100"].largest_free) == (4, 4, 2)
    assert (caps["A100"].total, caps["A100"].free) == (2, 2)
    both = {c.chip: c for c in uplink(parent, tmp_path, exclude="gba,wh").capacity()}
    assert (both["H100"].total, both["H100"].free) == (2, 2)
    # The rate card is the parent's price elsewhere too: bj's, not gba's (the cheapest).
    plain = Client("http://parent", parent.token, transport=parent.transport())
    ref = {"class": "llm-train", "command": "true", "chips": {"count": 1, "types": ["H100"]}}
    prices = {o.center: o.total_cny for o in plain.quote({**ref, "work": {"cu_hours": 1}}).options}
    assert prices["gba"] < prices["bj"] < prices["wh"]
    assert caps["H100"].quote_cny_per_cuh == prices["bj"]


def test_a_job_sent_up_is_pinned_away_from_the_region_with_its_identity(
    tmp_path: Path, parent: FakeAPI
) -> None:
    handle = uplink(parent, tmp_path).submit(bjob(), "j-abc:1")
    sent = parent.jobs[handle]
    # gba is the parent's cheapest H100, and the one place it may not go.
    assert (sent.name, sent.spec.center) == ("gba/j-abc:1", "bj")
    assert sent.spec.env[ORIGIN_JOB_ENV] == "gba/j-abc"
    # Sent up: the parent may send it further up if it cannot run it either (a job that
    # came down, CNET_ORIGIN_HOP=down, never goes up).
    assert sent.spec.env[ORIGIN_HOP_ENV] == "up"
    assert sent.spec.no_spill_reason() == ""
    down = sent.spec.model_copy(update={"env": {**sent.spec.env, ORIGIN_HOP_ENV: "down"}})
    assert down.no_spill_reason().startswith("it came from another network")
    # The same key again: the same job, however often the agent asks.
    assert uplink(parent, tmp_path).submit(bjob(), "j-abc:1") == handle
    assert len(parent.jobs) == 1


def test_a_chip_only_the_region_has_at_the_parent_fails_here(
    tmp_path: Path, parent: FakeAPI
) -> None:
    spec = SPEC.model_copy(update={"chips": SPEC.chips.model_copy(update={"types": ("H800",)})})
    backend = uplink(parent, tmp_path)
    backend.pools = {"H800": 2}
    with pytest.raises(BackendError, match="has 1 × H800"):
        backend.submit(bjob(spec, "H800"), "j-abc:1")
    assert parent.jobs == {}


def test_a_deadline_the_parent_cannot_meet_elsewhere_fails_here_with_its_reason(
    tmp_path: Path, parent: FakeAPI
) -> None:
    soon = dataclasses.replace(bjob(), deadline_real=time.time() + 60)
    with pytest.raises(BackendError, match="cannot run 1 × H100 outside gba in time"):
        uplink(parent, tmp_path).submit(soon, "j-abc:1")
    assert parent.jobs == {}
    # With time enough it goes up, and keeps the deadline (in the parent's clock).
    later = dataclasses.replace(bjob(), deadline_real=time.time() + 86400)
    sent = parent.jobs[uplink(parent, tmp_path).submit(later, "j-abc:1")]
    assert sent.spec.center == "bj" and sent.deadline is not None


@pytest.mark.parametrize(
    ("update", "why"),
    [
        ({"spill": "never"}, "spill: never"),
        ({"env": {ORIGIN_JOB_ENV: "cn/j-9"}}, "came from another network"),
    ],
)
def test_a_job_that_may_not_leave_is_refused(
    tmp_path: Path, parent: FakeAPI, update: dict[str, Any], why: str
) -> None:
    with pytest.raises(BackendError, match=why):
        uplink(parent, tmp_path).submit(bjob(SPEC.model_copy(update=update)), "j-abc:1")
    assert parent.jobs == {}


def test_one_name_for_the_origin_variable() -> None:
    assert ORIGIN_JOB_ENV == NETWORK_ORIGIN_JOB_ENV
