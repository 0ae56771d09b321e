"""Backends by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from computenet.backends.fake import FakeBackend
from computenet.backends.local import LocalBackend
from computenet.backends.registry import make_backend, parse_pools
from computenet.errors import ValidationError


def test_local_and_fake_are_built_by_name(tmp_path: Path) -> None:
    local = make_backend("local", state_dir=tmp_path, pools={"H100": 2})
    assert isinstance(local, LocalBackend)
    assert [(p.chip, p.total) for p in local.capacity()] == [("H100", 2)]
    assert isinstance(make_backend("fake", pools="A100=4"), FakeBackend)


def test_options_a_backend_does_not_take_are_left_out(tmp_path: Path) -> None:
    backend = make_backend("fake", pools={"H100": 1}, partition="gpu", state_dir=tmp_path)
    assert backend.kind == "fake"


def test_unknown_backend_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        make_backend("mainframe")
    assert err.value.field == "backend"
    assert "local" in (err.value.hint or "")


def test_a_backend_whose_module_is_missing_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "computenet.backends.ray", None)  # import fails
    with pytest.raises(ValidationError) as err:
        make_backend("ray")
    assert err.value.field == "backend"
    assert "not available" in err.value.message


@pytest.mark.parametrize("text", ["H100", "H100=0", "=3", "H100=x"])
def test_bad_pools_name_the_field(text: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_pools(text)
    assert err.value.field == "pools"


def test_pools_parse_from_text() -> None:
    assert parse_pools("H100=8, A100=4") == {"H100": 8, "A100": 4}
