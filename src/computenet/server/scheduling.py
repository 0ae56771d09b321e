"""The scheduling cycle: snapshot the network, call the (pure) scheduler, persist its decisions."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from computenet.errors import ValidationError
from computenet.model import Dataset, JobSpec, JobState, Placement
from computenet.scheduler import (
    JobRequest,
    Reservation,
    Snapshot,
    build_snapshot,
    job_request,
    schedule_cycle,
)
from computenet.store import jobs as job_store
from computenet.store.centers import dataset_owners, datasets_as_model, list_centers
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)

# Even when nothing changed, re-run the scheduler this often (real seconds).
FULL_PASS_S = 30.0
# A running job's chips stay reserved at least this far ahead, even past its estimate.
MIN_HOLD = timedelta(minutes=1)


def snapshot(plane: ControlPlane, s: Session, now: datetime) -> Snapshot:
    """The cycle's immutable input: reservations, online centers, reported free chips, datasets."""
    reservations = []
    for j in job_store.active_jobs(s):
        if j.center and j.chip and j.planned_start is not None:
            end = max(j.planned_finish or now, now + MIN_HOLD)
            reservations.append(Reservation(j.center, j.chip, j.chips, j.planned_start, end))
    real = plane.clock.real()
    rows = {r.id: r for r in list_centers(s)}
    online = {c.id: plane.is_online(rows.get(c.id), real) for c in plane.network.centers}
    reported: dict[tuple[str, str], int] = {}
    for cid, row in rows.items():
        if online.get(cid):
            for pool in row.capacity or []:
                reported[(cid, str(pool["chip"]))] = int(pool["free"])
    return build_snapshot(
        plane.network,
        now,
        reservations=reservations,
        datasets=datasets_as_model(s),
        online=online,
        reported_free=reported,
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
    """The scheduler's view of a stored job (its deadline may have passed since submit)."""
    return job_request(
        job.id,
        spec,
        plane.network,
        job.submitted_at,
        datasets,
        avoid_centers=tuple(job.avoid_centers or ()),
        check_deadline=False,
    )


def _fingerprint(snap: Snapshot, heads: list[job_store.PendingHead]) -> tuple[object, ...]:
    """What a cycle's outcome depends on, apart from the clock moving within the hour."""
    return (
        tuple((h.id, h.avoid_centers) for h in heads),
        snap.free.tobytes(),
        snap.online.tobytes(),
        tuple(sorted((d.id, d.replicas) for d in snap.datasets.values())),
        snap.hour0,
    )


def run_cycle(plane: ControlPlane) -> tuple[int, int]:
    """Place what can be placed; returns (jobs scheduled, jobs still pending).

    A cycle whose inputs (pending jobs, capacity, online centers, replicas,
    the tariff hour) are unchanged since the last one would decide the same,
    so it is skipped, except for a full pass every `FULL_PASS_S` real seconds.
    """
    now = plane.clock.now()
    real = plane.clock.real()
    cache = plane.spec_cache
    with plane.db.read() as s:
        heads = job_store.pending_heads(s)
        if not heads:
            cache.clear()
            return 0, 0
        snap = snapshot(plane, s, now)
        key = _fingerprint(snap, heads)
        if key == plane.last_cycle_key and real - plane.last_full_cycle < FULL_PASS_S:
            return 0, len(heads)
        missing = [h.id for h in heads if h.id not in cache]
        raw_specs = job_store.specs_of(s, missing)
        by_tenant = tenant_datasets(s, snap)
    live = {h.id for h in heads}
    for jid in [k for k in cache if k not in live]:
        del cache[jid]
    requests: list[JobRequest] = []
    stuck: dict[str, list[str]] = {}
    for head in heads:
        try:
            spec = cache.get(head.id)
            if spec is None:
                spec = cache[head.id] = JobSpec.model_validate(raw_specs[head.id])
            requests.append(request_of(plane, head, spec, by_tenant.get(head.tenant_id, {})))
        except (ValidationError, ValueError, KeyError) as exc:
            text = exc.one_line() if isinstance(exc, ValidationError) else str(exc)
            stuck[head.id] = [f"cannot be scheduled: {text}"]
    decisions = schedule_cycle(snap, requests, plane.settings.profile)
    placed_decisions = [d for d in decisions if d.placement is not None]
    old_reasons = {h.id: h.reasons for h in heads}
    for d in decisions:
        if d.placement is None and old_reasons.get(d.job_id) != d.reasons:
            stuck[d.job_id] = list(d.reasons)
    for jid in list(stuck):
        if old_reasons.get(jid) == tuple(stuck[jid]):
            del stuck[jid]
    placed = 0
    with plane.db.write() as s:
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
    plane.last_cycle_key = None if placed else key
    plane.last_full_cycle = real
    if placed:
        log.info("cycle at %s: scheduled %d of %d pending", now.isoformat(), placed, len(heads))
    return placed, len(heads) - placed


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
