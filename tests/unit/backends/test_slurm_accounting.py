"""Slurm's time limit from the plan and its sacct accounting, without a cluster.

Real Slurm enforcing the limit and sacct's elapsed time reaching the usage report
are checked in tests/contract/test_slurm_accounting.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from computenet.backends.base import BackendJob, BackendState
from computenet.backends.slurm import (
    SlurmBackend,
    _duration_s,
    _ended_message,
    _tres,
    parse_sacct_usage,
    time_limit,
)
from computenet.errors import ValidationError
from computenet.protocol.center import UsageReport


@pytest.mark.parametrize(
    ("planned", "margin", "margin_s", "expected"),
    [
        (0.0, 0.25, 300.0, None),  # no plan: today's behaviour, no --time
        (-5.0, 0.25, 300.0, None),
        (float("inf"), 0.25, 300.0, None),
        (float("nan"), 0.25, 300.0, None),
        (1.0, 0.0, 0.0, "00:01:00"),  # at least a minute
        (60.0, 0.0, 0.0, "00:01:00"),
        (61.0, 0.0, 0.0, "00:02:00"),  # rounded up, never down
        (3600.0, 0.25, 300.0, "01:20:00"),  # 60 min × 1.25 + 5 min
        (86400.0, 0.0, 0.0, "1-00:00:00"),
        (2 * 86400.0 + 3661.0, 0.0, 0.0, "2-01:02:00"),
    ],
)
def test_time_limit_is_the_plan_plus_the_margin_in_whole_minutes(
    planned: float, margin: float, margin_s: float, expected: str | None
) -> None:
    assert time_limit(planned, margin, margin_s) == expected


def test_the_default_margin_is_a_quarter_plus_five_minutes() -> None:
    assert time_limit(600.0) == "00:18:00"  # 10 min × 1.25 + 5 min = 17.5 → 18


def _job(planned_run_s: float) -> BackendJob:
    return BackendJob("j", 1, "true", "CPU-node", 2, planned_run_s=planned_run_s)


def test_sbatch_gets_time_from_the_plan_and_sbatch_args_come_after(tmp_path: Path) -> None:
    b = SlurmBackend(tmp_path, {"CPU-node": 8}, chips_as="cpus", sbatch_args="--time=5")
    args = b._resource_args(_job(120.0))
    assert "--time=00:08:00" in args  # 2 min × 1.25 + 5 min = 7.5 → 8
    assert b._resource_args(_job(0.0)) == ["--cpus-per-task=2"]
    tight = SlurmBackend(
        tmp_path, {"CPU-node": 8}, chips_as="cpus", time_margin="0", time_margin_s="0"
    )
    assert "--time=00:02:00" in tight._resource_args(_job(120.0))


def test_a_negative_margin_is_refused_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        SlurmBackend(tmp_path, {"CPU-node": 8}, chips_as="cpus", time_margin_s=-1)
    assert err.value.field == "time_margin"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:01:00", 60.0),
        ("1-02:03:04", 93784.0),
        ("5", 300.0),
        ("03:04", 184.0),
        ("1-02", 93600.0),
        ("UNLIMITED", None),
        ("Partition_Limit", None),
        ("", None),
    ],
)
def test_slurm_durations(text: str, seconds: float | None) -> None:
    assert _duration_s(text) == seconds


def test_alloc_tres_gives_cpus_gpus_and_memory() -> None:
    assert _tres("billing=4,cpu=4,gres/gpu=2,gres/gpu:a100=2,mem=16G,node=1") == (4, 2, 16384.0)
    assert _tres("cpu=1,mem=500M,node=1") == (1, 0, 500.0)
    assert _tres("") == (0, 0, 0.0)
    assert _tres("cpu=x,mem=bad") == (0, 0, 0.0)


def test_a_sacct_line_parses_into_usage_for_the_report() -> None:
    line = "4242|TIMEOUT|0:15|61|122|billing=2,cpu=2,mem=1000M,node=1|00:01:00\n"
    rec = parse_sacct_usage(line, "4242")
    assert rec is not None
    assert (rec.state, rec.slurm_state, rec.exit_code) == (BackendState.FAILED, "TIMEOUT", 143)
    assert (rec.run_real_s, rec.cpu_s, rec.cpus, rec.gpus, rec.mem_mb) == (61, 122, 2, 0, 1000)
    assert rec.time_limit_s == 60.0
    report = UsageReport(attempt=1, run_real_s=60.5, scheduler=rec.report())
    dumped = report.model_dump(mode="json")
    assert dumped["scheduler"]["elapsed_s"] == 61 and dumped["scheduler"]["state"] == "TIMEOUT"
    # Another job's line, a short line and a running job (no exit code yet).
    assert parse_sacct_usage(line, "4243") is None
    assert parse_sacct_usage("4242|COMPLETED|0:0", "4242") is None
    running = parse_sacct_usage("7|RUNNING|0:0|5|5|cpu=1|UNLIMITED", "7")
    assert running is not None and running.exit_code is None and running.time_limit_s is None
    cancelled = parse_sacct_usage("8|CANCELLED by 0|0:15|3|3|cpu=1|00:05:00", "8")
    assert cancelled is not None and cancelled.slurm_state == "CANCELLED"


def test_a_report_without_scheduler_usage_is_what_it_was() -> None:
    assert "scheduler" not in UsageReport(attempt=1, run_real_s=1.0).model_dump(mode="json")


def test_a_timeout_message_names_the_time_limit() -> None:
    msg = _ended_message("TIMEOUT", "00:01:00")
    assert "time limit" in msg and "TIMEOUT" in msg and "--time=00:01:00" in msg
    assert _ended_message("FAILED") == "FAILED"


def test_poll_reports_a_timeout_from_sacct_naming_the_limit(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "squeue": "exit 0",
        "sacct": "echo '77|TIMEOUT|0:15|2024-01-01T00:00:00|2024-01-01T00:01:30|00:01:00'",
        "scontrol": "exit 0",
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    b = SlurmBackend(tmp_path / "state", {"CPU-node": 1}, chips_as="cpus", bin_dir=str(bin_dir))
    st = b.poll(["77"])["77"]
    assert st.state is BackendState.FAILED
    assert "time limit" in st.message and "00:01:00" in st.message
