"""Operations: ``GET /metrics`` in the Prometheus text format, and the JSON log format.

Names follow Kueue and the Slurm exporter (docs/operations.md lists each family):
state — jobs waiting, chips, centers up, money billed, bytes moved — is read
from the database at scrape time, so every replica answers the same; what
happens in this process — the scheduling cycle's duration — is observed where
it happens (`ControlPlane.tick`), so only the leader's cycle histogram grows.
The admission wait is observed once per job from the timeline (events newer
than the last scrape), so it too covers the whole history on every replica.

Every server has its own `CollectorRegistry` (`Metrics.registry`): tests run
several servers in one process, and nothing here touches prometheus_client's
process-wide default registry.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from computenet.errors import AuthError, ForbiddenError, ValidationError
from computenet.model import JobState
from computenet.scheduler import REJECTED
from computenet.server.auth import hash_token
from computenet.server.views import pools_of
from computenet.store import metrics as store_metrics
from computenet.store.centers import list_centers

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)

PREFIX = "computenet"

# Real seconds: a cycle is milliseconds on a small network, seconds on a large backlog.
CYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Network seconds (the clock of deadlines and bills): a minute to two days.
WAIT_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14_400, 28_800, 86_400, 172_800)

# The admission wait: timeline events read per query, and how far back each scrape looks
# again for events that committed after newer ones (`Metrics.catch_up`).
PAGE = 10_000
RECHECK_EVENTS = 1_000

# Why a job waits, as a short category: the label must stay of bounded cardinality,
# so the scheduler's free text (it names chips, counts and times) is never a label.
# Checked in order against the job's first reason (lower case); first match wins.
_REASON_RULES: tuple[tuple[str, str], ...] = (
    (REJECTED, "rejected"),
    ("tenant quota", "quota"),
    ("fair share", "fair_share"),
    ("centers are offline", "center_offline"),
    ("free", "no_free_chips"),  # "no eligible center has 4 free H100 chips within …"
    ("deadline in", "deadline"),
    ("budget", "budget"),
    ("would run for more than", "too_long"),
    ("in one pool", "pool_too_small"),
    ("gb per chip", "memory"),
    ("has no replica", "data_unreachable"),
    ("linked to where the inputs are", "data_unreachable"),
    ("must stay in", "residency"),
    ("pinned to", "pinned"),
    ("parent network", "spill"),
    ("runs class", "no_matching_chip"),
    ("no center has such chips", "no_matching_chip"),
    ("stack", "no_matching_chip"),
)
NEW = "new"
"""A PENDING job the scheduler has not looked at yet (no reason recorded)."""
SCHEDULED = "scheduled"
"""A SCHEDULED job: placed, waiting for its planned start or for its center's agent."""
OTHER = "other"
REASONS = frozenset({r for _, r in _REASON_RULES} | {NEW, SCHEDULED, OTHER})
"""Every value the ``reason`` label can take."""
ANY_CENTER = "any"
"""The ``center`` label of a PENDING job: not placed yet, any center may take it."""


def reason_category(reasons: Iterable[str]) -> str:
    """The short category (one of `REASONS`) of a waiting job's reasons."""
    first = next(iter(reasons), None)
    if not first:
        return NEW
    text = first.lower()
    for needle, category in _REASON_RULES:
        if needle in text:
            return category
    return OTHER


def read_token_file(path: Path, field: str = "metrics_token_file") -> str:
    """The token in `path` (first line, stripped); a clear error when absent or empty."""
    try:
        token = path.read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise ValidationError(
            f"cannot read '{path}': {exc.strerror}",
            field=field,
            hint="a file holding the token scrapers send as 'Authorization: Bearer …'",
        ) from exc
    if not token or len(token[0].strip()) < 16:
        raise ValidationError(
            f"'{path}' holds no token of at least 16 characters",
            field=field,
            hint="e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE",
        )
    return token[0].strip()


class _StateCollector(Collector):
    """The families read from the database at each scrape."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane

    def collect(self) -> Iterator[Metric]:
        """Read the store once and yield every state family."""
        plane = self._plane
        real = plane.clock.real()
        with plane.db.read() as s:
            waiting = store_metrics.waiting(s)
            entered = store_metrics.jobs_entered(s)
            rows = {r.id: r for r in list_centers(s)}
            billed = store_metrics.billed_by_tenant(s)
            moved = _bytes_moved(store_metrics.finished_usage(s))

        pending = GaugeMetricFamily(
            f"{PREFIX}_pending_jobs",
            "Jobs waiting to start: PENDING (center 'any') and SCHEDULED (at their center),"
            " by workload class and a short reason category.",
            labels=["center", "class", "reason"],
        )
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        for w in waiting:
            if w.state == JobState.SCHEDULED.value:
                key = (w.center or ANY_CENTER, w.workload_class, SCHEDULED)
            else:
                key = (ANY_CENTER, w.workload_class, reason_category(w.reasons))
            counts[key] += w.jobs
        for labels, n in sorted(counts.items()):
            pending.add_metric(list(labels), n)
        yield pending

        jobs = CounterMetricFamily(
            f"{PREFIX}_jobs",
            "Jobs that ever entered each state (a requeued job counts once per state).",
            labels=["state"],
        )
        for state in JobState:
            jobs.add_metric([state.value], entered.get(state.value, 0))
        yield jobs

        chips = GaugeMetricFamily(
            f"{PREFIX}_center_chips",
            "Chips per center and chip type: total (the network file), free (as the agent"
            " last reported; 0 while the center is down) and used (total minus reported free).",
            labels=["center", "chip", "state"],
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_center_up",
            "1 while the center's agent heartbeats within the lease timeout, else 0.",
            labels=["center"],
        )
        for center in plane.network.centers:
            row = rows.get(center.id)
            online = plane.is_online(row, real)
            up.add_metric([center.id], 1 if online else 0)
            total: dict[str, int] = defaultdict(int)
            for p in center.pools:
                total[p.chip] += p.count
            reported: dict[str, int] = defaultdict(int)
            known = row is not None and bool(row.capacity)
            for pool in pools_of(row, []):
                reported[str(pool["chip"])] += int(pool["free"])
            for chip, n in sorted(total.items()):
                free = min(n, reported[chip]) if known else n
                chips.add_metric([center.id, chip, "total"], n)
                chips.add_metric([center.id, chip, "free"], free if online else 0)
                chips.add_metric([center.id, chip, "used"], n - free)
        yield chips
        yield up

        transfer = CounterMetricFamily(
            f"{PREFIX}_transfer_bytes",
            "Bytes agents fetched for finished jobs' inputs, by source and destination center"
            " (bytes on the wire, not scaled by the network's data_scale).",
            labels=["src", "dst"],
        )
        for (src, dst), n in sorted(moved.items()):
            transfer.add_metric([src, dst], n)
        yield transfer

        money = CounterMetricFamily(
            f"{PREFIX}_billed_cny",
            "Yuan charged to each tenant, all periods (the sum of its bill lines).",
            labels=["tenant"],
        )
        for tenant, cny in sorted(billed.items()):
            money.add_metric([tenant], float(cny))
        yield money


def _bytes_moved(usages: Iterable[tuple[str, dict[str, object]]]) -> dict[tuple[str, str], int]:
    """{(source, destination): bytes} from usage reports (per-source lots, or the older total)."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for dst, usage in usages:
        lots = usage.get("transfers")
        if isinstance(lots, list) and lots:
            for lot in lots:
                if isinstance(lot, dict) and lot.get("source") and int(lot.get("bytes") or 0) > 0:
                    out[(str(lot["source"]), dst)] += int(lot["bytes"])
            continue
        n = usage.get("bytes_staged")
        src = usage.get("staged_from")
        if src and isinstance(n, int) and n > 0:
            out[(str(src), dst)] += n
    return dict(out)


class Metrics:
    """One server's metrics: its own registry, the cycle timer and the admission wait."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane
        self.registry = CollectorRegistry(auto_describe=False)
        self.cycle_seconds = Histogram(
            f"{PREFIX}_scheduling_cycle_seconds",
            "Real seconds each scheduling cycle took on this replica (only the leader runs them).",
            buckets=CYCLE_BUCKETS,
            registry=self.registry,
        )
        self.admission_wait = Histogram(
            f"{PREFIX}_admission_wait_seconds",
            "Network seconds from submission to the job's first start at a center"
            " (its first STAGING or RUNNING), once per job.",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(plane))
        self._seen_event = 0  # the newest timeline event already observed
        self._recent: set[int] = set()  # ids observed within RECHECK_EVENTS of it
        self._lock = threading.Lock()

    def cycle_timer(self) -> AbstractContextManager[object]:
        """Time one scheduling cycle into `cycle_seconds` (also when it raises)."""
        timer: AbstractContextManager[object] = self.cycle_seconds.time()
        return timer

    def catch_up(self) -> int:
        """Observe the admission wait of every job first started since the last call.

        Event ids are handed out before their transactions commit, so on
        PostgreSQL an event may become visible after a newer one was already
        read: each call looks again at the last `RECHECK_EVENTS` ids and skips
        those it observed (`_recent`), so a late commit is counted once.
        """
        observed = 0
        with self._lock, self._plane.db.read() as s:
            after = max(0, self._seen_event - RECHECK_EVENTS)
            while True:
                page = store_metrics.first_starts(s, after, PAGE)
                for start in page:
                    after = start.event_id
                    if start.event_id in self._recent:
                        continue
                    wait = (start.started_at - start.submitted_at).total_seconds()
                    self.admission_wait.observe(max(0.0, wait))
                    self._recent.add(start.event_id)
                    self._seen_event = max(self._seen_event, start.event_id)
                    observed += 1
                if len(page) < PAGE:
                    break
            floor = self._seen_event - RECHECK_EVENTS
            self._recent = {i for i in self._recent if i > floor}
        return observed

    def render(self) -> bytes:
        """The text exposition of every family, read now."""
        self.catch_up()
        return generate_latest(self.registry)


def check_scraper(plane: ControlPlane, token: str | None) -> None:
    """Let the metrics token or an admin token through; 401/403 with a hint otherwise."""
    hint = (
        "scrape with the metrics token (cnet server --metrics-token-file FILE) or an admin"
        " token, sent as 'Authorization: Bearer TOKEN'"
    )
    expected = plane.settings.metrics_token
    if token and expected and hmac.compare_digest(hash_token(token), hash_token(expected)):
        return
    try:
        who = plane.auth.principal(token)
    except AuthError as exc:
        raise AuthError(exc.message, field="Authorization", hint=hint) from exc
    if not who.is_admin:
        raise ForbiddenError(
            f"a {who.role} token may not read the metrics", field="Authorization", hint=hint
        )


router = APIRouter(tags=["operations"])
# Not server.deps' bearer: the plane imports this module, and deps imports the plane.
_bearer = HTTPBearer(auto_error=False, description="the metrics token or an admin token")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(
    request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> Response:
    """Prometheus metrics (text format 0.0.4); the metrics token or an admin token."""
    plane: ControlPlane = request.app.state.plane
    check_scraper(plane, creds.credentials if creds else None)
    return Response(plane.metrics.render(), media_type=CONTENT_TYPE_LATEST)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO-8601), level, logger, message (+ exception)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


LOG_FORMATS = ("text", "json")


def configure_logging(level: str, log_format: str) -> bool:
    """Set up the root logger for a server process; True when it writes JSON.

    Left alone when the process already configured logging (a test, an embedding).
    """
    if log_format not in LOG_FORMATS:
        raise ValidationError(
            f"unknown log format '{log_format}'", field="log_format", hint="text or json"
        )
    root = logging.getLogger()
    if root.handlers:
        return False
    lvl = getattr(logging, level.upper(), logging.INFO)
    if log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
        root.setLevel(lvl)
        return True
    logging.basicConfig(level=lvl, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return False


__all__ = [
    "LOG_FORMATS",
    "REASONS",
    "JsonFormatter",
    "Metrics",
    "check_scraper",
    "configure_logging",
    "read_token_file",
    "reason_category",
    "router",
]
