"""Stored rows → the wire schemas of `computenet.protocol` (network times shown in CST)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from computenet.model import JobState, Placement
from computenet.model.center import CST
from computenet.model.identifiers import (
    center_identifier,
    dataset_identifier,
    job_identifier,
    pool_identifier,
)
from computenet.model.job import stored_spec
from computenet.protocol import CenterView, DatasetView, JobDetail, JobEvent, JobView
from computenet.store.schema import CenterRow, DatasetRow, JobEventRow, JobRow, ReplicaRow


def cst(t: datetime | None) -> datetime | None:
    """`t` shown in China Standard Time (None stays None)."""
    return t.astimezone(CST) if t is not None else None


def job_view(j: JobRow, prefix: str | None = None) -> JobView:
    """A job as listed; with its identifier when the plane's `prefix` is given."""
    return JobView(**_view_fields(j, prefix))


def new_job_view(values: Mapping[str, Any], prefix: str | None = None) -> JobView:
    """The view of a job just inserted from the column `values` (no database read)."""
    deadline = values["deadline"]
    return JobView(
        id=values["id"],
        name=values["name"],
        tenant=values["tenant_id"],
        workload_class=values["workload_class"],
        state=values["state"],
        submitted_at=values["submitted_at"].astimezone(CST),
        deadline=deadline.astimezone(CST) if deadline is not None else None,
        center=values["lease_center"] or values["center"],
        chip=values["chip"],
        chips=values["chips"],
        attempts=values["attempt"],
        estimated_cny=values["estimated_cny"],
        cost_cny=values["cost_cny"],
        exit_code=values["exit_code"],
        reasons=list(values["reasons"]),
        identifier=job_identifier(prefix, values["id"]) if prefix else None,
    )


def _view_fields(j: JobRow, prefix: str | None = None) -> dict[str, Any]:
    return {
        "id": j.id,
        "name": j.name,
        "tenant": j.tenant_id,
        "workload_class": j.workload_class,
        "state": j.state,
        "submitted_at": j.submitted_at.astimezone(CST),
        "deadline": cst(j.deadline),
        "center": j.lease_center or j.center,
        "chip": j.chip,
        "chips": j.chips,
        "attempts": j.attempt,
        "estimated_cny": j.estimated_cny,
        "cost_cny": j.cost_cny,
        "exit_code": j.exit_code,
        "reasons": list(j.reasons or []),
        "identifier": job_identifier(prefix, j.id) if prefix else None,
    }


def job_detail(
    j: JobRow, events: list[JobEventRow], time_scale: float, prefix: str | None = None
) -> JobDetail:
    """A job with spec, placement, times and timeline."""
    wait_s = run_s = transfer_s = None
    if j.started_at is not None:
        wait_s = (j.started_at - j.submitted_at).total_seconds()
        if j.finished_at is not None:
            run_s = (j.finished_at - j.started_at).total_seconds()
        if j.staging_at is not None:
            transfer_s = (j.started_at - j.staging_at).total_seconds()
    usage: dict[str, float | str] = {}
    for k, v in (j.usage or {}).items():
        if isinstance(v, int | float | str) and not isinstance(v, bool):
            usage[k] = v
    if "staging_real_s" in usage and transfer_s is None:
        transfer_s = float(usage["staging_real_s"]) * time_scale
    return JobDetail(
        **_view_fields(j, prefix),
        spec=stored_spec(j.spec),
        placement=Placement.model_validate(j.placement) if j.placement else None,
        started_at=cst(j.started_at),
        finished_at=cst(j.finished_at),
        wait_s=wait_s,
        transfer_s=transfer_s,
        run_s=run_s,
        usage=usage,
        preemptions=int(j.preemptions or 0),
        stopping_for=j.stop_for,
        work_left=j.work_left,
        events=[
            JobEvent(
                at=cst(e.at) or e.at,
                state=JobState(e.state) if e.state else None,
                message=e.message,
                center=e.center,
            )
            for e in events
        ],
    )


def dataset_view(d: DatasetRow, reps: list[ReplicaRow], prefix: str | None = None) -> DatasetView:
    """A dataset with its replicas (and their identifiers when `prefix` is given)."""
    return DatasetView(
        id=d.id,
        tenant=d.tenant_id,
        size_bytes=d.size_bytes,
        sha256=d.sha256,
        residency=d.residency,
        replicas=[{"center": r.center, "path": r.path} for r in reps],
        identifiers=[dataset_identifier(prefix, r.center, d.id) for r in reps] if prefix else [],
    )


def pools_of(
    row: CenterRow | None, fallback: list[dict[str, int | str]]
) -> list[dict[str, int | str]]:
    """Pools as last reported by the agent, else the network file's (free unknown → total)."""
    if row is not None and row.capacity:
        pools: list[dict[str, int | str]] = []
        for p in row.capacity:
            pool: dict[str, int | str] = {
                "chip": str(p["chip"]),
                "total": int(p["total"]),
                "free": int(p["free"]),
            }
            if p.get("largest_free") is not None:  # a region: its largest job shape now
                pool["largest_free"] = int(p["largest_free"])
            for key in ("used", "queued"):  # a region: its chips busy and jobs waiting inside
                if p.get(key) is not None:
                    pool[key] = int(p[key])
            if p.get("quote_cny_per_cuh") is not None:  # a region: its own rate card
                pool["quote_cny_per_cuh"] = str(p["quote_cny_per_cuh"])
            pools.append(pool)
        return pools
    return fallback


def center_view(
    center: Any,
    row: CenterRow | None,
    online: bool,
    now: datetime,
    counts: dict[str, int],
    prefix: str | None = None,
) -> CenterView:
    """A center as the network sees it now (`center` is the model's `Center`); with the
    center's and each pool's identifier when the plane's `prefix` is given."""
    fallback: list[dict[str, int | str]] = [
        {"chip": p.chip, "total": p.count, "free": p.count if online else 0} for p in center.pools
    ]
    pools = pools_of(row, fallback)
    if prefix:
        pools = [
            {**p, "identifier": pool_identifier(prefix, center.id, str(p["chip"]))} for p in pools
        ]
    last = None
    if row is not None and row.last_heartbeat is not None:
        last = datetime.fromtimestamp(row.last_heartbeat, CST)
    return CenterView(
        id=center.id,
        name=center.name,
        hub=center.hub,
        region=center.region,
        lat=center.lat,
        lon=center.lon,
        backend=row.backend if row is not None else center.backend,
        online=online,
        last_heartbeat=last,
        pools=pools,
        pue=center.pue,
        tariff_now=center.tariff.price_at(now),
        tariff_hourly=list(center.tariff.hourly),
        carbon_kg_per_kwh=center.carbon_kg_per_kwh,
        service_price_per_cuh=center.service_price_per_cuh,
        queued=counts.get("SCHEDULED", 0),
        running=counts.get("STAGING", 0) + counts.get("RUNNING", 0),
        identifier=center_identifier(prefix, center.id) if prefix else None,
    )
