"""Datasets a tenant registers (already present at a center), and the network views.

A dataset's file lives in its tenant's area of the center's data root
(``tenants/<tenant>/``, `computenet.protocol.datapaths`): a tenant can only
register a path there, so it can never name another tenant's file, and the
agent checks the file's sha256 before any job reads it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from computenet.errors import ConflictError, ValidationError
from computenet.model.identifiers import network_prefix
from computenet.protocol import CenterView, DatasetCreate, DatasetView
from computenet.protocol.datapaths import (
    default_replica_path,
    name_problem,
    replica_path_problem,
    tenant_area,
)
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
    """Register a dataset with its first replica at `req.center`, in the tenant's area."""
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
    problem = name_problem(req.id)
    if problem is not None:
        raise ValidationError(f"dataset id '{req.id}' {problem}", field="id", hint="e.g. corpus-v1")
    path = req.path or default_replica_path(tenant, req.id)
    problem = replica_path_problem(path, tenant)
    if problem is not None:
        raise ValidationError(
            f"path '{path}' {problem}",
            field="path",
            hint=f"put the file under {tenant_area(tenant)}/ in the agent's data root"
            " (cnet datasets add does), or leave path out for"
            f" {default_replica_path(tenant, req.id)}",
        )
    path = str(PurePosixPath(path))
    with plane.db.write() as s:
        taken = get_dataset(s, req.id)
        if taken is not None:
            # Ids are unique across the network; whose it is stays unsaid.
            mine = taken.tenant_id == tenant
            raise ConflictError(
                "you already registered a dataset with this id" if mine else "this id is taken",
                field="id",
                hint="choose another id",
            )
        row = create_dataset(
            s,
            dataset_id=req.id,
            tenant=tenant,
            size_bytes=req.size_bytes,
            sha256=req.sha256,
            residency=req.residency,
            center=req.center,
            path=path,
            at=datetime.now(UTC),
        )
        return dataset_view(
            row, replicas(s, [row.id]).get(row.id, []), network_prefix(plane.network)
        )


def datasets(plane: ControlPlane, who: Principal) -> list[DatasetView]:
    """The caller's datasets (all for admins)."""
    tenant = None if who.is_admin else tenant_of(who)
    with plane.db.read() as s:
        rows = list_datasets(s, tenant)
        reps = replicas(s, [r.id for r in rows])
        prefix = network_prefix(plane.network)
        return [dataset_view(r, reps.get(r.id, []), prefix) for r in rows]


def centers(plane: ControlPlane) -> list[CenterView]:
    """Every center in the network with its live state."""
    now = plane.clock.now()
    real = plane.clock.real()
    prefix = network_prefix(plane.network)
    with plane.db.read() as s:
        rows = {r.id: r for r in list_centers(s)}
        counts = job_store.counts_by_center(s)
    views = [
        center_view(
            c,
            rows.get(c.id),
            plane.is_online(rows.get(c.id), real),
            now,
            counts.get(c.id, {}),
            prefix,
        )
        for c in plane.network.centers
    ]
    return [_with_members(plane, v) for v in views]


def _with_members(plane: ControlPlane, view: CenterView) -> CenterView:
    """A region's view with its member centers as its agent last listed them (server.members)."""
    members = plane.members.of(view.id)
    return view if members is None else view.model_copy(update={"members": members})


def transfers(plane: ControlPlane, who: Principal | None = None) -> list[dict[str, Any]]:
    """Data moving now: one entry per input of each STAGING job, with its rate in Gbps.

    The rate is the placement's estimate (size on the links over its transfer
    time, both in network units), which is what the agents throttle to. `who`
    sees the job and dataset ids of its own tenant's transfers only (an admin,
    or no `who`, sees all); others' show route and rate with ids None.
    """
    see_all = who is None or who.is_admin
    out: list[dict[str, Any]] = []
    with plane.db.read() as s:
        staging = job_store.list_jobs(s, states=["STAGING"], limit=10_000)
        sizes = {d.id: d.size_bytes for d in list_datasets(s)}
    for j in staging:
        pl = j.placement or {}
        sources = pl.get("source_replicas") or {}
        secs = float(pl.get("transfer_s") or 0.0)
        own = see_all or (who is not None and j.tenant_id == who.tenant)
        for ds, src in sources.items():
            gb = sizes.get(ds, 0) * plane.network.data_scale / 1e9
            out.append(
                {
                    "job_id": j.id if own else None,
                    "dataset": ds if own else None,
                    "from": src,
                    "to": pl.get("center"),
                    "gbps": round(gb * 8 / secs, 3) if secs > 0 else 0.0,
                }
            )
    return out


def network_view(plane: ControlPlane, who: Principal | None = None) -> dict[str, Any]:
    """The network file as the server runs it, with live transfers and the network clock's now.

    Each link carries `traffic_gbps` and `transfers`: the rate and number of the
    transfers whose two ends it joins (every built-in network links each pair directly).
    """
    net = plane.network
    moving = transfers(plane, who)
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
