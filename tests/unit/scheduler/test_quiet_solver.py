"""The pure scheduler solves its MIPs and LPs without writing to stdout or touching fd 1."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import numpy as np
import pytest
from tests.unit.sim.conftest import tiny_network

from computenet.model.center import CST
from computenet.scheduler import JobRequest
from computenet.scheduler.bounds import lower_bound
from computenet.scheduler.optimizer import Choice, solve_assignment
from computenet.scheduler.snapshot import HORIZON_SLOTS
from computenet.scheduler.solver import quiet_highs

EPOCH = datetime(2026, 1, 5, tzinfo=CST)


@contextmanager
def no_fd_redirects() -> Iterator[None]:
    """Fail on any attempt to redirect a file descriptor (a process-wide side effect).

    Only around the scheduler's calls: pytest's own capture redirects them.
    """

    def refuse(*args: object) -> None:
        raise AssertionError(f"the scheduler redirected a file descriptor: os.dup2{args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "dup2", refuse)
        yield


def test_a_contended_mip_solve_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(3)
    # 40 jobs of 1–4 chips, each with options on 3 pools of 6 chips: they cannot all fit.
    choices = [
        Choice(j, i, float(rng.uniform(1, 50)), int(rng.integers(3)), int(rng.integers(4)), 2, c)
        for j, c in enumerate(rng.integers(1, 5, size=40).tolist())
        for i in range(4)
    ]
    free = np.full((3, HORIZON_SLOTS), 6)
    with no_fd_redirects():
        picked = solve_assignment(choices, 40, free)
    assert any(p is not None for p in picked) and any(p is None for p in picked)
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""


def test_a_fresh_solver_and_the_lp_bound_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    job = JobRequest(id="x", workload_class="llm-train", count=4, cu_hours=10.0, submitted_at=EPOCH)
    with no_fd_redirects():
        quiet_highs()
        b = lower_bound(tiny_network(), [job], end=EPOCH + timedelta(days=2))
    assert b.cny > 0
    out = capfd.readouterr()
    assert out.out == "" and out.err == ""
