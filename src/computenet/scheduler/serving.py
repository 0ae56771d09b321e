"""Where a service's replicas run: placement by demand, moves over the day, the hourly budget.

Pure decisions (no database, no clock): the keeper (`server/services.py`)
gathers the inputs and acts on the answers (docs/services.md, "Placement").

- **Demand** is a weight per site: the in-flight plus waiting requests the
  gateways at that site (a user site or a center) report for the service.
- **A spot** is a center that can run a replica: one of the service's chip
  types, online, with its replica cost per hour now (`replica_cost_cny_per_hour`,
  the metering module's price of the coming hour) and how many more replicas
  its free chips hold.
- **The objective** leaves the network a share of the p99 TTFB: a center fits
  a site when the round trip between them (twice the shortest path's latency,
  `gateway.scoring.rtt_ms`) is at most that share; the rest is kept for the
  model's own time to first byte and queueing. The share is measured where
  it can be (`network_share`): the objective less the service's own p99 time
  to first byte (`service_p99_ms`: the gateways' p99 TTFB less the round trip
  in it), within `MIN_NETWORK_SHARE`..`MAX_NETWORK_SHARE`; `NETWORK_SHARE`
  while there is no such measure.

`choose` places one new replica: it serves the site whose demand is worst
covered by the replicas already placed (its share of all replicas, by
weight, less the replicas within its RTT limit) at the cheapest spot that
fits that site; when none fits, at the nearest. `misplaced` finds one
replica that a move would serve clearly better: one outside the objective
of the demand it serves where another spot fits, or one at least
`MOVE_GAIN` dearer than the spot `choose` would pick now. `budget_keep`
caps the replicas by the hourly budget, never below `replicas.min`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from computenet.metering.pricing import charge
from computenet.model import Center, Chip, Network
from computenet.model.job import ChipRequest
from computenet.model.service import REPLICA_CLASS

NETWORK_SHARE = 0.5
"""Share of the latency objective the network round trip may use while the service's own
time to first byte is not measured yet (the rest: service time)."""

MIN_NETWORK_SHARE = 0.1
"""The least share the network keeps however slow the service measures (a replica must still
be placeable somewhere near)."""

MAX_NETWORK_SHARE = 0.9
"""The most share the network gets however fast the service measures (queueing needs room)."""

MIN_TTFB_SAMPLES = 100
"""Requests a p99 time to first byte must rest on before it replaces `NETWORK_SHARE` (fewer:
the p99 is the slowest one or two requests, noise)."""

MOVE_GAIN = 0.2
"""A replica moves for price only to a spot at least this much cheaper (hysteresis)."""

SERVICE_CLASS = REPLICA_CLASS  # the replica jobs' class (model/service.py)
"""The workload class a replica runs as (`ServiceSpec.replica_job`)."""


@dataclass(frozen=True)
class Spot:
    """A center a replica could run at, as it stands now."""

    center: str
    cost_cny_per_hour: float  # one replica there for the coming hour
    free: int  # replicas more that its free chips hold now


@dataclass(frozen=True)
class Choice:
    """Where one replica goes, and why."""

    center: str
    site: str  # the demand it is placed for
    rtt_ms: float  # from that site
    cost_cny_per_hour: float
    fits: bool  # within the objective's network share
    reason: str


@dataclass(frozen=True)
class Move:
    """Replica `index` (of the current centers given) would be better at `to`."""

    index: int
    to: Choice
    reason: str


def service_p99_ms(p99_ttfb_ms: float | None, rtt_share_ms: float) -> float | None:
    """The service's own p99 time to first byte: the observed p99 TTFB less the round trip
    in it (`rtt_share_ms`), at least 0; None when there is no observed p99."""
    if p99_ttfb_ms is None:
        return None
    return max(0.0, p99_ttfb_ms - rtt_share_ms)


def network_share(objective_ms: float, service_ms: float | None) -> float:
    """Share of the objective the round trip may use when the service itself takes
    `service_ms` at p99 (None: not measured, `NETWORK_SHARE`): what it leaves, bounded."""
    if service_ms is None:
        return NETWORK_SHARE
    left = (objective_ms - service_ms) / objective_ms
    return min(MAX_NETWORK_SHARE, max(MIN_NETWORK_SHARE, left))


def rtt_limit_ms(objective_ms: float, service_ms: float | None = None) -> float:
    """The longest round trip a replica may be from a site and meet the objective, when the
    service's own p99 time to first byte is `service_ms` (None: not measured)."""
    return network_share(objective_ms, service_ms) * objective_ms


def suits(chip: Chip, req: ChipRequest, network: Network) -> bool:
    """`chip` is one a replica asking `req` may run on (types, stack, memory, the class).

    The same rules as the scheduler's filters (`scheduler/plugins/filters.py`)
    for a replica's one class.
    """
    if network.throughput.delivered_pflops(SERVICE_CLASS, chip) <= 0:
        return False
    if req.types and chip.name not in req.types:
        return False
    if req.stack and chip.stack != req.stack:
        return False
    need = req.memory_gb or network.throughput.min_memory_gb.get(SERVICE_CLASS, 0.0)
    return chip.memory_gb >= need


def replica_cost_cny_per_hour(
    network: Network, center: Center, chip: Chip, chips: int, now: datetime
) -> Decimal:
    """¥ one replica of `chips` × `chip` at `center` costs for the coming hour from `now`.

    The metering module's one cost model (`metering.cost.price`): energy on the
    center's tariff hour by hour times its PUE, and its service price per CU·h
    of the work the chips deliver on the inference class.
    """
    end = now + timedelta(hours=1)
    return charge(center, chip, network.throughput, SERVICE_CLASS, chips, now, end).total_cny


def _fits(rtt: Mapping[tuple[str, str], float], site: str, center: str, limit: float) -> bool:
    return rtt.get((site, center), float("inf")) <= limit


def _deficits(
    demand: Mapping[str, float],
    rtt: Mapping[tuple[str, str], float],
    limit: float,
    placed: Sequence[str],
) -> list[tuple[float, float, str]]:
    """Sites by how badly the placed replicas cover them, worst first: (deficit, weight, site)."""
    total = sum(demand.values())
    n = len(placed) + 1
    out = []
    for site, w in demand.items():
        served = sum(1 for c in placed if _fits(rtt, site, c, limit))
        out.append((w / total * n - served, w, site))
    out.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return out


def choose(
    demand: Mapping[str, float],
    spots: Sequence[Spot],
    rtt: Mapping[tuple[str, str], float],
    objective_ms: float,
    placed: Sequence[str] = (),
    site: str | None = None,
    service_ms: float | None = None,
) -> Choice | None:
    """The center for one more replica, with `placed` the centers of those already placed.

    It serves `site` when given, else the site worst covered. `service_ms`: the
    service's own p99 time to first byte (`rtt_limit_ms`). None when there is
    no demand to go by or no spot with room: the caller falls back to the
    ordinary scheduler.
    """
    demand = {s: w for s, w in demand.items() if w > 0}
    room = [p for p in spots if p.free > 0]
    if not demand or not room:
        return None
    limit = rtt_limit_ms(objective_ms, service_ms)
    if site is None:
        site = _deficits(demand, rtt, limit, placed)[0][2]
    weight = demand.get(site, 0.0)
    total = sum(demand.values())

    def spread(p: Spot) -> float:  # mean RTT over all the demand: the tie-break
        return sum(w * rtt.get((s, p.center), float("inf")) for s, w in demand.items()) / total

    fit = [p for p in room if _fits(rtt, site, p.center, limit)]
    share = f"{weight / total:.0%} of the demand"
    if fit:
        best = min(fit, key=lambda p: (p.cost_cny_per_hour, spread(p), p.center))
        r = rtt.get((site, best.center), 0.0)
        reason = (
            f"for {site} ({share}): the cheapest of {len(fit)} center(s) within"
            f" {limit:g} ms RTT of it ({r:.0f} ms), ¥{best.cost_cny_per_hour:.2f}/h per replica"
        )
        return Choice(best.center, site, r, best.cost_cny_per_hour, True, reason)
    best = min(
        room,
        key=lambda p: (rtt.get((site, p.center), float("inf")), p.cost_cny_per_hour, p.center),
    )
    r = rtt.get((site, best.center), float("inf"))
    reason = (
        f"for {site} ({share}): no center with free chips within {limit:g} ms RTT of it;"
        f" the nearest ({r:.0f} ms), ¥{best.cost_cny_per_hour:.2f}/h per replica"
    )
    return Choice(best.center, site, r, best.cost_cny_per_hour, False, reason)


def misplaced(
    demand: Mapping[str, float],
    spots: Sequence[Spot],
    rtt: Mapping[tuple[str, str], float],
    objective_ms: float,
    current: Sequence[str],
    gain: float = MOVE_GAIN,
    service_ms: float | None = None,
) -> Move | None:
    """One replica (of those at `current`) worth moving now, the worst first; None if none.

    With the others where they are, a replica serves the worst-covered site
    its center fits, if that site is short of replicas without it; it then
    moves only for price: to the cheapest spot fitting that site when that
    costs at most ``1 - gain`` of its own center. A replica serving no such
    site moves where `choose` puts one more replica when that fits the
    objective (its own center counts as having room), or for price as above.
    Of several, a move into the objective first, then the largest saving.
    `service_ms` as for `choose`.
    """
    live = {s: w for s, w in demand.items() if w > 0}
    if not live or not current:
        return None
    cost = {p.center: p.cost_cny_per_hour for p in spots}
    limit = rtt_limit_ms(objective_ms, service_ms)
    found: list[tuple[int, float, Move]] = []
    for i, here in enumerate(current):
        if here not in cost:
            continue  # not a spot now (offline, or not one of the chip types): not judged
        others = [c for j, c in enumerate(current) if j != i]
        with_own = [Spot(p.center, p.cost_cny_per_hour, p.free + (p.center == here)) for p in spots]
        serves = [
            site
            for deficit, _, site in _deficits(live, rtt, limit, others)
            if deficit > 0 and _fits(rtt, site, here, limit)
        ]
        site = serves[0] if serves else None
        to = choose(live, with_own, rtt, objective_ms, others, site=site, service_ms=service_ms)
        if to is None or to.center == here:
            continue
        here_fits = _fits(rtt, to.site, here, limit)
        here_rtt = rtt.get((to.site, here), float("inf"))
        if to.fits and not here_fits:
            why = f"{here} is {here_rtt:.0f} ms RTT from {to.site}, over the {limit:g} ms limit"
            found.append((0, 0.0, Move(i, to, why)))
        elif to.cost_cny_per_hour <= (1 - gain) * cost[here]:
            why = (
                f"{to.center} costs ¥{to.cost_cny_per_hour:.2f}/h against"
                f" ¥{cost[here]:.2f}/h at {here}"
            )
            found.append((1, to.cost_cny_per_hour - cost[here], Move(i, to, why)))
    if not found:
        return None
    return min(found, key=lambda t: (t[0], t[1], t[2].index))[2]


def budget_keep(costs: Sequence[float], budget: float | None, minimum: int) -> int:
    """How many of the replicas costing `costs` (kept first, in order) the budget allows.

    The longest prefix whose sum is at most `budget` ¥/h, but never fewer than
    `minimum` (`replicas.min` wins over the budget; the caller warns), nor more
    than there are. No budget: all.
    """
    if budget is None:
        return len(costs)
    kept, total = 0, 0.0
    for c in costs:
        if total + c > budget + 1e-9:
            break
        total += c
        kept += 1
    return max(kept, min(minimum, len(costs)))
