"""The scheduling cycle: snapshot the network, call the (pure) scheduler, persist its decisions."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from computenet.errors import ValidationError
from computenet.model import Dataset, JobSpec, JobState, Placement
from computenet.model.center import CST
from computenet.scheduler import (
    OVERRUN_HOLD,
    REJECTED,
    Decision,
    JobRequest,
    Reservation,
    Snapshot,
    build_snapshot,
    job_request,
    schedule_cycle,
    signature,
)
from computenet.scheduler.fairshare import FAIR_START_WINDOW, RECLAIMED, fair_cycle
from computenet.scheduler.index import network_index
from computenet.scheduler.ordering import order_key
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.preemption import resumed
from computenet.scheduler.replan import MIN_EARLIER, REPLAN_BATCH, Planned, replan
from computenet.scheduler.tenancy import TenantUse, admit, decay
from computenet.server import preempting, quotes
from computenet.server.reconciler import unplace
from computenet.store import jobs as job_store
from computenet.store.centers import dataset_owners, datasets_as_model, list_centers
from computenet.store.quotas import (
    charged_usage,
    charges_fingerprint,
    reclaimable,
    several_pending_tenants,
    tenant_uses,
)
from computenet.store.schema import JobRow
from computenet.store.vouchers import live_vouchers

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)

# Even when nothing changed, re-run the scheduler this often (real seconds).
FULL_PASS_S = 30.0
# Fair share gives back at most this many plans made ahead per cycle.
RECLAIM_BATCH = 1000


@dataclass
class CycleMemory:
    """What the leader's scheduling cycles remember between passes (owned by this module).

    `requests`: each pending job's request, with what it was built from and its
    signature; `last_key`: the snapshot inputs of the last cycle that placed
    nothing; `unplaced`: the (job, avoided centers as stored) pairs that cycle
    left unplaced; `last_full`: real time of the last full pass; `replan_key`:
    the inputs of the last re-planning look. All of it describes the database
    as this replica last saw it, so a new leader term starts it afresh (`forget`).
    """

    requests: dict[str, tuple[object, JobRequest, Hashable]] = field(default_factory=dict)
    last_key: object = None
    last_full: float = float("-inf")
    unplaced: set[tuple[str, str]] = field(default_factory=set)
    replan_key: object = None
    # Fair share: (charges' fingerprint, network time, `store.quotas.charged_usage` then).
    charged: tuple[tuple[int, float], datetime, dict[str, float]] | None = None

    def forget(self) -> None:
        """Drop everything (a new leader term: another leader has written since)."""
        self.requests.clear()
        self.unplaced.clear()
        self.last_key = None
        self.last_full = float("-inf")
        self.replan_key = None
        self.charged = None

    def calendar_changed(self) -> None:
        """Plans or reservations moved: every pending job is looked at afresh next cycle."""
        self.last_key = None
        self.unplaced.clear()


def held(j: JobRow, now: datetime) -> Reservation | None:
    """The chips an active job holds in the calendar, and until when.

    Jobs that ended hold nothing (they are not active). A SCHEDULED job holds
    its plan. A job that started (STAGING, RUNNING) holds its chips until its
    planned finish, or its actual start plus its planned run when it started
    late, and never less than `OVERRUN_HOLD` past now: an overrunning job
    keeps its chips.
    """
    if not (j.center and j.chip and j.planned_start is not None):
        return None
    end = j.planned_finish or now
    began = j.started_at or j.staging_at
    if j.state != JobState.SCHEDULED.value and began is not None and j.placement:
        end = max(end, began + timedelta(seconds=float(j.placement.get("run_s", 0.0))))
    return Reservation(j.center, j.chip, j.chips, j.planned_start, max(end, now + OVERRUN_HOLD))


def snapshot(
    plane: ControlPlane, s: Session, now: datetime, leave_out: frozenset[str] = frozenset()
) -> Snapshot:
    """The cycle's immutable input: reservations, online centers, reported free chips, datasets.

    Jobs in `leave_out` hold nothing in it (re-planning adds their plans back itself).
    """
    reservations = []
    for j in job_store.active_jobs(s):
        r = held(j, now) if j.id not in leave_out else None
        if r is not None:
            reservations.append(r)
    real = plane.clock.real()
    rows = {r.id: r for r in list_centers(s)}
    online = {c.id: plane.is_online(rows.get(c.id), real) for c in plane.network.centers}
    reported: dict[tuple[str, str], int] = {}
    for cid, row in rows.items():
        if online.get(cid):
            for pool in row.capacity or []:
                free = int(pool["free"])
                if pool.get("largest_free") is not None:
                    # A region (docs/federation.md): its free chips are spread over its
                    # centers; what one job can get now is the most in one of them.
                    free = min(free, int(pool["largest_free"]))
                reported[(cid, str(pool["chip"]))] = free
    return build_snapshot(
        plane.network,
        now,
        reservations=reservations,
        datasets=datasets_as_model(s),
        online=online,
        reported_free=reported,
        patience_h=plane.settings.patience_h,
        # Regions' own prices for pending jobs (server/quotes.py), fresh ones only.
        quotes=quotes.snapshot_quotes(plane, real),
        vouchers=live_vouchers(s, now),
    )


def tenant_datasets(s: Session, snap: Snapshot) -> dict[str, dict[str, Dataset]]:
    """The snapshot's datasets grouped by owning tenant (a job sees only its tenant's)."""
    owner = dataset_owners(s)
    out: dict[str, dict[str, Dataset]] = defaultdict(dict)
    for did, d in snap.datasets.items():
        out[owner.get(did, "")][did] = d
    return out


def request_of(
    plane: ControlPlane,
    job: JobRow | job_store.PendingHead,
    spec: JobSpec,
    datasets: Mapping[str, Dataset],
) -> JobRequest:
    """The scheduler's view of a stored job (its deadline may have passed since submit).

    A preempted job asks for the work it has left plus restoring its checkpoint, at
    the center where that is (`preemption.resumed`, the rule the simulator uses too).
    """
    req = job_request(
        job.id,
        spec,
        plane.network,
        job.submitted_at,
        datasets,
        avoid_centers=tuple(job.avoid_centers or ()),
        check_deadline=False,
    )
    req = replace(req, tenant=job.tenant_id)
    if job.work_left is not None and job.resume_center and job.resume_chip:
        index = network_index(plane.network)
        stopped = job.stopped_at or job.submitted_at
        req = resumed(index, req, job.work_left, job.resume_center, job.resume_chip, stopped)
    return req


def _snapshot_key(snap: Snapshot) -> tuple[object, ...]:
    """What a job's decision depends on besides the job, apart from the clock within the hour."""
    return (
        snap.free.tobytes(),
        snap.online.tobytes(),
        tuple(sorted((d.id, d.replicas) for d in snap.datasets.values())),
        snap.hour0,
        # A voucher issued or spent may let a job fit its budget (scheduler/subsidy.py).
        tuple((t, tuple((v.id, v.used_cny) for v in vs)) for t, vs in snap.vouchers.items()),
    )


def _quota_key(uses: Mapping[str, TenantUse]) -> object:
    """What the quota filter reads (not the fair-share usage, which decays every cycle and
    only orders jobs: it matters when something can be placed, which a changed snapshot says)."""
    return repr(
        sorted(
            (t, u.quotas, sorted(u.chips.items()), sorted(u.cu_hours.items()), u.cny)
            for t, u in uses.items()
            if u.quotas
        )
    )


def _hashable(v: object) -> object:
    if isinstance(v, tuple | list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, BaseModel):
        return repr(v)
    return v


def run_cycle(plane: ControlPlane) -> tuple[int, int]:
    """Place what can be placed; returns (jobs scheduled, jobs still pending).

    The scheduler places jobs greedily, and a job it leaves unplaced holds
    nothing; so while the snapshot's inputs (capacity calendar, online
    centers, replicas, the tariff hour) stay what they were in a cycle that
    placed nothing, the jobs that cycle left PENDING would be left PENDING
    again. Such a cycle only decides the jobs that arrived (or came back
    with new centers to avoid) since; with none, it is skipped. A full pass
    over every pending job still runs whenever the inputs change, after a
    cycle that placed something, and at least every `FULL_PASS_S` real
    seconds, which also refreshes the reasons of jobs left waiting.

    Every cycle reads the pending set (ids only); heads and specs are read
    only for the jobs to decide, and decisions are written in one short
    write transaction only when something changed.
    """
    now = plane.clock.now()
    real = plane.clock.real()
    memory = plane.cycle
    if replan_scheduled(plane, now) or reclaim_for_fair_share(plane, now):
        # Plans moved: the calendar changed, so the pending jobs are looked at afresh.
        memory.calendar_changed()
    with plane.db.read() as s:
        keys = job_store.pending_keys(s)
        if not keys:
            memory.requests.clear()
            memory.unplaced.clear()
            return 0, 0
        snap = snapshot(plane, s, now)
        # Tenancy: quotas and fair-share usage (fair share only matters with two tenants).
        fair = several_pending_tenants(s)
        uses = tenant_uses(
            s, now, fair_share=fair, charged=_charged(memory, s, now) if fair else None
        )
        if uses:
            snap = replace(snap, tenants=uses)
        key = (_snapshot_key(snap), _quota_key(uses))
        full = key != memory.last_key or real - memory.last_full >= FULL_PASS_S
        if full:
            todo = job_store.pending_heads(s)
        else:
            fresh = [jid for jid, avoid in keys if (jid, avoid) not in memory.unplaced]
            if not fresh:
                return 0, len(keys)
            todo = job_store.pending_heads(s, fresh)
        by_tenant = tenant_datasets(s, snap)
        # A request depends on its tenant's datasets: one fingerprint per tenant and cycle.
        data_fp = {t: _hashable(tuple(sorted(ds.items()))) for t, ds in by_tenant.items()}
        validity = {
            h.id: (h.submitted_at, h.avoid_centers, data_fp.get(h.tenant_id), h.stopped_at)
            for h in todo
        }
        cache = memory.requests
        stale = [jid for jid, v in validity.items() if jid not in cache or cache[jid][0] != v]
        raw_specs = job_store.spec_texts(s, stale)
        # Under a profile that preempts (server/preempting.py), what it works from, read
        # with this snapshot: the online centers it found, in this one transaction.
        preempts = PROFILES[plane.settings.profile].preempt
        seen = preempting.read(s, snap) if preempts else None
    live = dict(keys)
    for jid in [k for k in memory.requests if k not in live]:
        del memory.requests[jid]
    requests: list[JobRequest] = []
    signatures: list[Hashable] = []
    stuck: dict[str, list[str]] = {}
    plane.quotes.forget(live)
    awaiting: set[str] = set()  # jobs held this cycle for regions' quotes (server/quotes.py)
    for head in todo:
        try:
            req, sig = _request(plane, head, validity[head.id], raw_specs, by_tenant)
        except Exception as exc:
            # A stored job that no longer reads or resolves (an old database, a bug)
            # stays PENDING with the reason; the cycle goes on for every other job.
            log.warning("job %s cannot be scheduled: %r", head.id, exc)
            stuck[head.id] = [f"{REJECTED}: {_one_line(exc)}"]
            continue
        waiting = quotes.awaiting(plane, req, snap, real)
        if waiting is not None:
            stuck[head.id] = [waiting]
            awaiting.add(head.id)
            continue
        requests.append(req)
        # A job a region quoted has prices of its own: no look-alike shares its answer.
        signatures.append(sig if req.id not in snap.quotes else (sig, req.id))

    if seen is not None:
        # Stop long preemptible jobs for much shorter waiting ones; a job whose chips
        # are being freed so waits for them.
        requests, signatures, held = preempting.before_placing(
            plane, now, snap, requests, signatures, seen
        )
        stuck.update(held)

    def decide(sn: Snapshot, reqs: Sequence[JobRequest]) -> list[Decision]:
        return schedule_cycle(
            sn,
            reqs,
            plane.settings.profile,
            strategy=plane.settings.strategy,
            signatures=signatures,
        )

    # Fair share among the tenants with pending jobs (scheduler/fairshare.py); with
    # one tenant this is the configured cycle unchanged.
    requests, decisions = fair_cycle(snap, requests, decide, plane.settings.profile, signatures)
    if any(u.quotas for u in uses.values()):
        decisions = _within_quotas(snap, requests, decisions)
    placed_decisions = [d for d in decisions if d.placement is not None]
    old_reasons = {h.id: h.reasons for h in todo}
    for d in decisions:
        if d.placement is None and old_reasons.get(d.job_id) != d.reasons:
            stuck[d.job_id] = list(d.reasons)
    for jid in list(stuck):
        if old_reasons.get(jid) == tuple(stuck[jid]):
            del stuck[jid]
    placed = 0
    if placed_decisions or stuck:
        with plane.db.write() as s:
            plane.fence(s)  # a deposed leader writes nothing (server.leader)
            rows = job_store.get_jobs(s, [d.job_id for d in placed_decisions], for_update=True)
            for d in placed_decisions:
                row = rows.get(d.job_id)
                # The job may have been cancelled while the scheduler was thinking.
                if row is None or row.state != JobState.PENDING.value or row.cancel_requested:
                    continue
                assert d.placement is not None
                _schedule(s, row, d.placement, d.reasons, now)
                placed += 1
            job_store.set_pending_reasons(s, stuck)
    if placed:
        # New reservations change the calendar: the next cycle looks at every job again.
        memory.calendar_changed()
    else:
        memory.last_key = key
        decided = {(h.id, live[h.id]) for h in todo if h.id in live}
        if full:
            memory.unplaced = decided
        else:
            memory.unplaced = {k for k in memory.unplaced if live.get(k[0]) == k[1]} | decided
    if awaiting:
        # Held for quotes: decided again next cycle (with the quotes come in meanwhile),
        # as jobs just arrived are, without a full pass over the backlog.
        memory.unplaced = {k for k in memory.unplaced if k[0] not in awaiting}
    if full:
        memory.last_full = real
    if placed:
        log.info(
            "cycle at %s (epoch %s): scheduled %d of %d pending",
            now.isoformat(),
            plane.term_epoch,
            placed,
            len(keys),
        )
    return placed, len(keys) - placed


def reclaim_for_fair_share(plane: ControlPlane, now: datetime) -> int:
    """Give back plans made ahead while one tenant was alone, once another tenant waits.

    A tenant alone gets plans hours ahead (SCHEDULED, chips reserved). When
    another tenant's job is pending, those plans (not yet leased by an agent,
    starting later than `FAIR_START_WINDOW`) go back to PENDING, so that the
    cycle deals the chips again in fair-share order (`scheduler/fairshare.py`).
    Nothing running or leased is touched. Returns the number of jobs given back.
    """
    after = now + FAIR_START_WINDOW
    with plane.db.read() as s:
        if not reclaimable(s, after):
            return 0
        ids = [j.id for j in job_store.scheduled_ahead(s, after, RECLAIM_BATCH)]
    if not ids:
        return 0
    n = 0
    with plane.db.write() as s:
        plane.fence(s)  # a deposed leader writes nothing (server.leader)
        for row in job_store.get_jobs(s, ids, for_update=True).values():
            ahead = row.planned_start is not None and row.planned_start > after
            if row.state != JobState.SCHEDULED.value or row.lease_center or not ahead:
                continue
            center = row.center
            unplace(row)
            row.reasons = [RECLAIMED]
            job_store.transition(s, row, JobState.PENDING, now, RECLAIMED, center=center)
            n += 1
    if n:
        log.info("fair share: %d plan(s) made ahead given back to be dealt again", n)
    return n


def _charged(memory: CycleMemory, s: Session, now: datetime) -> dict[str, float]:
    """Finished jobs' decayed CU·h per tenant: read again only when the charges changed
    (one aggregate query a cycle otherwise), else the last reading decayed to `now`."""
    key = charges_fingerprint(s, now)
    hit = memory.charged
    if hit is None or hit[0] != key:
        memory.charged = (key, now, charged_usage(s, now))
        return memory.charged[2]
    elapsed = (now - hit[1]).total_seconds()
    return {t: decay(u, elapsed) for t, u in hit[2].items()}


def _within_quotas(
    snap: Snapshot, requests: list[JobRequest], decisions: list[Decision]
) -> list[Decision]:
    """The cycle's decisions with the placements that together pass a quota undone.

    The quota filter judged each job against its tenant's use as the cycle
    began; `tenancy.admit` counts the cycle's placements in order, and a job
    it refuses waits with the quota's reason (its chips free next cycle).
    """
    order = sorted(range(len(requests)), key=lambda k: order_key(requests[k], snap.now))
    placed: list[int] = []
    lots: list[tuple[str, float, Placement]] = []
    for k in order:
        p = decisions[k].placement
        if p is not None:
            placed.append(k)
            lots.append((requests[k].tenant, requests[k].cu_hours, p))
    verdicts = admit(snap.tenants, lots)
    out = list(decisions)
    for k, why in zip(placed, verdicts, strict=True):
        if why is not None:
            out[k] = Decision(requests[k].id, None, (why,))
    return out


def replan_scheduled(plane: ControlPlane, now: datetime) -> int:
    """Move SCHEDULED, unleased jobs to earlier or cheaper plans; returns how many moved.

    Chips freed early (a job that ended, failed or was cancelled before its
    planned finish) may let a job planned after them start sooner. The rule
    and its hysteresis are `computenet.scheduler.replan`'s. Only jobs due at
    least `MIN_EARLIER` from now are looked at, at most `REPLAN_BATCH` a
    cycle, and only when something that could open a better plan happened
    since the last look: a job event (every placement, lease, end and re-plan
    writes one), a center going on- or offline or reporting other free chips,
    or the network hour turning. The write is a compare-and-set per job: a
    job leased (or cancelled) meanwhile keeps its lease and is not moved.
    """
    real = plane.clock.real()
    with plane.db.read() as s:
        key = (
            job_store.last_event_id(s),
            now.astimezone(CST).replace(minute=0, second=0, microsecond=0),
            tuple(
                (c.id, plane.is_online(c, real), repr(c.capacity))
                for c in sorted(list_centers(s), key=lambda c: c.id)
            ),
        )
        if key == plane.cycle.replan_key:
            return 0
        plane.cycle.replan_key = key
        rows = job_store.scheduled_ahead(s, now + MIN_EARLIER, REPLAN_BATCH)
        if not rows:
            return 0
        snap = snapshot(plane, s, now, leave_out=frozenset(r.id for r in rows))
        by_tenant = tenant_datasets(s, snap)
        planned: list[Planned] = []
        for r in rows:
            res = held(r, now)
            if res is None or r.estimated_cny is None:
                continue
            try:
                spec = JobSpec.model_validate(r.spec)
                req = request_of(plane, r, spec, by_tenant.get(r.tenant_id, {}))
            except Exception as exc:  # a plan that no longer reads stays as it is
                log.warning("job %s cannot be re-planned: %r", r.id, exc)
                continue
            planned.append(Planned(req, res, r.estimated_cny))
        old = {r.id: (r.center or "", r.planned_start) for r in rows}
    moves = replan(snap, planned, plane.settings.profile)
    if not moves:
        return 0
    moved = 0
    with plane.db.write() as s:
        plane.fence(s)  # a deposed leader moves nothing (server.leader)
        for m in moves:
            p = m.placement
            center, start = old[m.job_id]
            if start is None:
                continue
            values = {
                "placement": p.model_dump(mode="json"),
                "reasons": list(m.reasons),
                "center": p.center,
                "chip": p.chip,
                "chips": p.count,
                "planned_start": p.planned_start,
                "planned_finish": p.finish,
                "estimated_cny": p.total_cny,
            }
            where = f" at {p.center}" if p.center != center else ""
            msg = f"{m.reasons[0]}{where}"
            if job_store.replan(s, m.job_id, center, start, values, now, msg):
                moved += 1
    if moved:
        plane.cycle.replan_key = None
        log.info("re-planned %d scheduled job(s) to earlier or cheaper starts", moved)
    return moved


def _one_line(exc: Exception) -> str:
    """An error as one short line (pydantic's are several; ours name the field)."""
    if isinstance(exc, ValidationError):
        return exc.one_line()
    if isinstance(exc, PydanticValidationError):
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        return f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg"))
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]


def _request(
    plane: ControlPlane,
    head: job_store.PendingHead,
    valid: object,
    raw_specs: Mapping[str, str | dict[str, object]],
    by_tenant: Mapping[str, Mapping[str, Dataset]],
) -> tuple[JobRequest, Hashable]:
    """The job's request and its signature, cached while `valid` holds.

    `valid` is what the request was built from besides the spec (which never
    changes): submit time, centers to avoid, the tenant's datasets.

    Only the request is kept between cycles, not the parsed spec: a pending
    backlog can be large, and every object kept is one more for each full
    garbage collection to walk.
    """
    hit = plane.cycle.requests.get(head.id)
    if hit is not None and hit[0] == valid:
        return hit[1], hit[2]
    raw = raw_specs[head.id]
    # JSON text (SQLite) is parsed and validated in one step; other drivers give dicts.
    spec = JobSpec.model_validate_json(raw) if isinstance(raw, str) else JobSpec.model_validate(raw)
    req = request_of(plane, head, spec, by_tenant.get(head.tenant_id, {}))
    sig = signature(req)
    plane.cycle.requests[head.id] = (valid, req, sig)
    return req, sig


def _schedule(
    s: Session, row: JobRow, p: Placement, reasons: tuple[str, ...], now: datetime
) -> None:
    row.placement = p.model_dump(mode="json")
    row.reasons = list(reasons)
    row.center = p.center
    row.chip = p.chip
    row.chips = p.count
    row.planned_start = p.planned_start
    row.planned_finish = p.finish
    row.estimated_cny = p.total_cny
    start = p.planned_start.strftime("%Y-%m-%d %H:%M")
    job_store.transition(
        s,
        row,
        JobState.SCHEDULED,
        now,
        f"scheduled at {p.center}: {p.count}× {p.chip}, start {start}, est. ¥{p.total_cny}",
        center=p.center,
    )
