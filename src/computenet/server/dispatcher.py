"""The dispatcher: lease due jobs to the center they are placed at, with staging instructions.

A lease is a compare-and-set on an empty lease holder, so a job is never
leased to two centers. Fetch tickets (`computenet.protocol.tickets`) are minted
with the SOURCE center's data key, bound to the dataset, the replica's path,
the fetching center and the key's version, and live `Settings.ticket_ttl_s`;
the source agent's data endpoint checks them.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from computenet.errors import ConflictError
from computenet.model import JobSpec, Placement
from computenet.protocol import LeasedJob, LeaseReply, StagingInput, StagingSource
from computenet.protocol.datapaths import default_replica_path
from computenet.protocol.tickets import mint_ticket
from computenet.store import jobs as job_store
from computenet.store.centers import get_center, get_dataset, record_heartbeat, replicas
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)


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
            if r.center == center_id:
                continue
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
            est = lat + ds.size_bytes * plane.network.data_scale * 8 / 1e9 / bw
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
        sources.sort(key=lambda x: (x[0], x[1].center))
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
