"""Per-request metering of inference services: what a gateway reports, what the API shows.

A gateway counts, per service and per report window (`gateway.proxy.REPORT_EVERY_S`),
the requests it answered, the errors among them (a 5xx from the replica, or no
answer at all), the bytes in and out, and two latency distributions as
`Histogram`s: time to first byte and end to end. It sends them to
``POST /api/v1/services/{name}/stats`` (`StatsReport`); the control plane adds
them up by minute (`server.service_stats`) and answers
``GET /api/v1/services/{name}/metrics`` (`ServiceMetrics`) with the series and
the totals joined with the replicas' cost (docs/services.md, "Metering").

The histogram is log-bucketed: bucket ``i`` holds the values in
``(BASE_MS·GROWTH^(i-1), BASE_MS·GROWTH^i]`` (bucket 0 everything up to
`BASE_MS`), so a percentile read from it (the upper bound of the bucket that
holds the rank) is at most ``GROWTH - 1`` (5 %) above the exact one, whatever the
number of requests, and histograms from many gateways and windows merge by
adding counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

BASE_MS = 0.01
"""Upper bound of bucket 0 (10 µs): anything faster is counted there."""
GROWTH = 1.05
"""Each bucket's upper bound over the previous one's: the percentiles' largest relative error."""
MAX_BUCKET = 400
"""The last bucket (about 10 min at these settings): slower values are counted there."""
_LOG_GROWTH = math.log(GROWTH)


def bucket_of(ms: float) -> int:
    """The bucket that counts a value of `ms` milliseconds."""
    if ms <= BASE_MS:
        return 0
    i = math.ceil(math.log(ms / BASE_MS) / _LOG_GROWTH - 1e-12)
    # Float rounding may land one bucket off at a boundary: step to the one that holds ms.
    while i > 0 and upper_ms(i - 1) >= ms:
        i -= 1
    while upper_ms(i) < ms and i < MAX_BUCKET:
        i += 1
    return min(i, MAX_BUCKET)


def upper_ms(i: int) -> float:
    """The largest value bucket `i` holds, in ms."""
    return BASE_MS * GROWTH**i


def percentile(counts: dict[int, int], q: float) -> float | None:
    """The `q`-quantile (0 < q <= 1, nearest rank) of a histogram, in ms; None when empty.

    The value at rank ``ceil(q·n)`` of the sorted inputs lies in the bucket
    returned, so the answer is within [exact, exact·GROWTH].
    """
    n = sum(counts.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n))
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            return upper_ms(i)
    return upper_ms(max(counts))  # not reached: the counts sum to n


def merge(into: dict[int, int], more: dict[int, int]) -> None:
    """Add histogram `more`'s counts to `into`."""
    for i, c in more.items():
        into[i] = into.get(i, 0) + c


Histogram = dict[int, int]
"""Counts by bucket index (`bucket_of`); absent buckets are empty."""


@dataclass
class Counts:
    """Requests, errors, bytes and the two latency histograms of a window, added up.

    The one tally of both ends: a gateway counts each request into it
    (`count`) and sends it as a `StatsReport`; the control plane adds reports
    into its minutes and totals (`add`).
    """

    requests: int = 0
    errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    ttfb_ms: Histogram = field(default_factory=dict)
    latency_ms: Histogram = field(default_factory=dict)

    def count(
        self, *, error: bool, bytes_in: int, bytes_out: int, ttfb_ms: float, latency_ms: float
    ) -> None:
        """Count one request: failed or not, its bytes, and its two latencies."""
        self.requests += 1
        self.errors += error
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out
        merge(self.ttfb_ms, {bucket_of(ttfb_ms): 1})
        merge(self.latency_ms, {bucket_of(latency_ms): 1})

    def add(self, r: StatsReport | Counts) -> None:
        """Add another tally's (or a report's) counts."""
        self.requests += r.requests
        self.errors += r.errors
        self.bytes_in += r.bytes_in
        self.bytes_out += r.bytes_out
        merge(self.ttfb_ms, r.ttfb_ms)
        merge(self.latency_ms, r.latency_ms)

    def copy(self) -> Counts:
        """A copy whose histograms are its own."""
        c = Counts()
        c.add(self)
        return c


class StatsReport(BaseModel):
    """POST /api/v1/services/{name}/stats: one gateway's counts for the service over a window."""

    gateway: str = Field(min_length=1, max_length=128, description="the gateway's own name")
    site: str | None = Field(default=None, max_length=128, description="where it sits (--site)")
    window_s: float = Field(gt=0, le=3600, description="seconds the counts cover")
    requests: int = Field(ge=0, le=10**9, description="requests answered or given up on")
    errors: int = Field(ge=0, le=10**9, description="of those: a 5xx, or no answer at all")
    bytes_in: int = Field(ge=0, description="request body bytes received")
    bytes_out: int = Field(ge=0, description="response body bytes sent back")
    ttfb_ms: dict[int, int] = Field(
        default_factory=dict, description="time to first byte, a histogram (bucket -> count)"
    )
    latency_ms: dict[int, int] = Field(
        default_factory=dict, description="end-to-end latency, a histogram (bucket -> count)"
    )


class MetricsPoint(BaseModel):
    """One minute of a service's traffic (every gateway's reports added up)."""

    t: datetime = Field(description="the minute's start (UTC, real time)")
    requests: int
    requests_per_s: float
    errors: int
    p50_ttfb_ms: float | None
    p99_ttfb_ms: float | None
    p50_latency_ms: float | None
    p99_latency_ms: float | None
    bytes_in: int
    bytes_out: int
    replicas: int = Field(description="replicas ready when the minute's last report came")
    cost_cny_per_hour: float = Field(
        description="what those replicas cost per hour then (a chart value; the totals are exact)"
    )


class MetricsTotals(BaseModel):
    """Since the control plane started (requests) and since the service was deployed (cost)."""

    requests: int
    errors: int
    error_rate: float = Field(description="errors / requests (0 with no requests)")
    p50_ttfb_ms: float | None
    p99_ttfb_ms: float | None
    p50_latency_ms: float | None
    p99_latency_ms: float | None
    bytes_in: int
    bytes_out: int
    replicas: int = Field(description="replicas ready now")
    cost_cny_per_hour: Decimal = Field(description="what the replicas running now cost per hour")
    cost_cny: Decimal = Field(
        description="¥ of every replica of the service so far (bills' prices)"
    )
    cu_hours: float = Field(description="CU·h every replica delivered so far")
    cny_per_1k_requests: float | None = Field(description="cost_cny per 1,000 requests")
    cu_hours_per_request: float | None


class ServiceMetrics(BaseModel):
    """GET /api/v1/services/{name}/metrics: the per-minute series and the totals."""

    name: str
    minutes: int = Field(description="the span of the series asked for")
    series: list[MetricsPoint]
    totals: MetricsTotals
