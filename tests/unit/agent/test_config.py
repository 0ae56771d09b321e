"""Agent configuration: where its chips come from, and bad input named by field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from computenet.agent.__main__ import main
from computenet.agent.config import AgentConfig, resolve_pools
from computenet.agent.loop import ServerUnavailable
from computenet.errors import ValidationError


def config(**kw: object) -> AgentConfig:
    base: dict[str, object] = {"center": "zhongwei", "server": "http://127.0.0.1:1", "token": "t"}
    base.update(kw)
    return AgentConfig(**base)  # type: ignore[arg-type]


def test_pools_come_from_the_network_file() -> None:
    assert resolve_pools(config(network="demo")) == {"H100": 8}


def test_a_bare_slot_count_resizes_every_pool() -> None:
    assert resolve_pools(config(network="demo", slots="2")) == {"H100": 2}


def test_explicit_pools_win_over_the_network() -> None:
    assert resolve_pools(config(network="demo", slots="A100=1,H100=3")) == {"A100": 1, "H100": 3}


def test_pools_can_come_from_the_control_plane() -> None:
    listing = [{"id": "zhongwei", "pools": [{"chip": "H100", "total": 8, "free": 3}]}]
    assert resolve_pools(config(), lambda: listing) == {"H100": 8}


def test_without_any_source_of_pools_the_error_says_what_to_give() -> None:
    def down() -> object:
        raise ServerUnavailable("down")

    with pytest.raises(ValidationError) as err:
        resolve_pools(config(), down)
    assert err.value.field == "slots"
    assert "--network" in (err.value.hint or "")


def test_a_center_missing_from_the_network_is_named() -> None:
    with pytest.raises(ValidationError) as err:
        resolve_pools(config(center="atlantis", network="demo"))
    assert err.value.field == "center"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"server": "127.0.0.1:8080"}, "server"),
        ({"token": ""}, "token"),
        ({"center": ""}, "center"),
    ],
)
def test_bad_settings_name_their_field(kw: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        config(**kw)
    assert err.value.field == field


def test_state_and_data_dirs_default_under_the_state_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    c = config()
    assert c.state_dir == tmp_path / "computenet" / "agents" / "zhongwei"
    assert c.data_root == c.state_dir / "data"


def test_cli_rejects_a_bad_backend_option_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--center", "c", "--server", "http://x", "--token", "t", "--backend-opt", "nokey"])
    assert code == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_without_a_token_says_so_with_status_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CNET_CENTER_TOKEN", raising=False)
    assert main(["--center", "c", "--server", "http://x"]) == 2
    assert "token" in capsys.readouterr().err


def test_the_module_runs_from_a_shell() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "computenet.agent", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0
    assert "--keep-jobs" in out.stdout
