"""The agent keeps its credentials: token file checks, a scrubbed env, an allow-listed job env."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from computenet.agent.__main__ import main
from computenet.agent.config import read_token_file, resolve_token
from computenet.agent.data import INDEX_FILE, STAGING_DIR, DataRoot
from computenet.agent.jobs import (
    STATE_FILE,
    job_env,
    prepare_state_dir,
    seal_tenant_area,
    write_state,
)
from computenet.errors import ValidationError
from tests.unit.agent.fakeplane import lease

ROOT = os.geteuid() == 0


def token_file(tmp_path: Path, mode: int = 0o600, text: str = "cnc_secret\n") -> Path:
    path = tmp_path / "center.token"
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_token_file_only_its_owner_reads_is_accepted(tmp_path: Path, mode: int) -> None:
    assert read_token_file(token_file(tmp_path, mode)) == "cnc_secret"


@pytest.mark.parametrize(
    ("mode", "text", "words"),
    [
        (0o644, "cnc_secret", ["readable by others", "0644"]),
        (0o640, "cnc_secret", ["readable by others"]),
        (0o600, "  \n", ["empty"]),
    ],
    ids=["world-readable", "group-readable", "empty"],
)
def test_a_bad_token_file_is_refused_naming_the_fix(
    tmp_path: Path, mode: int, text: str, words: list[str]
) -> None:
    with pytest.raises(ValidationError) as err:
        read_token_file(token_file(tmp_path, mode, text))
    assert err.value.field == "--token-file"
    for w in words:
        assert w in err.value.message
    if "readable" in words[0]:
        assert "chmod 600" in (err.value.hint or "")


def test_a_missing_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        read_token_file(tmp_path / "nope")
    assert err.value.field == "--token-file"


@pytest.mark.skipif(not ROOT, reason="only root can give a file to another user")
def test_a_token_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    os.chown(path, 12345, 12345)
    with pytest.raises(ValidationError) as err:
        read_token_file(path)
    assert "uid 12345" in err.value.message


def test_the_agent_exits_2_with_one_line_on_a_readable_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = token_file(tmp_path, 0o644)
    assert main(["--center", "c", "--server", "http://x", "--token-file", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chmod 600" in err[0], err


def test_the_env_token_is_removed_from_the_environment_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("CNET_CENTER_TOKEN", "cnc_from_env")
    with caplog.at_level(logging.WARNING):
        assert resolve_token("cnc_from_env", None) == "cnc_from_env"
    assert "CNET_CENTER_TOKEN" not in os.environ
    assert "/proc/" in caplog.text and "--token-file" in caplog.text
    monkeypatch.setenv("CNET_CENTER_TOKEN", "cnc_from_env")
    assert resolve_token(None, token_file(tmp_path)) == "cnc_secret"  # the file wins
    assert "CNET_CENTER_TOKEN" not in os.environ


def test_a_job_env_is_its_own_env_and_the_allow_list_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CNET_CONFIG", "/home/op/.config/computenet/config.json")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "leak")
    job = lease("j-1", "true", env={"MODEL": "llama", "CNET_JOB_ID": "spoofed"}, attempt=3)
    env = job_env(job, "east", tmp_path / "data", {"corpus-v1": "/d/corpus"}, 600.0)
    assert set(env) == {
        "PATH", "LANG", "MODEL", "CNET_JOB_ID", "CNET_ATTEMPT", "CNET_CENTER", "CNET_CHIP",
        "CNET_CHIP_COUNT", "CNET_PLANNED_RUN_S", "CNET_TIME_SCALE", "CNET_DATA_DIR",
        "CNET_INPUT_CORPUS_V1",
    }  # fmt: skip
    assert (env["MODEL"], env["CNET_JOB_ID"], env["CNET_ATTEMPT"]) == ("llama", "j-1", "3")
    assert "leak" not in env.values() and ".venv" not in env["PATH"]
    assert env["CNET_INPUT_CORPUS_V1"] == "/d/corpus"


def test_the_state_file_is_written_0600_even_over_a_readable_one(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{}")
    (tmp_path / STATE_FILE).chmod(0o644)
    (tmp_path / f"{STATE_FILE}.tmp").write_text("stale")
    (tmp_path / f"{STATE_FILE}.tmp").chmod(0o666)
    write_state(tmp_path, '{"version": 1}')
    path = tmp_path / STATE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == '{"version": 1}'


def test_the_state_dir_is_never_listable_by_others(tmp_path: Path) -> None:
    state, data = tmp_path / "state", tmp_path / "state" / "data"
    prepare_state_dir(state, data)
    for d in (state, data):
        mode = stat.S_IMODE(d.stat().st_mode)
        assert mode == (0o711 if ROOT else 0o700), oct(mode)
    assert stat.S_IMODE((data / STAGING_DIR).stat().st_mode) == 0o700
    root = DataRoot(data)
    root.record("corpus", "tenants/acme/corpus")
    assert stat.S_IMODE((data / INDEX_FILE).stat().st_mode) == 0o600


@pytest.mark.skipif(not ROOT, reason="tenant groups exist only under a root agent")
def test_a_tenants_area_is_sealed_to_its_group(tmp_path: Path) -> None:
    class Backend:
        def tenant_gid(self, tenant: str) -> int:
            return {"acme": 60123}[tenant]

    area = tmp_path / "tenants" / "acme"
    area.mkdir(parents=True)
    seal_tenant_area(tmp_path, "acme", Backend())
    st = area.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 60123, 0o750)
    assert stat.S_IMODE((tmp_path / "tenants").stat().st_mode) == 0o711
    seal_tenant_area(tmp_path, "other", object())  # a backend without tenant groups: no-op
    (tmp_path / "outside").mkdir()
    seal_tenant_area(tmp_path / "tenants", "../outside", Backend())  # not a tenant name
    assert stat.S_IMODE((tmp_path / "outside").stat().st_mode) != 0o750
