"""Connection settings: options, then CNET_URL/CNET_TOKEN, then the config file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from computenet.errors import ValidationError
from computenet.sdk.config import DEFAULT_URL, config_path, load_config, resolve, save_config


def test_options_beat_environment_beat_file(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    save_config({"url": "http://file:1/", "token": "file-token", "data_roots": {"a": "/x"}}, f)
    env = {"CNET_URL": "http://env:2", "CNET_TOKEN": "env-token"}
    assert resolve(env={}, path=f).url == "http://file:1"
    assert resolve(env={}, path=f).token == "file-token"
    assert resolve(env=env, path=f).token == "env-token"
    assert resolve("http://opt:3", "opt-token", env=env, path=f).url == "http://opt:3"
    assert resolve(env={}, path=f).data_roots == {"a": "/x"}
    assert resolve(env={}, path=tmp_path / "none.json").url == DEFAULT_URL


def test_config_file_is_private_and_found_through_cnet_config(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "config.json"
    save_config({"token": "secret"}, f)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert config_path({"CNET_CONFIG": str(f)}) == f
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "computenet/config.json"
    assert json.loads(f.read_text()) == {"token": "secret"}


def test_broken_config_file_names_itself(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text("{not json")
    with pytest.raises(ValidationError) as info:
        load_config(f)
    assert info.value.field == str(f)
