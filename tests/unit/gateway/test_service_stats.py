"""Per-request metering: histogram percentiles against a sort, the gateway's meter, and
the control plane's minute-by-minute store."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from computenet.gateway.proxy import Meter
from computenet.protocol.service_stats import (
    BASE_MS,
    GROWTH,
    MAX_BUCKET,
    StatsReport,
    bucket_of,
    merge,
    percentile,
    upper_ms,
)
from computenet.server.service_stats import KEEP_MINUTES, StatsStore


def test_each_value_lands_in_the_bucket_that_holds_it() -> None:
    rnd = random.Random(1)
    for _ in range(20_000):
        ms = math.exp(rnd.uniform(math.log(1e-3), math.log(5e5)))
        i = bucket_of(ms)
        assert ms <= upper_ms(i)
        assert i == 0 or ms > upper_ms(i - 1)
    assert bucket_of(0.0) == 0 and bucket_of(BASE_MS) == 0
    assert bucket_of(upper_ms(7)) == 7  # a boundary belongs to the lower bucket
    assert bucket_of(1e12) == MAX_BUCKET


def test_percentiles_from_merged_histograms_equal_a_sort_within_the_bucket_error() -> None:
    rnd = random.Random(7)
    for trial in range(50):
        n = rnd.randint(1, 3000)
        values = [rnd.lognormvariate(rnd.uniform(-1, 5), rnd.uniform(0.1, 2)) for _ in range(n)]
        # Several gateways' windows, merged as the control plane adds them up.
        total: dict[int, int] = {}
        for part in (values[: n // 3], values[n // 3 :]):
            h: dict[int, int] = {}
            for v in part:
                h[bucket_of(v)] = h.get(bucket_of(v), 0) + 1
            merge(total, h)
        ordered = sorted(values)
        for q in (0.5, 0.9, 0.99, 1.0):
            exact = ordered[max(1, math.ceil(q * n)) - 1]
            got = percentile(total, q)
            assert got is not None
            assert exact <= got <= max(exact, BASE_MS) * GROWTH * (1 + 1e-9), (trial, q)
    assert percentile({}, 0.5) is None


def test_the_meter_counts_per_service_and_starts_a_new_window_when_taken() -> None:
    m = Meter()
    m.record("a", error=False, bytes_in=10, bytes_out=100, ttfb_s=0.002, total_s=0.005)
    m.record("a", error=True, bytes_in=0, bytes_out=50, ttfb_s=0.5, total_s=0.5)
    m.record("b", error=False, bytes_in=1, bytes_out=2, ttfb_s=0.001, total_s=0.001)
    window, counts = m.take()
    assert window > 0
    a = counts["a"]
    assert (a.requests, a.errors, a.bytes_in, a.bytes_out) == (2, 1, 10, 150)
    assert sum(a.ttfb_ms.values()) == 2 and percentile(a.ttfb_ms, 1.0) >= 500
    assert percentile(a.latency_ms, 0.5) == upper_ms(bucket_of(5.0))
    assert counts["b"].requests == 1
    assert m.take()[1] == {}


def _report(requests: int, errors: int, ms: float) -> StatsReport:
    return StatsReport(
        gateway="g",
        window_s=2,
        requests=requests,
        errors=errors,
        bytes_in=requests,
        bytes_out=2 * requests,
        ttfb_ms={bucket_of(ms): requests},
        latency_ms={bucket_of(2 * ms): requests},
    )


def test_the_control_plane_adds_reports_by_minute_and_keeps_a_bounded_ring() -> None:
    store = StatsStore()
    key = ("acme", "echo")
    t0 = datetime(2026, 12, 5, 9, 0, 10, tzinfo=UTC)
    store.add(key, t0, _report(10, 1, 5.0), replicas=1, cost_h=2.0)
    store.add(key, t0 + timedelta(seconds=30), _report(30, 0, 50.0), replicas=2, cost_h=4.0)
    store.add(key, t0 + timedelta(minutes=1), _report(5, 5, 1.0), replicas=2, cost_h=4.0)
    minutes, totals = store.snapshot(key, t0.replace(second=0))
    assert [m.requests for _, m in minutes] == [40, 5]
    first = minutes[0][1]
    assert (first.errors, first.bytes_in, first.bytes_out) == (1, 40, 80)
    assert (first.replicas, first.cost_cny_per_hour) == (2, 4.0)  # its last report's
    assert percentile(first.ttfb_ms, 0.25) == upper_ms(bucket_of(5.0))
    assert percentile(first.ttfb_ms, 0.99) == upper_ms(bucket_of(50.0))
    assert (totals.requests, totals.errors) == (45, 6)
    assert [t for t, _ in store.snapshot(key, t0.replace(second=0) + timedelta(minutes=1))[0]] == [
        t0.replace(second=0) + timedelta(minutes=1)
    ]
    # A copy: changing it leaves the store as it was.
    first.ttfb_ms.clear()
    assert store.snapshot(key, t0.replace(second=0))[0][0][1].ttfb_ms
    # The ring keeps the last KEEP_MINUTES minutes; the totals keep counting.
    for i in range(KEEP_MINUTES + 5):
        store.add(key, t0 + timedelta(minutes=2 + i), _report(1, 0, 1.0), 1, 1.0)
    minutes, totals = store.snapshot(key, t0 - timedelta(days=2))
    assert len(minutes) == KEEP_MINUTES
    assert minutes[-1][0] == t0.replace(second=0) + timedelta(minutes=KEEP_MINUTES + 6)
    assert totals.requests == 45 + KEEP_MINUTES + 5
    store.forget(key)
    assert store.snapshot(key, t0)[1].requests == 0
