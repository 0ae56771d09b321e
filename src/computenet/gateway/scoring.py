"""Which replica answers a request: the decision, in the manner of IETF CATS.

Three levels (docs/services.md, "How the gateway picks a replica"):

1. **Raw metrics**, per replica: `rtt_ms` from the gateway's site to the
   replica's center over the network's links (the shortest path, both ways);
   `inflight`, requests this gateway has sent it that have not finished;
   `tariff_cny_kwh`, the center's electricity price at the network's now
   (times its PUE: what a kWh of chip work costs there); and `speed_pflops`,
   what the replica's chips deliver on inference work (the catalog's peak
   times the throughput matrix's efficiency; 0 when unknown).
2. **Normalized**, each in [0, 1] (load may pass 1 when over target):
   ``rtt = rtt_ms / objective_ms`` (the share of the latency objective the
   network alone uses, capped at 1); ``load = inflight / target_inflight``;
   ``price = (tariff - cheapest) / (dearest - cheapest)`` among the candidates
   (0 when all are equal); ``slow = 1 - speed / fastest`` among the
   candidates (the fastest 0, half as fast 0.5; 0 for all when any speed is
   unknown, so an unknown chip neither wins nor loses by it).
3. **One score**, ``W_RTT·rtt + W_LOAD·load + W_PRICE·price + W_SPEED·slow``;
   the lowest wins, ties go to the replica with fewer in-flight requests, then
   in list order.

Replicas that failed a request lately are left out for `FAILED_HOLD_S`;
a session (the ``X-CNet-Session`` header) stays on its replica while that one
is a candidate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from computenet.model import Network
from computenet.model.chips import Chip
from computenet.model.service import REPLICA_CLASS
from computenet.model.workload import ThroughputMatrix
from computenet.network.paths import PathTable

W_RTT = 0.45
"""Weight of the network's share of the latency objective."""
W_LOAD = 0.3
"""Weight of the replica's load against its target."""
W_PRICE = 0.1
"""Weight of the center's power price now, among the candidates."""
W_SPEED = 0.15
"""Weight of how much slower the replica's chip is than the fastest candidate's."""

FAILED_HOLD_S = 5.0
"""Seconds a replica that failed a request is left out (then tried again)."""


@dataclass(frozen=True)
class Raw:
    """Level 1: one replica's raw metrics."""

    key: str  # the replica's job id
    endpoint: str  # host:port
    center: str
    rtt_ms: float
    inflight: int
    tariff_cny_kwh: float
    speed_pflops: float = 0.0  # 0: unknown


@dataclass(frozen=True)
class Scored:
    """Levels 2 and 3: the normalized metrics and the score (lower is better)."""

    raw: Raw
    rtt: float
    load: float
    price: float
    score: float
    slow: float = 0.0


def rtt_ms(paths: PathTable, network: Network, site: str | None, center: str) -> float:
    """Round-trip ms from `site` to `center` over the links (0 without a site or a path)."""
    if site is None or site not in paths.nodes or center not in paths.nodes:
        return 0.0
    one_way = float(paths.latency_s[paths.index(site), paths.index(center)])
    return 0.0 if one_way == float("inf") else 2000.0 * one_way


def tariff_now(network: Network, center: str, now: datetime) -> float:
    """¥ per kWh of chip work at `center` at `now` (its tariff times its PUE); 0 if unknown."""
    for c in network.centers:
        if c.id == center:
            return float(c.tariff.price_at(now)) * c.pue
    return 0.0


def speed_pflops(
    chips: Mapping[str, Chip],
    matrix: ThroughputMatrix,
    chip: str | None,
    count: int,
    cls: str = REPLICA_CLASS,
) -> float:
    """PFLOPS `count` chips of type `chip` deliver on `cls` work; 0 when unknown.

    `chips` and `matrix` are the network's (`Network.chips`, `.throughput`), or
    the catalog's (`catalog.loader.load_chips`, `load_throughput`) without one.
    """
    if chip is None or chip not in chips:
        return 0.0
    return count * matrix.delivered_pflops(cls, chips[chip])


def score(raws: list[Raw], *, objective_ms: float, target_inflight: int) -> list[Scored]:
    """Normalize and score every candidate, best first."""
    if not raws:
        return []
    cheapest = min(r.tariff_cny_kwh for r in raws)
    spread = max(r.tariff_cny_kwh for r in raws) - cheapest
    fastest = max(r.speed_pflops for r in raws)
    known = fastest > 0 and min(r.speed_pflops for r in raws) > 0
    out = []
    for r in raws:
        rtt = min(1.0, r.rtt_ms / objective_ms) if objective_ms > 0 else 0.0
        load = r.inflight / max(1, target_inflight)
        price = (r.tariff_cny_kwh - cheapest) / spread if spread > 0 else 0.0
        slow = 1.0 - r.speed_pflops / fastest if known else 0.0
        total = W_RTT * rtt + W_LOAD * load + W_PRICE * price + W_SPEED * slow
        out.append(Scored(r, rtt, load, price, total, slow))
    order = sorted(range(len(out)), key=lambda i: (out[i].score, out[i].raw.inflight, i))
    return [out[i] for i in order]
