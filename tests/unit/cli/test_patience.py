"""`cnet quote` says how long a no-deadline job may wait; `cnet server --patience` is checked."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sdk.testing import FakeAPI
from tests.unit.cli.conftest import Result

NO_DEADLINE = """\
name: sweep
class: llm-train
command: python train.py
chips: {count: 4}
work: {cu_hours: 4}
"""


def test_quote_of_a_job_without_a_deadline_says_how_long_it_may_wait(
    fake: FakeAPI, cnet: Callable[..., Result], job_file: Callable[..., Path]
) -> None:
    r = cnet("quote", str(job_file(NO_DEADLINE)))
    assert r.code == 0, r.err
    up_to = f"no deadline: may wait up to {DEFAULT_PATIENCE_H:g} h"
    assert f"{up_to} for cheaper power (operator default)" in r.out
    q = json.loads(cnet("quote", str(job_file(NO_DEADLINE)), "--json").out)
    assert q["notes"] and q["notes"][0].startswith(up_to)
    with_deadline = cnet("quote", str(job_file(NO_DEADLINE + "deadline: 12h\n")))
    assert with_deadline.code == 0 and "no deadline" not in with_deadline.out


@pytest.mark.parametrize("bad", ["-1", "25", "nan"])
def test_cnet_server_refuses_a_bad_patience_naming_it(
    cnet: Callable[..., Result], tmp_path: Path, bad: str
) -> None:
    r = cnet("server", "--db", str(tmp_path / "x.db"), f"--patience={bad}")
    assert r.code == 2, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: patience_h: "), r.err
    assert not (tmp_path / "x.db").exists()  # refused before anything was opened
