"""`cnet demo` refuses flags the chosen demo would ignore, before any process starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from computenet.cli import demo
from tests.unit.cli.conftest import Result

Cnet = Callable[..., Result]


@pytest.fixture(autouse=True)
def no_demo_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused flag must stop before the demo; if a check lets one through, fail loudly."""

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started")

    monkeypatch.setattr(demo, "run_demo", boom)
    monkeypatch.setattr(demo.tempfile, "mkdtemp", boom)


def one_line_error(r: Result, *words: str) -> str:
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.err, r.err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_trace_without_serve_is_refused(cnet: Cnet, tmp_path: Path) -> None:
    csv = tmp_path / "trace.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    r = cnet("demo", "--trace", str(csv))
    one_line_error(r, "--trace", "--serve")


def test_serve_and_federated_together_are_refused(cnet: Cnet) -> None:
    r = cnet("demo", "--serve", "--federated")
    one_line_error(r, "--federated", "--serve")
