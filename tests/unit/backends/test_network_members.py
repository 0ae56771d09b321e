"""The network backend lists the child's own centers for the parent's dashboard (`members`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from computenet.catalog.loader import load_network
from computenet.errors import BackendError
from computenet.sdk import Client
from tests.unit.backends.test_network import REGION, Region, backend_for


@pytest.fixture
def region(tmp_path: Path) -> Region:
    path = tmp_path / "gba.yaml"
    path.write_text(REGION)
    return Region(network=load_network(str(path)))


def test_members_are_the_childs_centers_with_their_state_and_chips(
    tmp_path: Path, region: Region
) -> None:
    region.free = {"sz": 1, "gz": 0}
    region.offline = {"hk"}
    got = {m.id: m for m in backend_for(region, tmp_path).members()}
    assert sorted(got) == ["gz", "hk", "sz"]
    sz = got["sz"]
    assert (sz.lat, sz.lon, sz.online) == (22.5, 114.1, True)
    assert [(p.chip, p.total, p.free) for p in sz.pools] == [("H100", 2, 1)]
    assert got["hk"].online is False
    assert [(p.total, p.free) for p in got["gz"].pools] == [(2, 0)]


def test_a_child_that_cannot_list_its_centers_is_a_backend_error(tmp_path: Path) -> None:
    client = Client("http://127.0.0.1:9", "t", timeout=0.5)
    backend = backend_for(Region(), tmp_path)
    backend.client = client
    with pytest.raises(BackendError, match="centers are not listable"):
        backend.members()
