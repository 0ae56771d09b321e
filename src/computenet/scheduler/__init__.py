"""The scheduler: filter → score → select over an immutable snapshot (pure, deterministic).

Server, quote and simulator all call these same functions.
"""

from computenet.scheduler.framework import REJECTED, Decision
from computenet.scheduler.ordering import NO_DEADLINE, order_key, signature
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
from computenet.scheduler.strategies import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    Strategy,
    schedule_cycle,
)

__all__ = [
    "DEFAULT_STRATEGY",
    "HORIZON_SLOTS",
    "NO_DEADLINE",
    "OVERRUN_HOLD",
    "REJECTED",
    "STRATEGIES",
    "Decision",
    "JobRequest",
    "QuoteResult",
    "Reservation",
    "Snapshot",
    "Strategy",
    "build_snapshot",
    "job_request",
    "order_key",
    "quote",
    "schedule_cycle",
    "signature",
]
