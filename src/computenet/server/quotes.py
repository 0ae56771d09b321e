"""The market between regions, this plane's side: ask regions to price jobs, keep their quotes.

A region (a center tagged `region`, docs/federation.md) prices a pending job with
its own scheduler. Pull mode holds: this plane never calls a region. It asks in
a heartbeat reply (`HeartbeatReply.quote_requests`, at most
`MAX_QUOTE_REQUESTS`), and the region's network agent answers in a later
heartbeat (`HeartbeatRequest.quotes`). The flow, for a PENDING job:

1. The scheduling cycle (`hold`) finds the regions that could run the job
   (online, answering quotes, not avoided, with one of its chip types) and
   asks each that has no fresh quote for it. A batch job not pinned to a
   center waits for their answers at most `quote_wait_s` (a few heartbeats),
   its reason saying for which regions; an interactive or pinned job never
   waits, and uses a quote only when one is fresh.
2. Each region's heartbeat (`received`, `take`) hands in its quotes and takes
   the next jobs to price.
3. The cycle's snapshot carries the fresh quotes (`snapshot_quotes`): the
   scheduler prices those options by them (`scheduler/region_quotes.py`);
   without one, the region's option keeps this plane's estimate.

A quote is fresh for its `ttl_s` from its receipt (at most `MAX_QUOTE_TTL_S`);
only quotes for jobs this plane asked that region about are kept. The book is
memory of the replica that gets the heartbeats and schedules — the leader, to
which agents' failover clients go: quotes are short-lived and advisory, and a
replica that takes over starts with none (jobs then fall back to the rate
card until the regions answer again).
"""

from __future__ import annotations

import threading
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from computenet.errors import ValidationError
from computenet.metering import fee_cny
from computenet.model import JobSpec
from computenet.model.center import Center
from computenet.protocol.center import MAX_QUOTE_REQUESTS, JobQuote, QuoteRequest
from computenet.scheduler.overflow import PARENT_TAG
from computenet.scheduler.region_quotes import Quotes, RegionQuote
from computenet.scheduler.snapshot import JobRequest, Snapshot
from computenet.server import center_checks
from computenet.server.metering import budget_left
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

# A request handed out and not answered is handed out again after this long (real s).
RESEND_S = 10.0
# The most jobs waiting to be priced per region (the oldest are dropped past it).
MAX_WANTED = 1024
WAITING = "waiting for the own quote of region"
"""How a held job's reason begins (`hold`)."""


def quote_wait_s(heartbeat_interval_s: float) -> float:
    """How long a job waits for the regions' quotes: a request goes out in one heartbeat
    reply and the answer comes in a later heartbeat, so a few heartbeats and a margin."""
    return 3.0 * heartbeat_interval_s + 2.0


def check_quotes(center: Center, quotes: Sequence[JobQuote] | None) -> None:
    """Refuse quotes (`HeartbeatRequest.quotes`) from a center that is not a region (422)."""
    if quotes is not None and center_checks.REGION_TAG not in center.tags:
        raise ValidationError(
            f"center '{center.id}' is not a region: it has no scheduler of its own to quote",
            field="quotes",
            hint=f"leave quotes out, or tag the center '{center_checks.REGION_TAG}' in the"
            " network file",
        )
    for i, q in enumerate(quotes or ()):
        if q.chip is not None and q.chip not in {p.chip for p in center.pools}:
            raise ValidationError(
                f"quote for job '{q.job_id}' names chip '{q.chip}', which center"
                f" '{center.id}' does not have",
                field=f"quotes[{i}].chip",
                hint="name one of the center's chip types, or leave chip out",
            )


@dataclass
class _Kept:
    quote: JobQuote
    until: float  # real unix seconds


@dataclass
class QuoteBook:
    """What this plane asked regions to price, and their fresh answers (thread-safe)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    # center → job id → real time it was last handed out (0: not yet)
    _wanted: dict[str, dict[str, float]] = field(default_factory=dict)
    # job id → center → chip ('' for any) → the quote
    _quotes: dict[str, dict[str, dict[str, _Kept]]] = field(default_factory=dict)
    _answering: dict[str, float] = field(default_factory=dict)  # center → last heartbeat
    _first_held: dict[str, float] = field(default_factory=dict)  # job id → when it first waited
    version: int = 0  # bumped when a quote is taken in: the next cycle looks again

    def received(self, center: str, quotes: Sequence[JobQuote] | None, real: float) -> None:
        """A region's heartbeat: it answers quotes (a list, even empty) and these are its answers.

        Only answers to what this plane asked the region are kept.
        """
        if quotes is None:
            return
        with self._lock:
            self._answering[center] = real
            asked = self._wanted.get(center, {})
            for q in quotes:
                if q.job_id not in asked:
                    continue
                if q.reason is None and q.chip is None:
                    # A price for any chip replaces one per chip: the region's latest word.
                    self._quotes.get(q.job_id, {}).pop(center, None)
                per = self._quotes.setdefault(q.job_id, {}).setdefault(center, {})
                per[q.chip or ""] = _Kept(q, real + q.ttl_s)
                self.version += 1
            for q in quotes:
                asked.pop(q.job_id, None)

    def answering(self, center: str, real: float, within_s: float) -> bool:
        """Whether `center` said in a heartbeat within `within_s` that it answers quotes."""
        with self._lock:
            return real - self._answering.get(center, float("-inf")) <= within_s

    def take(self, center: str, real: float, n: int = MAX_QUOTE_REQUESTS) -> list[str]:
        """Up to `n` job ids to ask `center` to price now (unanswered ones again after RESEND_S)."""
        out: list[str] = []
        with self._lock:
            wanted = self._wanted.get(center, {})
            for jid, at in wanted.items():
                if len(out) >= n:
                    break
                if real - at >= RESEND_S:
                    wanted[jid] = real
                    out.append(jid)
        return out

    def fresh(self, job_id: str, center: str, real: float) -> bool:
        """Whether `center` has a fresh quote for `job_id`."""
        with self._lock:
            return any(
                k.until > real for k in self._quotes.get(job_id, {}).get(center, {}).values()
            )

    def hold(
        self, job_id: str, centers: Iterable[str], real: float, wait_s: float, may_wait: bool
    ) -> list[str]:
        """Ask `centers` without a fresh quote to price `job_id`; the ones to wait for.

        A job waits (once) at most `wait_s` from when it first did; with `may_wait`
        false it asks and never waits.
        """
        missing = [c for c in centers if not self.fresh(job_id, c, real)]
        with self._lock:
            for c in missing:
                wanted = self._wanted.setdefault(c, {})
                if job_id not in wanted:
                    if len(wanted) >= MAX_WANTED:
                        wanted.pop(next(iter(wanted)))
                    wanted[job_id] = 0.0
            if not missing or not may_wait:
                return []
            first = self._first_held.setdefault(job_id, real)
            return missing if real - first < wait_s else []

    def quotes(self, real: float) -> dict[str, dict[str, list[JobQuote]]]:
        """Every fresh quote: job id → center → quotes; expired ones are dropped."""
        out: dict[str, dict[str, list[JobQuote]]] = {}
        with self._lock:
            for jid in list(self._quotes):
                per_center = self._quotes[jid]
                for c in list(per_center):
                    kept = [k.quote for k in per_center[c].values() if k.until > real]
                    if kept:
                        out.setdefault(jid, {})[c] = kept
                    else:
                        del per_center[c]
                if not per_center:
                    del self._quotes[jid]
        return out

    def forget(self, live: Container[str]) -> None:
        """Drop what is kept of jobs not in `live` (the pending ones) but their quotes,
        which expire by themselves (a placed job's re-planning may still read them)."""
        keep = live
        with self._lock:
            for wanted in self._wanted.values():
                for jid in [j for j in wanted if j not in keep]:
                    del wanted[jid]
            for jid in [j for j in self._first_held if j not in keep]:
                del self._first_held[jid]


def awaiting(plane: ControlPlane, req: JobRequest, snap: Snapshot, real: float) -> str | None:
    """Ask the regions that could run `req` to price it; the reason to hold it, if it waits.

    Those regions are online, answer quotes, are not avoided by the job and have one
    of its chip types; a region's own parent (a center tagged `parent`) is not asked.
    A batch job not pinned to a center waits for them (`hold`); None: schedule it
    now, with whatever quotes are fresh.
    """
    regions = snap.memo.get(_REGIONS)
    if regions is None:
        regions = [
            (i, c)
            for i, c in enumerate(snap.network.centers)
            # A region's parent (overflow up) is only a second pass: no job waits for it.
            if center_checks.REGION_TAG in c.tags and PARENT_TAG not in c.tags
        ]
        snap.memo[_REGIONS] = regions
    if not regions:
        return None
    within = plane.settings.lease_timeout_s
    asked = []
    for i, c in regions:
        if not snap.online[i] or c.id in req.avoid_centers:
            continue
        if req.pin_center is not None and req.pin_center != c.id:
            continue
        if req.types and not {p.chip for p in c.pools}.intersection(req.types):
            continue
        if plane.quotes.answering(c.id, real, within):
            asked.append(c.id)
    if not asked:
        return None
    may_wait = req.latency_class == "batch" and req.pin_center is None
    wait_s = quote_wait_s(plane.settings.heartbeat_interval_s)
    missing = plane.quotes.hold(req.id, asked, real, wait_s, may_wait)
    if not missing:
        return None
    return f"{WAITING} {', '.join(missing)} (at most {wait_s:.0f} s; docs/federation.md)"


_REGIONS = ("quotes", "regions")  # Snapshot.memo key: the network's regions, by index


def snapshot_quotes(plane: ControlPlane, real: float) -> Quotes:
    """The fresh quotes as the scheduler reads them (`Snapshot.quotes`): the region's price,
    the fee this plane declares for it, and its finish in this plane's network time."""
    out: dict[str, tuple[RegionQuote, ...]] = {}
    for jid, per_center in plane.quotes.quotes(real).items():
        got: list[RegionQuote] = []
        for cid, quotes in per_center.items():
            try:
                rate = center_checks.fee_rate(plane.network.center(cid))
            except (KeyError, ValidationError):
                continue  # a center gone from the network file, or a bad fee tag: no market
            for q in quotes:
                if q.reason is not None:
                    got.append(RegionQuote(center=cid, chip=q.chip, reason=q.reason))
                    continue
                assert q.price_cny is not None and q.finish_real is not None
                got.append(
                    RegionQuote(
                        center=cid,
                        chip=q.chip,
                        own_cny=q.price_cny,
                        fee_cny=fee_cny(q.price_cny, rate),
                        energy_cny=q.energy_cny or Decimal("0.00"),
                        finish=plane.clock.to_network(q.finish_real),
                    )
                )
        if got:
            out[jid] = tuple(got)
    return out


def quote_request(plane: ControlPlane, row: JobRow, center: Center) -> QuoteRequest | None:
    """What a region needs to price `row` (None: the job no longer reads or has no chip there).

    The spec as the user wrote it, less its environment (a region prices, it does not
    run), its center and its relative deadline; the chip types are the job's that the
    region has. The deadline and budget travel as in a lease.
    """
    try:
        spec = JobSpec.model_validate(row.spec)
    except ValueError:
        return None
    chips = [p.chip for p in center.pools]
    types = tuple(t for t in spec.chips.types if t in chips) if spec.chips.types else tuple(chips)
    if not types:
        return None
    quoted = spec.model_copy(
        update={
            "env": {},
            "center": None,
            "deadline": None,
            "budget_cny": None,
            # The parent picks the chip type and count, the region the center (as in a lease).
            "chips": spec.chips.model_copy(update={"types": types, "stack": None}),
        }
    )
    return QuoteRequest(
        job_id=row.id,
        spec=quoted,
        deadline_real=plane.clock.to_real(row.deadline) if row.deadline is not None else None,
        budget_left_cny=budget_left(plane, row, center.id, spec),
    )
