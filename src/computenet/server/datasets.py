"""Datasets a tenant registers (already present at a center), and the network views."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from computenet.errors import ConflictError, ValidationError
from computenet.protocol import CenterView, DatasetCreate, DatasetView
from computenet.server.auth import Principal
from computenet.server.jobs import tenant_of
from computenet.server.views import center_view, dataset_view
from computenet.store import jobs as job_store
from computenet.store.centers import (
    create_dataset,
    get_dataset,
    list_centers,
    list_datasets,
    replicas,
)

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane


def register_dataset(plane: ControlPlane, who: Principal, req: DatasetCreate) -> DatasetView:
    """Register a dataset with its first replica at `req.center`."""
    tenant = tenant_of(who)
    try:
        center = plane.network.center(req.center)
    except KeyError:
        raise ValidationError(
            f"unknown center '{req.center}'",
            field="center",
            hint="one of " + ", ".join(c.id for c in plane.network.centers),
        ) from None
    if req.residency and req.residency not in center.tags:
        raise ValidationError(
            f"center '{req.center}' is not in '{req.residency}'",
            field="residency",
            hint="register the dataset at a center carrying that tag",
        )
    with plane.db.write() as s:
        if get_dataset(s, req.id) is not None:
            raise ConflictError(
                f"dataset id '{req.id}' is already taken", field="id", hint="choose another id"
            )
        row = create_dataset(
            s,
            dataset_id=req.id,
            tenant=tenant,
            size_bytes=req.size_bytes,
            sha256=req.sha256,
            residency=req.residency,
            center=req.center,
            path=req.path,
            at=datetime.now(UTC),
        )
        return dataset_view(row, replicas(s, [row.id]).get(row.id, []))


def datasets(plane: ControlPlane, who: Principal) -> list[DatasetView]:
    """The caller's datasets (all for admins)."""
    tenant = None if who.is_admin else tenant_of(who)
    with plane.db.read() as s:
        rows = list_datasets(s, tenant)
        reps = replicas(s, [r.id for r in rows])
        return [dataset_view(r, reps.get(r.id, [])) for r in rows]


def centers(plane: ControlPlane) -> list[CenterView]:
    """Every center in the network with its live state."""
    now = plane.clock.now()
    real = plane.clock.real()
    with plane.db.read() as s:
        rows = {r.id: r for r in list_centers(s)}
        counts = job_store.counts_by_center(s)
    return [
        center_view(
            c, rows.get(c.id), plane.is_online(rows.get(c.id), real), now, counts.get(c.id, {})
        )
        for c in plane.network.centers
    ]


def transfers(plane: ControlPlane) -> list[dict[str, Any]]:
    """Data moving now: one entry per input of each STAGING job, with its rate in Gbps.

    The rate is the placement's estimate (size on the links over its transfer
    time, both in network units), which is what the agents throttle to.
    """
    out: list[dict[str, Any]] = []
    with plane.db.read() as s:
        staging = job_store.list_jobs(s, states=["STAGING"], limit=10_000)
        sizes = {d.id: d.size_bytes for d in list_datasets(s)}
    for j in staging:
        pl = j.placement or {}
        sources = pl.get("source_replicas") or {}
        secs = float(pl.get("transfer_s") or 0.0)
        for ds, src in sources.items():
            gb = sizes.get(ds, 0) * plane.network.data_scale / 1e9
            out.append(
                {
                    "job_id": j.id,
                    "dataset": ds,
                    "from": src,
                    "to": pl.get("center"),
                    "gbps": round(gb * 8 / secs, 3) if secs > 0 else 0.0,
                }
            )
    return out


def network_view(plane: ControlPlane) -> dict[str, Any]:
    """The network file as the server runs it, with live transfers and the network clock's now.

    Each link carries `traffic_gbps` and `transfers`: the rate and number of the
    transfers whose two ends it joins (every built-in network links each pair directly).
    """
    net = plane.network
    moving = transfers(plane)
    load: dict[frozenset[str], float] = {}
    count: dict[frozenset[str], int] = {}
    for t in moving:
        key = frozenset((t["from"], t["to"]))
        load[key] = load.get(key, 0.0) + t["gbps"]
        count[key] = count.get(key, 0) + 1
    links = [
        {
            **link.model_dump(mode="json"),
            "traffic_gbps": load.get(frozenset((link.a, link.b)), 0.0),
            "transfers": count.get(frozenset((link.a, link.b)), 0),
        }
        for link in net.links
    ]
    return {
        "name": net.name,
        "time_scale": net.time_scale,
        "data_scale": net.data_scale,
        "centers": [c.model_dump(mode="json") for c in centers(plane)],
        "sites": [s.model_dump(mode="json") for s in net.sites],
        "links": links,
        "transfers": moving,
        "chips": {k: v.model_dump(mode="json") for k, v in net.chips.items()},
        "now": plane.clock.now().isoformat(),
    }
