"""The scheduler: filter → score → select over an immutable snapshot (pure, deterministic).

Server, quote and simulator all call these same functions.
"""

from computenet.scheduler.framework import REJECTED, Decision, schedule_cycle
from computenet.scheduler.quote import QuoteResult, quote
from computenet.scheduler.snapshot import (
    HORIZON_SLOTS,
    OVERRUN_HOLD,
    JobRequest,
    Reservation,
    Snapshot,
    build_snapshot,
    job_request,
)

__all__ = [
    "HORIZON_SLOTS",
    "OVERRUN_HOLD",
    "REJECTED",
    "Decision",
    "JobRequest",
    "QuoteResult",
    "Reservation",
    "Snapshot",
    "build_snapshot",
    "job_request",
    "quote",
    "schedule_cycle",
]
