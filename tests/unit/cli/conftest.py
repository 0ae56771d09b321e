"""CLI tests run `cnet` in-process against the fake API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from computenet.cli import common
from computenet.cli.main import main
from computenet.sdk.client import Client
from computenet.sdk.testing import FakeAPI


@dataclass
class Result:
    """What one `cnet` run printed and returned."""

    code: int
    out: str
    err: str


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeAPI:
    api = FakeAPI()

    def make(url: str, token: str | None = None, **kw: Any) -> Client:
        return Client(url, token, transport=api.transport())

    monkeypatch.setattr(common, "Client", make)
    monkeypatch.setenv("CNET_CONFIG", str(tmp_path / "config.json"))
    monkeypatch.setenv("CNET_URL", "http://fake")
    monkeypatch.setenv("CNET_TOKEN", api.token)
    monkeypatch.setenv("COLUMNS", "200")
    return api


@pytest.fixture
def cnet(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        code = main(list(argv))
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return run


@pytest.fixture
def job_file(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "job.yaml") -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return write
