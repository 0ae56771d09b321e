"""Per-request metering of services at the control plane: gateways' reports by the minute.

Each gateway reports its counts for a service every few seconds
(`protocol.service_stats.StatsReport`). They are added into one bucket per
real-time minute per service, in memory, the last `KEEP_MINUTES` (24 h) kept in a
ring, plus running totals since this server started. A report also stamps its
minute with the replicas ready then and what they cost per hour, so the series
shows cost beside traffic.

Cost is the bills' (`metering.charge`, the one cost model, as `server.metering`
prices a finished job): a replica that finished is its stored charge, one still
running is charged from its start to the network's now; ¥ per 1,000 requests
and CU·h per request divide those by the requests counted.

In memory: a restart forgets the series and the request totals (the cost does
not, it comes from the jobs), and with several servers on one database each
keeps the reports it received (gateways report to one URL). docs/services.md,
"Metering".
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from computenet.errors import NotFoundError, ValidationError
from computenet.metering import charge
from computenet.model import JobState
from computenet.protocol.service_stats import (
    Counts,
    MetricsPoint,
    MetricsTotals,
    ServiceMetrics,
    StatsReport,
    percentile,
)
from computenet.scheduler.serving import replica_cost_cny_per_hour
from computenet.server import jobs
from computenet.server.auth import Principal
from computenet.store import services as store
from computenet.store.schema import ChargeRow, JobRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from computenet.server.plane import ControlPlane

KEEP_MINUTES = 24 * 60
"""Minutes of series kept per service (a ring: the oldest minute goes first)."""
MAX_BUCKETS = 2000
"""Histogram buckets one report may carry (there are far fewer: 422 above)."""


@dataclass
class Minute(Counts):
    """One minute of one service, with its replicas and their cost per hour at its last report."""

    replicas: int = 0
    cost_cny_per_hour: float = 0.0


@dataclass
class Series:
    """One service's ring of minutes and its totals."""

    minutes: OrderedDict[datetime, Minute] = field(default_factory=OrderedDict)
    totals: Counts = field(default_factory=Counts)


class StatsStore:
    """Every service's series in one server (thread-safe: reports come from the API's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], Series] = {}

    def add(
        self, key: tuple[str, str], at: datetime, r: StatsReport, replicas: int, cost_h: float
    ) -> None:
        """Count report `r` in the minute of `at` (real UTC)."""
        minute = at.replace(second=0, microsecond=0)
        with self._lock:
            series = self._series.setdefault(key, Series())
            m = series.minutes.get(minute)
            if m is None:
                m = series.minutes[minute] = Minute()
                while len(series.minutes) > KEEP_MINUTES:
                    series.minutes.popitem(last=False)
            m.add(r)
            m.replicas, m.cost_cny_per_hour = replicas, cost_h
            series.totals.add(r)

    def snapshot(
        self, key: tuple[str, str], since: datetime
    ) -> tuple[list[tuple[datetime, Minute]], Counts]:
        """Copies of the minutes from `since` on and of the totals."""
        with self._lock:
            series = self._series.get(key) or Series()
            minutes = [
                (
                    t,
                    Minute(
                        **vars(m) | {"ttfb_ms": dict(m.ttfb_ms), "latency_ms": dict(m.latency_ms)}
                    ),
                )
                for t, m in series.minutes.items()
                if t >= since
            ]
            totals = series.totals.copy()
        return minutes, totals

    def forget(self, key: tuple[str, str]) -> None:
        """Drop a service's series (it was deleted)."""
        with self._lock:
            self._series.pop(key, None)


_stores: weakref.WeakKeyDictionary[ControlPlane, StatsStore] = weakref.WeakKeyDictionary()
_stores_lock = threading.Lock()


def store_of(plane: ControlPlane) -> StatsStore:
    """This server's stats store (one per control plane object)."""
    with _stores_lock:
        got = _stores.get(plane)
        if got is None:
            got = _stores[plane] = StatsStore()
        return got


@dataclass(frozen=True)
class Cost:
    """A service's replicas: how many are ready, what they cost per hour now and so far."""

    ready: int
    cny_per_hour: Decimal
    cny: Decimal
    cu_hours: float


def replica_cost(plane: ControlPlane, s: Session, tenant: str, name: str) -> Cost:
    """Price every replica the service ever had with the bills' cost model (see module doc)."""
    net = plane.network
    now = plane.clock.now()
    ready = 0
    per_hour = Decimal(0)
    total = Decimal(0)
    cu = 0.0
    for r in store.replicas(s, tenant, name):
        job = s.get(JobRow, r.job_id)
        if job is None:
            continue
        if job.state == JobState.RUNNING.value and r.endpoint is not None and not r.retired:
            ready += 1
        billed = s.get(ChargeRow, job.id) if job.finished_at is not None else None
        if billed is not None:
            total += billed.total_cny
            cu += billed.cu_hours
            continue
        if job.started_at is None or job.center is None or job.chip is None:
            continue  # never ran: nothing to pay
        if job.center not in {c.id for c in net.centers} or job.chip not in net.chips:
            continue
        center, chip = net.center(job.center), net.chips[job.chip]
        end = job.finished_at or now
        ch = charge(
            center, chip, net.throughput, job.workload_class, job.chips, job.started_at, end
        )
        total += ch.total_cny
        cu += ch.cu_hours
        if job.finished_at is None and job.state == JobState.RUNNING.value:
            per_hour += replica_cost_cny_per_hour(net, center, chip, job.chips, now)
    return Cost(ready, per_hour, total, cu)


def _service_key(s: Session, who: Principal, name: str) -> tuple[str, str]:
    tenant = jobs.tenant_of(who)
    if store.get_service(s, tenant, name) is None:
        raise NotFoundError(f"no service '{name}'", field="name", hint="cnet serve ls lists yours")
    return tenant, name


def report(plane: ControlPlane, who: Principal, name: str, body: StatsReport) -> None:
    """Count a gateway's report (404 for an unknown service, 422 for an oversized histogram)."""
    for fld, hist in (("ttfb_ms", body.ttfb_ms), ("latency_ms", body.latency_ms)):
        if len(hist) > MAX_BUCKETS or any(i < 0 or c < 0 for i, c in hist.items()):
            raise ValidationError(
                f"histogram with over {MAX_BUCKETS} buckets or a negative bucket or count",
                field=fld,
                hint="send protocol.service_stats histograms (bucket_of indices, counts >= 0)",
            )
    if body.errors > body.requests:
        raise ValidationError(
            f"errors ({body.errors}) above requests ({body.requests})",
            field="errors",
            hint="count each failed request once, among the requests",
        )
    with plane.db.read() as s:
        key = _service_key(s, who, name)
        cost = replica_cost(plane, s, *key)
    real = datetime.fromtimestamp(plane.clock.real(), UTC)
    store_of(plane).add(key, real, body, cost.ready, float(cost.cny_per_hour))


def _spread(c: Counts) -> dict[str, Any]:
    """The fields a minute and the totals share: latency percentiles and bytes."""
    return {
        "p50_ttfb_ms": percentile(c.ttfb_ms, 0.5),
        "p99_ttfb_ms": percentile(c.ttfb_ms, 0.99),
        "p50_latency_ms": percentile(c.latency_ms, 0.5),
        "p99_latency_ms": percentile(c.latency_ms, 0.99),
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
    }


def metrics(plane: ControlPlane, who: Principal, name: str, minutes: int = 60) -> ServiceMetrics:
    """The last `minutes` of the service's series and its totals (see module doc)."""
    with plane.db.read() as s:
        key = _service_key(s, who, name)
        cost = replica_cost(plane, s, *key)
    real = datetime.fromtimestamp(plane.clock.real(), UTC)
    since = real.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    got, t = store_of(plane).snapshot(key, since)
    series = [
        MetricsPoint(
            t=at,
            requests=m.requests,
            requests_per_s=m.requests / 60.0,
            errors=m.errors,
            **_spread(m),
            replicas=m.replicas,
            cost_cny_per_hour=m.cost_cny_per_hour,
        )
        for at, m in got
    ]
    totals = MetricsTotals(
        requests=t.requests,
        errors=t.errors,
        error_rate=t.errors / t.requests if t.requests else 0.0,
        **_spread(t),
        replicas=cost.ready,
        cost_cny_per_hour=cost.cny_per_hour,
        cost_cny=cost.cny,
        cu_hours=cost.cu_hours,
        cny_per_1k_requests=float(cost.cny) * 1000 / t.requests if t.requests else None,
        cu_hours_per_request=cost.cu_hours / t.requests if t.requests else None,
    )
    return ServiceMetrics(name=name, minutes=minutes, series=series, totals=totals)
