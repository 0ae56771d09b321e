"""Identifiers through the levels, real processes: a national plane `cn` and a region whose
prefix nests under it (`cn.gba`). The nation hands an identifier below the region back with
`delegate`; the region answers it (tests/integration/test_federation.py's federation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.model import JobState
from tests.helpers import federation as federation_helpers
from tests.helpers.federation import Federation, federation, job

pytestmark = [pytest.mark.integration, pytest.mark.own_db]


@pytest.fixture
def nested(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Federation]:
    # The region's prefix is the nation's prefix plus the region's center id there.
    monkeypatch.setattr(
        federation_helpers, "REGION", federation_helpers.REGION + "identifier: cn.gba\n"
    )
    with federation(tmp_path) as fed:
        yield fed


def test_an_identifier_is_resolved_through_the_levels(nested: Federation) -> None:
    fed = nested
    # The region as a center of the nation: answered at the top.
    top = fed.user.resolve("cn.gba")
    assert top.kind == "center" and top.delegate is None and top.center is not None
    assert top.center.backend == "network" and top.center.identifier == "cn.gba"
    # A pool inside the region: the nation says which region to ask, and the region answers.
    hop = fed.user.resolve("cn.gba.sz.pool.H100")
    assert hop.delegate is not None, hop
    assert (hop.delegate.center, hop.delegate.identifier) == ("gba", "cn.gba.sz.pool.H100")
    there = fed.link.resolve(hop.delegate.identifier)
    assert there.delegate is None and there.reach.network == "cn.gba"
    assert there.pool is not None and there.pool["chip"] == "H100"
    assert there.reach.center == "sz" and there.reach.url == fed.region_url.rstrip("/")

    # A job submitted at the top: its identifier at each level names the same run.
    view = fed.user.submit(job("echo hi", count=1))
    assert view.identifier == f"cn.job.{view.id}"
    done = fed.user.wait(view.id, poll_s=0.2, timeout_s=60)
    assert done.state == JobState.SUCCEEDED, fed.logs()
    at_top = fed.user.resolve(f"cn.job.{view.id}")
    assert at_top.job is not None and at_top.reach.center == "gba"
    (child,) = fed.child_jobs(view.id)
    assert child.identifier == f"cn.gba.job.{child.id}"
    # The top's job names the region's own job for the run (from the path its agent reported).
    assert at_top.delegate is not None, at_top
    assert (at_top.delegate.center, at_top.delegate.identifier) == ("gba", child.identifier)
    hop = fed.user.resolve(child.identifier)
    assert hop.delegate is not None and hop.delegate.center == "gba"
    in_region = fed.link.resolve(hop.delegate.identifier)
    assert in_region.job is not None and in_region.job.name == f"cn/{view.id}:1"
    assert in_region.reach.center in ("sz", "gz")
