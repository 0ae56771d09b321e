"""The dispatcher: lease due jobs to the center they are placed at, with staging instructions.

A lease is a compare-and-set on an empty lease holder, so a job is never
leased to two centers. A lease call may wait for work (``LeaseRequest.wait_s``,
a long poll): `lease_waiting` holds it, without a transaction or a thread,
until `LeaseWaiters` — one database look every `LEASE_POLL_S` for all the calls
waiting on this replica — sees a job due at its center, whichever replica's
cycle placed it. Fetch tickets (`computenet.protocol.tickets`) are minted
with the SOURCE center's data key, bound to the dataset, the replica's path,
the fetching center and the key's version, and live `Settings.ticket_ttl_s`;
the source agent's data endpoint checks them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from computenet.errors import ConflictError
from computenet.model import JobSpec, JobState, Placement
from computenet.protocol import LeasedJob, LeaseReply, StagingInput, StagingSource
from computenet.protocol.center import REGION_PATH_PREFIX
from computenet.protocol.datapaths import default_replica_path
from computenet.protocol.tickets import mint_ticket
from computenet.server.metering import budget_left
from computenet.store import jobs as job_store
from computenet.store.centers import get_center, get_dataset, record_heartbeat, replicas
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)

LEASE_POLL_S = 0.05
"""How often a replica with waiting lease calls looks for due jobs (one query for them all)."""


def lease(plane: ControlPlane, center_id: str, max_jobs: int) -> LeaseReply:
    """Lease up to `max_jobs` SCHEDULED jobs placed at `center_id` whose planned start is due."""
    now = plane.clock.now()
    real = plane.clock.real()
    out: list[LeasedJob] = []
    with plane.db.write() as s:
        center = get_center(s, center_id)
        if center is None:
            raise ConflictError(
                f"center '{center_id}' has not registered",
                field="center_id",
                hint="POST /center/v1/register first",
            )
        # Asking for work is a sign of life, like a heartbeat.
        record_heartbeat(s, center, real, center.capacity, center.running)
        for job_id in job_store.lease_candidates(s, center_id, now, max_jobs):
            if not job_store.try_lease(s, job_id, center_id, real):
                continue
            row = job_store.get_job(s, job_id)
            if row is None:  # pragma: no cover - deleted under our feet
                continue
            s.refresh(row)
            job_store.add_event(
                s, row.id, now, f"leased by {center_id} (attempt {row.attempt})", center=center_id
            )
            out.append(_leased(plane, s, row, center_id, real))
    if out:
        log.info("leased %d job(s) to %s", len(out), center_id)
    return LeaseReply(jobs=out)


async def lease_waiting(
    plane: ControlPlane,
    waiters: LeaseWaiters,
    center_id: str,
    max_jobs: int,
    wait_s: float,
    *,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> LeaseReply:
    """`lease`, held while nothing is due for up to `wait_s` (a long poll; see module doc).

    The hold is cut to half the fence period (``fence_after_s / 2``): an agent
    takes new jobs only while its last acknowledged heartbeat is younger than
    that, so no reply may come later. `gone`, when given, says whether the
    caller hung up: then nothing is leased (a job leased to no one would sit
    until its lease expired).
    """
    reply = await run_in_threadpool(lease, plane, center_id, max_jobs)
    hold = min(wait_s, plane.settings.lease_rule.fence_after_s / 2)
    if reply.jobs or hold <= 0:
        return reply
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hold
    while (left := deadline - loop.time()) > 0:
        if not await waiters.wait(center_id, left):
            break
        if gone is not None and await gone():
            break
        reply = await run_in_threadpool(lease, plane, center_id, max_jobs)
        if reply.jobs:
            return reply
    return reply


class LeaseWaiters:
    """The lease calls waiting on this replica, woken when a job is due at their center.

    While any call waits, one query every `poll_s` asks which of their centers
    have a job due (placed there, unleased, not cancelled, planned start
    passed). It reads the database, not this replica's memory, so a follower's
    calls wake as soon as the leader's cycle commits a placement, and a planned
    start that comes due wakes its center too. A waiting call holds an
    ``asyncio.Event``: no transaction, no thread of the pool. Use from the
    event loop only.
    """

    def __init__(self, plane: ControlPlane, poll_s: float = LEASE_POLL_S) -> None:
        self.plane = plane
        self.poll_s = poll_s
        self._waiting: dict[str, list[asyncio.Event]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._closed = False

    def close(self) -> None:
        """The server is stopping: end every held call now, and hold no more."""
        self._closed = True
        for events in self._waiting.values():
            for event in events:
                event.set()

    @property
    def waiting(self) -> int:
        """How many lease calls wait now."""
        return sum(len(events) for events in self._waiting.values())

    async def wait(self, center_id: str, timeout: float) -> bool:
        """Until a job may be due at `center_id` (True) or `timeout` s have passed (False)."""
        if self._closed:
            return False
        event = asyncio.Event()
        self._waiting.setdefault(center_id, []).append(event)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            events = self._waiting.get(center_id, [])
            if event in events:
                events.remove(event)
            if not events:
                self._waiting.pop(center_id, None)

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self.poll_s)
            centers = list(self._waiting)
            if not centers:
                break
            try:
                due = await run_in_threadpool(due_centers, self.plane, centers)
            except Exception as exc:  # the lease call itself reports a broken database
                log.warning("looking for due jobs failed: %s: %s", type(exc).__name__, exc)
                continue
            for center in due:
                for event in self._waiting.get(center, []):
                    event.set()


def due_centers(plane: ControlPlane, centers: Sequence[str]) -> set[str]:
    """Which of `centers` have a job `lease` would hand out now (one read, no lock)."""
    now = plane.clock.now()
    q = (
        select(JobRow.center)
        .where(
            JobRow.state == JobState.SCHEDULED.value,
            JobRow.center.in_(list(centers)),
            JobRow.lease_center.is_(None),
            JobRow.cancel_requested.is_(False),
            JobRow.planned_start <= now,
        )
        .distinct()
    )
    with plane.db.read() as s:
        return {str(c) for c in s.scalars(q) if c is not None}


def _leased(plane: ControlPlane, s: Session, row: JobRow, center_id: str, real: float) -> LeasedJob:
    spec = JobSpec.model_validate(row.spec)
    placement = Placement.model_validate(row.placement)
    return LeasedJob(
        job_id=row.id,
        attempt=row.attempt,
        tenant=row.tenant_id,
        spec=spec,
        placement=placement,
        inputs=staging_inputs(plane, s, spec, placement, center_id, real),
        planned_run_s=placement.run_s / plane.clock.time_scale,
        # For a region (docs/federation.md): the deadline in real time, the budget left.
        deadline_real=plane.clock.to_real(row.deadline) if row.deadline is not None else None,
        budget_left_cny=budget_left(plane, row, center_id, spec),
    )


def staging_inputs(
    plane: ControlPlane,
    s: Session,
    spec: JobSpec,
    placement: Placement,
    center_id: str,
    real: float,
) -> list[StagingInput]:
    """For each input: the local replica's path, or replicas to fetch from (best first).

    Each source's `url` is the full fetch URL ``{data_url}/data/{dataset_id}?path=P``
    with the replica's registered path; its ticket lets `center_id` (and no
    other center) fetch that path, and goes in the ``X-CNet-Ticket`` header.
    A fetched copy goes to the dataset's tenant's area (`dest_path`).
    """
    reps = replicas(s, spec.inputs)
    expires = int(real + plane.settings.ticket_ttl_s)
    paths = plane.paths
    out: list[StagingInput] = []
    for name in spec.inputs:
        ds = get_dataset(s, name)
        if ds is None:
            continue
        here = [r for r in reps.get(name, []) if r.center == center_id]
        sources: list[tuple[float, StagingSource]] = []
        # Sources are listed even when a replica is here: the agent uses them only
        # if the local file fails its sha256 check.
        preferred = placement.source_replicas.get(name)
        for r in reps.get(name, []):
            if r.center == center_id or r.path.startswith(REGION_PATH_PREFIX):
                continue  # a region's copy is inside the region: nothing to fetch from
            src = get_center(s, r.center)
            if src is None or not src.data_url or not plane.is_online(src, real):
                continue
            if r.center not in paths.nodes or center_id not in paths.nodes:
                continue
            i, j = paths.index(r.center), paths.index(center_id)
            bw = float(paths.bandwidth_gbps[i, j])
            lat = float(paths.latency_s[i, j])
            if bw <= 0 or not math.isfinite(lat):
                continue
            est = paths.transfer_s(
                r.center, center_id, ds.size_bytes * plane.network.data_scale / 1e9
            )
            rank = -1.0 if r.center == preferred else est
            sources.append(
                (
                    rank,
                    StagingSource(
                        center=r.center,
                        url=f"{src.data_url.rstrip('/')}/data/{name}?"
                        + urlencode({"path": r.path}),
                        ticket=mint_ticket(
                            src.data_key,
                            dataset=name,
                            path=r.path,
                            center=center_id,
                            expires_unix=expires,
                            key_version=src.data_key_version,
                        ),
                        bandwidth_gbps=bw if math.isfinite(bw) else 1e6,
                        latency_ms=lat * 1000.0,
                    ),
                )
            )
        # Latency breaks ties: an empty dataset costs every source 0 s to move.
        sources.sort(key=lambda x: (x[0], x[1].latency_ms, x[1].center))
        out.append(
            StagingInput(
                dataset=name,
                sha256=ds.sha256,
                size_bytes=ds.size_bytes,
                local_path=here[0].path if here else None,
                sources=[x[1] for x in sources],
                dest_path=default_replica_path(ds.tenant_id, name),
            )
        )
    return out
