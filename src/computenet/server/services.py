"""Inference services at the control plane: deploy, scale, delete, and keep replicas alive.

A replica is an ordinary job (`ServiceSpec.replica_job`) submitted through the
same path as a user's (`server.jobs.submit`: admission, validation, the
scheduler, an agent and its backend), so billing meters it per replica-hour
like any run. `keep` runs in its own thread (`Keeper`) every `KEEP_EVERY_S`:
replicas whose job ended are retired, and a service below its `wanted` count
gets new replica jobs (a restart when one died, at once the first time, then
after a delay doubling up to a minute while replicas keep failing before any
answers its probe); above it, the newest are cancelled. Only the leader keeps
(several servers on one database).

Where the gateways' load reports name their sites, each new replica is pinned
at the center `scheduler.serving.choose` picks (the cheapest within the
latency objective of the demand it serves; the reason goes in the job's
timeline), a replica clearly better elsewhere is moved make-before-break
(`serving.misplaced`, held `move_hold_s`, one move per service per hold), and a
pinned replica waiting for an offline center is replaced. The hourly budget
caps the replicas (`serving.budget_keep`; `replicas.min` wins, noted). A
service at zero with requests held at a gateway starts one at once
(`autoscale`). docs/services.md, "Placement" and "The hourly budget".
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select

from computenet.errors import ConflictError, NotFoundError, ValidationError
from computenet.gateway.scoring import rtt_ms
from computenet.metering.cost import fen
from computenet.model import TERMINAL_STATES, JobState
from computenet.model.service import (
    Autoscale,
    Lookback,
    ServiceSpec,
    move_hold_s,
    replicas_for,
)
from computenet.protocol.api import SubmitRequest
from computenet.protocol.service_stats import merge, percentile
from computenet.protocol.services import ReplicaView, ServiceView
from computenet.scheduler import serving
from computenet.server import jobs, service_stats
from computenet.server.auth import Principal
from computenet.store import jobs as job_store
from computenet.store import services as store
from computenet.store.centers import get_center, list_centers
from computenet.store.schema import JobEventRow, JobRow, ServiceReplicaRow, ServiceRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from computenet.server.plane import ControlPlane

log = logging.getLogger(__name__)

KEEP_EVERY_S = 0.5
"""Real seconds between two passes of the keeper: how soon a dead replica is replaced."""

_lock = threading.Lock()  # one pass at a time in this server (the keeper, or a deploy/scale)
# Per service: replicas that failed since one was last ready, and the real time before
# which none is restarted. A command that cannot start is not re-run in a tight loop.
_crashes: dict[tuple[str, str], tuple[int, float]] = {}
# Per service: the summed demand readings of the last `autoscale.lookback_s` (`autoscale`).
_demand: dict[tuple[str, str], Lookback] = {}

MAX_RESTART_DELAY_S = 60.0
"""The longest wait before restarting a service whose replicas keep failing."""


def restart_delay_s(fails: int) -> float:
    """Real seconds before the next restart after `fails` failures in a row: 0, 1, 2, 4 ... 60."""
    return 0.0 if fails <= 1 else min(MAX_RESTART_DELAY_S, 2.0 ** (fails - 2))


def _centers_for(plane: ControlPlane, spec: ServiceSpec) -> list[str]:
    """Centers the residency allows (empty: anywhere); 422 naming an unknown one."""
    allowed: list[str] = []
    for i, name in enumerate(spec.residency):
        hits = [c.id for c in plane.network.centers if name in (c.id, c.region)]
        if not hits:
            raise ValidationError(
                f"'{name}' is neither a center nor a region of this network",
                field=f"residency.{i}",
                hint="cnet centers lists them",
            )
        allowed += [h for h in hits if h not in allowed]
    return allowed


PLACED = "placement: "
"""How the keeper's placement events begin in a replica job's timeline (`cnet job ID`)."""


def _placement_reasons(s: Session, job_ids: list[str]) -> dict[str, str]:
    """Each job's placement reason (its first placement event), for the ones that have one."""
    if not job_ids:
        return {}
    q = (
        select(JobEventRow.job_id, JobEventRow.message)
        .where(JobEventRow.job_id.in_(job_ids), JobEventRow.message.startswith(PLACED))
        .order_by(JobEventRow.id)
    )
    out: dict[str, str] = {}
    for job_id, message in s.execute(q):
        out.setdefault(job_id, message.removeprefix(PLACED))
    return out


def _cost_of(
    plane: ControlPlane,
    costs: dict[str, tuple[Decimal, frozenset[str]]],
    job: JobRow | None,
    center: str | None,
) -> Decimal | None:
    """One replica's ¥ for the coming hour at `center`: on the chips its job was placed
    on when known (as `service_stats.replica_cost` and the bill price it), else on the
    center's cheapest chip for the service; None for a center it cannot run at."""
    net = plane.network
    if job is not None and job.chip in net.chips and job.center == center and center in costs:
        return serving.replica_cost_cny_per_hour(
            net, net.center(center), net.chips[job.chip], job.chips, plane.clock.now()
        )
    return costs[center][0] if center in costs else None


def _view(plane: ControlPlane, s: Session, row: ServiceRow) -> ServiceView:
    spec = ServiceSpec.model_validate(row.spec)
    costs = center_costs(plane, spec, plane.clock.now())
    rows = store.replicas(s, row.tenant_id, row.name, live_only=True)
    why = _placement_reasons(s, [r.job_id for r in rows])
    views = []
    total = Decimal(0)
    for r in rows:
        job = s.get(JobRow, r.job_id)
        state = JobState(job.state) if job is not None else JobState.CANCELLED
        center = (job.lease_center or job.center) if job is not None else r.center
        ready = state == JobState.RUNNING and r.endpoint is not None
        cost = _cost_of(plane, costs, job, center) if state not in TERMINAL_STATES else None
        total += cost or 0
        views.append(
            ReplicaView(
                job_id=r.job_id,
                slot=r.slot,
                state=state,
                center=center,
                endpoint=r.endpoint if ready else None,
                ready=ready,
                chip=job.chip if job is not None else None,
                cost_cny_per_hour=cost,
                why=why.get(r.job_id),
            )
        )
    return ServiceView(
        name=row.name,
        tenant=row.tenant_id,
        spec=spec,
        wanted=row.wanted,
        ready=sum(v.ready for v in views),
        created_at=row.created_at,
        replicas=views,
        cost_cny_per_hour=fen(total),
        notes=list(_notes.get((row.tenant_id, row.name), ())),
    )


def deploy(plane: ControlPlane, who: Principal, spec: ServiceSpec) -> ServiceView:
    """Store a new service wanting `replicas.min` replicas and start them; 409 if it exists."""
    tenant = jobs.tenant_of(who)
    _centers_for(plane, spec)
    with plane.db.write() as s:
        if store.get_service(s, tenant, spec.name) is not None:
            raise ConflictError(
                f"service '{spec.name}' already exists",
                field="name",
                hint=f"cnet serve delete {spec.name} first, or cnet serve scale it",
            )
        s.add(
            ServiceRow(
                tenant_id=tenant,
                name=spec.name,
                spec=spec.model_dump(mode="json"),
                wanted=spec.replicas.min,
                created_at=plane.clock.now(),
                created_by=who.subject,
                next_slot=0,
                load={},
            )
        )
    keep(plane)
    return status(plane, who, spec.name)


def list_services(plane: ControlPlane, who: Principal) -> list[ServiceView]:
    """The caller's services (every tenant's for an admin)."""
    with plane.db.read() as s:
        return [_view(plane, s, row) for row in store.list_services(s, jobs.scope_of(who))]


def _own(s: Session, who: Principal, name: str, *, for_update: bool = False) -> ServiceRow:
    row = store.get_service(s, jobs.tenant_of(who), name, for_update=for_update)
    if row is None:
        raise NotFoundError(f"no service '{name}'", field="name", hint="cnet serve ls lists yours")
    return row


def status(plane: ControlPlane, who: Principal, name: str) -> ServiceView:
    """One service with its replicas."""
    with plane.db.read() as s:
        return _view(plane, s, _own(s, who, name))


def scale(plane: ControlPlane, who: Principal, name: str, count: int) -> ServiceView:
    """Keep `count` replicas (422 outside the file's min..max)."""
    with plane.db.write() as s:
        row = _own(s, who, name, for_update=True)
        spec = ServiceSpec.model_validate(row.spec)
        if not spec.replicas.min <= count <= spec.replicas.max:
            raise ValidationError(
                f"{count} is outside the service's replicas"
                f" {spec.replicas.min}..{spec.replicas.max}",
                field="replicas",
                hint="change replicas.min/max in the service file and deploy it again",
            )
        row.wanted = count
    keep(plane)
    return status(plane, who, name)


def delete(plane: ControlPlane, who: Principal, name: str) -> ServiceView:
    """Cancel every replica and forget the service; returns it as it was."""
    with _lock:
        with plane.db.write() as s:
            row = _own(s, who, name, for_update=True)
            view = _view(plane, s, row)
            live = [r.job_id for r in store.replicas(s, row.tenant_id, name, live_only=True)]
            store.drop_service(s, row.tenant_id, name)
        for memo in (_moves, _misfit, _last_move, _notes, _crashes, _over_since, _demand):
            memo.pop((row.tenant_id, name), None)
        for job_id in live:
            _cancel(plane, who, job_id)
    return view


def _cancel(plane: ControlPlane, who: Principal, job_id: str) -> None:
    with contextlib.suppress(ConflictError, NotFoundError):  # already final: nothing to stop
        jobs.cancel(plane, who, job_id)


TTFB_WINDOW_MIN = 15
"""Minutes of the gateways' TTFB histograms placement measures the service's own time by."""

LOAD_FRESH_S = 10.0
"""A gateway's load report counts for this many real seconds (then it is gone or idle)."""
MAX_GATEWAYS = 64
"""Gateways whose fresh reports one service keeps: a tenant cannot grow the service's
stored load without bound by inventing gateway names (422 on `gateway` past it)."""


def report_load(
    plane: ControlPlane,
    who: Principal,
    name: str,
    gateway: str,
    inflight: float,
    site: str | None = None,
    waiting: int = 0,
) -> None:
    """A gateway's mean in-flight requests to `name`, where it sits, and the requests it holds.

    Autoscaling reads the fresh reports' in-flight plus waiting; placement
    weighs each `site` by its share (docs/services.md, "Placement"). A `site`
    that is no node of the network is refused (422 on `site`).
    """
    if site is not None and site not in plane.network.node_ids:
        raise ValidationError(
            f"'{site}' is neither a user site nor a center of this network",
            field="site",
            hint="run the gateway with --site set to one of the network's sites or centers",
        )
    with plane.db.write() as s:
        row = _own(s, who, name, for_update=True)
        real = plane.clock.real()
        load = {g: v for g, v in (row.load or {}).items() if real - float(v[1]) <= LOAD_FRESH_S}
        if gateway not in load and len(load) >= MAX_GATEWAYS:
            raise ValidationError(
                f"{MAX_GATEWAYS} gateways already report load to '{name}'",
                field="gateway",
                hint="reuse a gateway's name, or wait for idle ones' reports to expire"
                f" ({LOAD_FRESH_S:g} s)",
            )
        load[gateway] = [inflight, real, site, waiting]
        row.load = load  # a new dict: the JSON column is saved only when replaced


@dataclass(frozen=True)
class Report:
    """One fresh gateway report as stored in `ServiceRow.load` (old ones lack site, waiting)."""

    inflight: float
    site: str | None
    waiting: int


def fresh_reports(row: ServiceRow, real: float) -> list[Report]:
    """The service's gateway reports younger than `LOAD_FRESH_S`."""
    out = []
    for v in (row.load or {}).values():
        if real - float(v[1]) <= LOAD_FRESH_S:
            site = v[2] if len(v) > 2 else None
            out.append(Report(float(v[0]), site, int(v[3]) if len(v) > 3 else 0))
    return out


def demand_by_site(reports: list[Report]) -> dict[str, float]:
    """Placement's weights: each reporting site's in-flight plus waiting requests.

    Sites whose gateways all report nothing in flight still say where users
    are: when every weight is 0, each reporting site weighs 1.
    """
    out: dict[str, float] = {}
    for r in reports:
        if r.site is not None:
            out[r.site] = out.get(r.site, 0.0) + r.inflight + r.waiting
    if out and not any(out.values()):
        out = dict.fromkeys(out, 1.0)
    return out


def autoscale(
    row: ServiceRow, spec: ServiceSpec, real: float, window: Lookback | None = None
) -> float | None:
    """Move `row.wanted` toward what the fresh load calls for, once it has held its delay.

    The load is the fresh reports' in-flight plus waiting requests, summed: a
    reading each pass, added to `window` (the service's `Lookback` of
    `autoscale.lookback_s`, which the keeper keeps; None: this reading alone),
    whose mean is compared with the target. Returns that mean (None: no
    reports, or no autoscale).

    Scale from zero: a service at 0 whose gateways hold requests (`waiting`)
    wants `max(1, ...)` at once, on this reading (not the mean), without
    waiting for `up_delay_s`, as Knative's activator does: the held requests
    wait for a replica to start.
    """
    if spec.autoscale is None:
        return None
    fresh = fresh_reports(row, real)
    if not fresh:
        row.above_since = row.below_since = None  # no gateway reports: nothing to go by
        return None
    now_load = sum(r.inflight + r.waiting for r in fresh)
    mean = window.add(real, now_load) if window is not None else now_load
    if row.wanted == 0 and any(r.waiting for r in fresh):
        start = max(1, replicas_for(spec, now_load))
        log.info("service %s: scaling from zero to %d", row.name, start)
        row.wanted, row.above_since, row.below_since = start, None, None
        return mean
    target = replicas_for(spec, mean)
    if target > row.wanted:
        row.below_since = None
        row.above_since = row.above_since if row.above_since is not None else real
        if real - row.above_since >= spec.autoscale.up_delay_s:
            log.info("service %s: scaling up %d -> %d", row.name, row.wanted, target)
            row.wanted, row.above_since = target, None
    elif target < row.wanted:
        row.above_since = None
        row.below_since = row.below_since if row.below_since is not None else real
        if real - row.below_since >= spec.autoscale.down_delay_s:
            log.info("service %s: scaling down %d -> %d", row.name, row.wanted, target)
            row.wanted, row.below_since = target, None
    else:
        row.above_since = row.below_since = None
    return mean


def demand_window(key: tuple[str, str], spec: ServiceSpec) -> Lookback:
    """The look-back series of service `key` in this server's memory (a new one when its
    `autoscale.lookback_s` changed); lost on a restart or a change of leader, as the
    other keeper state: the mean then starts again from the first reading."""
    lookback = (spec.autoscale or Autoscale()).lookback_s
    got = _demand.get(key)
    if got is None or got.lookback_s != lookback:
        got = _demand[key] = Lookback(lookback)
    return got


def measured_service_ms(
    plane: ControlPlane,
    key: tuple[str, str],
    demand: dict[str, float],
    placed: list[str],
) -> float | None:
    """Service `key`'s own p99 time to first byte as its gateways measured it lately.

    The p99 of the TTFB histograms the gateways reported over the last
    `TTFB_WINDOW_MIN` minutes (`server.service_stats`), less the round trip in
    it: the demand-weighted mean, over the reporting sites, of each site's RTT
    to the nearest of the replicas `placed` (the gateways route to near ones).
    None with fewer than `serving.MIN_TTFB_SAMPLES` requests, no demand or no
    replica placed: placement then keeps `serving.NETWORK_SHARE`. One figure for
    the service (the histograms are per service, not per replica or chip type).
    """
    if not placed or not demand or not any(demand.values()):
        return None
    since = datetime.fromtimestamp(plane.clock.real(), UTC) - timedelta(minutes=TTFB_WINDOW_MIN)
    minutes, _ = service_stats.store_of(plane).snapshot(key, since)
    ttfb: dict[int, int] = {}
    for _, m in minutes:
        merge(ttfb, m.ttfb_ms)
    if sum(ttfb.values()) < serving.MIN_TTFB_SAMPLES:
        return None
    total = sum(demand.values())
    rtt_share = (
        sum(
            w * min(rtt_ms(plane.paths, plane.network, site, c) for c in set(placed))
            for site, w in demand.items()
        )
        / total
    )
    return serving.service_p99_ms(percentile(ttfb, 0.99), rtt_share)


def center_costs(
    plane: ControlPlane, spec: ServiceSpec, now: datetime
) -> dict[str, tuple[Decimal, frozenset[str]]]:
    """Per center with a chip the service may use: one replica's ¥ for the coming hour
    (on its cheapest such chip; `serving.replica_cost_cny_per_hour`) and those chips."""
    net = plane.network
    out: dict[str, tuple[Decimal, frozenset[str]]] = {}
    for c in net.centers:
        chips = [net.chips[p.chip] for p in c.pools if p.count >= spec.chips.count]
        ok = [ch for ch in chips if serving.suits(ch, spec.chips, net)]
        if ok:
            cost = min(
                serving.replica_cost_cny_per_hour(net, c, ch, spec.chips.count, now) for ch in ok
            )
            out[c.id] = (cost, frozenset(ch.name for ch in ok))
    return out


def check_endpoint(plane: ControlPlane, center: str, endpoint: str) -> None:
    """Refuse a replica endpoint off the center's own host (422 on `endpoint`).

    The gateway sends users' requests wherever a replica's endpoint says, so a
    center is checked, not believed: its replicas listen on the host it
    registered for its data endpoint (`agent/serving.advertised_host`), never on
    another machine the gateway could reach.
    """
    with plane.db.read() as s:
        row = get_center(s, center)
        data_url = row.data_url if row is not None else None
    registered = urlsplit(data_url).hostname if data_url else None
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if registered is not None and host.lower() != registered.lower():
        raise ValidationError(
            f"replica endpoint host {host!r} is not this center's host {registered!r}",
            field="endpoint",
            hint="report the host of the data endpoint this center registered",
        )


def record_endpoint(plane: ControlPlane, center: str, job_id: str, endpoint: str) -> None:
    """A replica's agent reported where it listens (center protocol `StatusReport.endpoint`)."""
    with plane.db.write() as s:
        row = store.replica_of_job(s, job_id)
        if row is None:  # not a replica (or its service was deleted): nothing to route to
            log.info("%s: endpoint %s ignored, the job is no service replica", job_id, endpoint)
            return
        row.endpoint = endpoint
        row.center = center


# In memory, per service (tenant, name), on the leader; lost on a restart, which is
# harmless: a move's extra replica is then cancelled as one too many, and tried again.
_moves: dict[tuple[str, str], tuple[str, str, float]] = {}  # under way: (old, new job, since)
_misfit: dict[tuple[str, str], tuple[str, str, float]] = {}  # (old job, to center, since)
_last_move: dict[tuple[str, str], float] = {}  # real time the last move ended
_over_since: dict[tuple[str, str], float] = {}  # real time the replicas went over the budget

PIN_WAIT_S = 30.0
"""Real seconds a replica pinned at an online center may wait while that center reports no
free chips for it (others took them after it was placed); then it is placed again."""

MOVE_GIVE_UP_S = 300.0
"""Real seconds a move's new replica may take to be ready; then it is cancelled (the old
one stays) and the next move waits its hold: a target center that filled up meanwhile."""
_notes: dict[tuple[str, str], list[str]] = {}  # what ServiceView.notes shows


@dataclass
class _New:
    """A replica to submit: its slot, the center it is pinned at, and why (a job event)."""

    slot: int
    pin: str | None
    why: str | None


@dataclass
class _Todo:
    """What one pass does for one service once its transaction is committed."""

    tenant: str
    name: str
    subject: str
    spec: ServiceSpec
    new: list[_New] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    move_from: str | None = None  # the first new replica replaces this job once ready


@dataclass
class _Pass:
    """What every service's placement reads in one pass: centers as last seen, the clock."""

    plane: ControlPlane
    now: datetime
    real: float
    online: frozenset[str]
    free: dict[tuple[str, str], int]  # (center, chip) → free chips reported
    waiting_at: Counter[str]  # replicas placed at a center that do not hold chips yet

    @classmethod
    def read(cls, plane: ControlPlane, s: Session, real: float) -> _Pass:
        rows = list_centers(s)
        online = frozenset(r.id for r in rows if plane.is_online(r, real))
        free: dict[tuple[str, str], int] = {}
        for r in rows:
            for pool in r.capacity or []:
                n = int(pool["free"])
                if pool.get("largest_free") is not None:  # a region: the most in one center
                    n = min(n, int(pool["largest_free"]))
                free[(r.id, str(pool["chip"]))] = n
        # Replicas the centers' reported free chips do not count yet: those waiting to
        # start (at their placement or pin), and those leased since the center's last
        # heartbeat (its report still shows their chips free).
        beat = {r.id: r.last_heartbeat or 0.0 for r in rows}
        waiting_at: Counter[str] = Counter()
        q = (
            select(JobRow.state, JobRow.center, JobRow.spec, JobRow.lease_center, JobRow.leased_at)
            .join(ServiceReplicaRow, ServiceReplicaRow.job_id == JobRow.id)
            .where(
                ServiceReplicaRow.retired.is_(False),
                JobRow.state.in_(
                    [
                        JobState.PENDING.value,
                        JobState.SCHEDULED.value,
                        JobState.STAGING.value,
                        JobState.RUNNING.value,
                    ]
                ),
            )
        )
        for state, center, spec, lease_center, leased_at in s.execute(q):
            if state in (JobState.PENDING.value, JobState.SCHEDULED.value):
                at = center or (spec or {}).get("center")
            elif lease_center and (leased_at or 0.0) >= beat.get(lease_center, 0.0):
                at = lease_center
            else:
                continue
            if at:
                waiting_at[at] += 1
        return cls(plane, plane.clock.now(), real, online, free, waiting_at)

    def room(self, cid: str, chips: frozenset[str], count: int) -> int:
        """Replicas of `count` chips that `cid`'s reported free chips hold."""
        return sum(self.free.get((cid, ch), 0) // count for ch in chips)

    def spots(
        self,
        spec: ServiceSpec,
        costs: dict[str, tuple[Decimal, frozenset[str]]],
        allowed: list[str],
    ) -> list[serving.Spot]:
        """The online centers (within the residency) that can run a replica, and their room."""
        out = []
        for cid, (cost, chips) in costs.items():
            if cid not in self.online or (allowed and cid not in allowed):
                continue
            room = self.room(cid, chips, spec.chips.count)
            out.append(serving.Spot(cid, float(cost), max(0, room - self.waiting_at[cid])))
        return out


def _pinned(job: JobRow) -> str | None:
    """The center a replica job was pinned at, if any."""
    return (job.spec or {}).get("center")


def _plan(p: _Pass, s: Session, row: ServiceRow) -> _Todo:
    """One service's pass (module doc): retire, restart, place, cap by budget, move."""
    plane, real = p.plane, p.real
    spec = ServiceSpec.model_validate(row.spec)
    key = (row.tenant_id, row.name)
    todo = _Todo(row.tenant_id, row.name, row.created_by, spec)
    notes: list[str] = []
    autoscale(row, spec, real, demand_window(key, spec))
    allowed = _centers_for(plane, spec)
    costs = center_costs(plane, spec, p.now)
    spots = p.spots(spec, costs, allowed)
    fails, not_before = _crashes.get(key, (0, 0.0))
    live: list[tuple[ServiceReplicaRow, JobRow]] = []
    for r in store.replicas(s, row.tenant_id, row.name, live_only=True):
        job = s.get(JobRow, r.job_id)
        if job is None or JobState(job.state) in TERMINAL_STATES:
            r.retired = True  # it died or was stopped: its slot is free again
            if job is not None and job.state == JobState.FAILED.value:
                fails += 1
                not_before = real + restart_delay_s(fails)
            continue
        pinned = _pinned(job)
        if (
            job.state in (JobState.PENDING.value, JobState.SCHEDULED.value)
            and pinned is not None
            and pinned not in p.online
            and any(x.center != pinned for x in spots)
        ):
            # Pinned at a center that went away (or was lost with it): the scheduler
            # would wait for that center; a new replica is placed where one can run.
            log.info("service %s: %s pinned at offline %s: replaced", row.name, job.id, pinned)
            r.retired = True
            todo.cancel.append(job.id)
            continue
        if (
            job.state == JobState.PENDING.value
            and pinned in p.online
            and pinned in costs
            and p.room(pinned, costs[pinned][1], spec.chips.count) == 0
            and real - plane.clock.to_real(job.submitted_at) >= PIN_WAIT_S
            and any(x.free > 0 and x.center != pinned for x in spots)
        ):
            # Its center filled up after it was placed there: place it again.
            log.info(
                "service %s: %s waited %gs for %s: replaced", row.name, job.id, PIN_WAIT_S, pinned
            )
            r.retired = True
            todo.cancel.append(job.id)
            continue
        if job.state == JobState.RUNNING.value and r.endpoint is not None:
            fails = 0  # one answered its probe: the command works
        live.append((r, job))
    _crashes[key] = (fails, not_before)

    # A move under way: the new replica is extra until it is ready, then the old one stops.
    moving = _moves.get(key)
    if moving is not None:
        old, new, since = moving
        by_job = {r.job_id: (r, job) for r, job in live}
        if new not in by_job or old not in by_job:
            _moves.pop(key)  # one of them ended: what is left is ordinary replicas
            moving = None
        elif real - since > MOVE_GIVE_UP_S and not by_job[new][0].endpoint:
            log.info("service %s: move of %s given up, %s not ready in time", row.name, old, new)
            by_job[new][0].retired = True
            todo.cancel.append(new)
            live = [x for x in live if x[0].job_id != new]
            _moves.pop(key)
            _last_move[key] = real
            moving = None
        else:
            nr, nj = by_job[new]
            if nj.state == JobState.RUNNING.value and nr.endpoint is not None:
                by_job[old][0].retired = True
                todo.cancel.append(old)
                live = [x for x in live if x[0].job_id != old]
                _moves.pop(key)
                _last_move[key] = real
                moving = None
                log.info("service %s: moved replica %s to %s", row.name, old, nr.center)
            else:
                live = [x for x in live if x[0].job_id != new]
                notes.append(f"moving replica {old} to {nj.center or _pinned(nj)}")

    def at(r: ServiceReplicaRow, job: JobRow) -> str | None:
        return job.lease_center or job.center or r.center or _pinned(job)

    dearest = max((float(c) for c, _ in costs.values()), default=0.0)

    def cost_at(center: str | None, job: JobRow | None = None) -> float:
        cost = _cost_of(plane, costs, job, center)
        return dearest if cost is None else float(cost)  # unplaced: it may land at the dearest

    budget = float(spec.budget_cny_per_hour) if spec.budget_cny_per_hour is not None else None
    keep_n = min(row.wanted, len(live))
    live_costs = [cost_at(at(r, job), job) for r, job in live]
    affordable = serving.budget_keep(live_costs[:keep_n], budget, spec.replicas.min)
    if affordable < keep_n:
        # Over the budget (a tariff rose, a dearer chip): the newest stop once that has
        # held the file's down delay, so an hour's boundary does not stop and start them.
        since = _over_since.setdefault(key, real)
        if real - since >= move_hold_s(spec):
            notes.append(f"{keep_n - affordable} replica(s) stopped: over the hourly budget")
            keep_n = affordable
            _over_since.pop(key, None)
        else:
            notes.append(f"over the hourly budget since {real - since:.0f} s: the newest stop soon")
    else:
        _over_since.pop(key, None)
    for r, job in live[keep_n:]:  # the newest go first
        r.retired = True
        todo.cancel.append(job.id)
    live = live[:keep_n]
    spent = sum(live_costs[:keep_n])
    demand = demand_by_site(fresh_reports(row, real))
    rtt = {
        (site, x.center): rtt_ms(plane.paths, plane.network, site, x.center)
        for site in demand
        for x in spots
    }
    placed = [c for r, job in live if (c := at(r, job)) is not None]
    missing = row.wanted - len(live) if real >= not_before and keep_n == len(live) else 0
    obj = spec.latency.p99_ttfb_ms
    service_ms = measured_service_ms(plane, key, demand, placed)
    slot = row.next_slot
    for i in range(max(0, missing)):
        choice = serving.choose(demand, spots, rtt, obj, placed, service_ms=service_ms)
        if choice is not None:
            pin: str | None = choice.center
            why: str | None = f"{choice.center}, {choice.reason}"
            spots = [
                serving.Spot(x.center, x.cost_cny_per_hour, x.free - (x.center == pin))
                for x in spots
            ]
        else:
            pin = _round_robin(allowed, p.online, slot) if allowed else None
            why = None  # the ordinary scheduler decides (or the residency's round robin)
        cost = cost_at(pin)
        if budget is not None and spent + cost > budget + 1e-9:
            if len(live) + i >= spec.replicas.min:
                notes.append(
                    f"{missing - i} replica(s) not started: the hourly budget"
                    f" ¥{budget:g} would be passed (¥{spent:.2f}/h now)"
                )
                break
            warn = (
                f"over budget: replicas.min ({spec.replicas.min}) wins, the service costs"
                f" ¥{spent + cost:.2f}/h against its budget ¥{budget:g}/h"
            )
            why = f"{why}; {warn}" if why else f"{pin or 'any center'}; {warn}"
        todo.new.append(_New(slot, pin, why))
        spent += cost
        slot += 1
        if pin is not None:
            placed.append(pin)
    row.next_slot = slot
    if (
        budget is not None
        and spent > budget + 1e-9
        and len(live) + len(todo.new) <= spec.replicas.min
    ):
        notes.append(
            f"over budget: the service costs ¥{spent:.2f}/h against its budget ¥{budget:g}/h;"
            f" replicas.min ({spec.replicas.min}) wins"
        )
    if not todo.new and not todo.cancel and moving is None and demand:
        _consider_move(
            p, row, spec, key, live, spots, rtt, demand, spent, budget, todo, at, service_ms
        )
        if todo.move_from is not None:
            notes.append(f"moving replica {todo.move_from} to {todo.new[0].pin}")
    _notes[key] = notes
    return todo


def _round_robin(allowed: list[str], online: frozenset[str], slot: int) -> str:
    """Residency without demand: replica `slot` at the next allowed center, online ones first."""
    up = [c for c in allowed if c in online] or allowed
    return up[slot % len(up)]


def _consider_move(
    p: _Pass,
    row: ServiceRow,
    spec: ServiceSpec,
    key: tuple[str, str],
    live: list[tuple[ServiceReplicaRow, JobRow]],
    spots: list[serving.Spot],
    rtt: dict[tuple[str, str], float],
    demand: dict[str, float],
    spent: float,
    budget: float | None,
    todo: _Todo,
    at: Callable[[ServiceReplicaRow, JobRow], str | None],
    service_ms: float | None = None,
) -> None:
    """Start a move (make before break) once a better center has held `move_hold_s`."""
    hold = move_hold_s(spec)
    if p.real - _last_move.get(key, -1e18) < hold:
        return  # at most one move per service per hold: bounded churn
    ready = [
        (job, c)
        for r, job in live
        if job.state == JobState.RUNNING.value
        and r.endpoint is not None
        and (c := at(r, job)) is not None
    ]
    if len(ready) != len(live):
        _misfit.pop(key, None)  # a replica still starting: judge once all are up
        return
    mv = serving.misplaced(
        demand,
        spots,
        rtt,
        spec.latency.p99_ttfb_ms,
        [c for _, c in ready],
        service_ms=service_ms,
    )
    if mv is None:
        _misfit.pop(key, None)
        return
    old_job, here = ready[mv.index]
    seen = _misfit.get(key)
    if seen is None or seen[:2] != (old_job.id, mv.to.center):
        _misfit[key] = (old_job.id, mv.to.center, p.real)
        return
    if p.real - seen[2] < hold:
        return
    costs = {x.center: x.cost_cny_per_hour for x in spots}
    after = spent - costs.get(here, 0.0) + mv.to.cost_cny_per_hour
    if budget is not None and after > budget + 1e-9:
        return  # the move itself would pass the budget
    _misfit.pop(key, None)
    todo.new.append(
        _New(
            row.next_slot,
            mv.to.center,
            f"{mv.to.center}, moving replica {old_job.id} from {here} ({mv.reason});"
            f" {mv.to.reason}; {old_job.id} stops once this one is ready",
        )
    )
    todo.move_from = old_job.id
    row.next_slot += 1


def keep(plane: ControlPlane) -> int:
    """One pass over every service (see module doc); returns replica jobs submitted."""
    with _lock:
        with plane.db.read() as s:
            if not store.list_services(s):
                return 0  # the common case: no write transaction every pass
        real = plane.clock.real()
        with plane.db.write() as s:
            p = _Pass.read(plane, s, real)
            todo = [_plan(p, s, row) for row in store.list_services(s)]
        submitted = 0
        for t in todo:
            who = Principal(subject=t.subject, role="user", tenant=t.tenant)
            for job_id in t.cancel:
                _cancel(plane, who, job_id)
            for new in t.new:
                try:
                    view, _ = jobs.submit(
                        plane, who, SubmitRequest(spec=t.spec.replica_job(new.slot, new.pin))
                    )
                except Exception as exc:  # the next pass tries again
                    log.warning("service %s: replica %d not submitted: %s", t.name, new.slot, exc)
                    with plane.db.write() as s:
                        again = store.get_service(s, t.tenant, t.name, for_update=True)
                        if again is not None:
                            again.next_slot = min(again.next_slot, new.slot)
                    break
                with plane.db.write() as s:
                    s.add(
                        ServiceReplicaRow(
                            job_id=view.id,
                            tenant_id=t.tenant,
                            service=t.name,
                            slot=new.slot,
                            endpoint=None,
                            center=new.pin,
                            retired=False,
                        )
                    )
                    if new.why:
                        job_store.add_event(s, view.id, plane.clock.now(), PLACED + new.why)
                if t.move_from is not None:
                    _moves[(t.tenant, t.name)] = (t.move_from, view.id, plane.clock.real())
                    t.move_from = None
                submitted += 1
                log.info(
                    "service %s: replica %d submitted as %s%s",
                    t.name,
                    new.slot,
                    view.id,
                    f" at {new.pin}" if new.pin else "",
                )
        return submitted


class Keeper:
    """The thread that runs `keep` every `KEEP_EVERY_S` while this server leads."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (not when the server runs without its loop, e.g. in unit tests)."""
        if not self.plane.settings.run_loop or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="computenet-services", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(KEEP_EVERY_S):
            if self.plane.leadership.term() is None:
                continue  # a follower: the leader keeps
            try:
                keep(self.plane)
            except Exception:  # a bad pass must not end the thread
                log.exception("services keeper pass failed")
