"""The operator's patience: checking the setting, and saying what it means for a job.

The patience is the longest a batch job without a deadline may be held (its
start planned later than now) for cheaper power. Its default is
`snapshot.DEFAULT_PATIENCE_H`, the snapshot carries the operator's value
(`Snapshot.patience_h`), and `framework.shift_limit_h` is the one rule that
applies it. This module holds the two things every front end needs besides:
the check of a configured value (server settings, `cnet server --patience`,
the simulator's `SimConfig` and `cnet sim --patience`) and the sentence that
quotes show.
"""

from __future__ import annotations

import math

from computenet.errors import ValidationError
from computenet.scheduler.framework import SHIFT_SLOTS, shift_limit_h
from computenet.scheduler.plugins import Profile
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H, JobRequest, Snapshot

# The scheduler looks for cheaper tariff hours at most this far ahead, so a longer
# patience would mean nothing.
MAX_PATIENCE_H = float(SHIFT_SLOTS)


def check_patience(hours: float, field: str = "patience_h") -> float:
    """`hours` as a patience, or a `ValidationError` naming `field` and the fix."""
    if not (isinstance(hours, int | float) and math.isfinite(hours)):
        raise ValidationError(
            f"'{hours}' is not a number of hours",
            field=field,
            hint=f"hours from 0 (never hold) to {MAX_PATIENCE_H:g}, default {DEFAULT_PATIENCE_H:g}",
        )
    if not 0.0 <= hours <= MAX_PATIENCE_H:
        raise ValidationError(
            f"{hours:g} h is out of range",
            field=field,
            hint=f"hours from 0 (never hold) to {MAX_PATIENCE_H:g}, default {DEFAULT_PATIENCE_H:g}",
        )
    return float(hours)


def hours_text(hours: float) -> str:
    """`4 h`, `1.5 h`, `30 min`: a patience for people."""
    if hours < 1.0:
        return f"{round(hours * 60)} min"
    return f"{hours:g} h"


def patience_note(snapshot: Snapshot, job: JobRequest, profile: Profile) -> str | None:
    """What the operator's patience means for `job`, or None when it does not apply.

    A batch job without a deadline under a profile that shifts starts may be
    held for cheaper power up to the patience; with a patience of 0 it starts
    at its earliest. Jobs with a deadline wait as long as the deadline holds.
    """
    if job.deadline is not None or job.latency_class != "batch" or not profile.shift:
        return None
    limit = shift_limit_h(snapshot, job, profile)
    default = " (operator default)" if limit == DEFAULT_PATIENCE_H else " (operator setting)"
    if limit <= 0:
        return "no deadline: starts as soon as chips are free (operator setting: never held)"
    return (
        f"no deadline: may wait up to {hours_text(limit)} for cheaper power{default};"
        " give a deadline to choose how long it may wait"
    )
