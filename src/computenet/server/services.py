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
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from computenet.errors import ConflictError, NotFoundError, ValidationError
from computenet.model import TERMINAL_STATES, JobState
from computenet.model.service import ServiceSpec, replicas_for
from computenet.protocol.api import SubmitRequest
from computenet.protocol.services import ReplicaView, ServiceView
from computenet.server import jobs
from computenet.server.auth import Principal
from computenet.store import services as store
from computenet.store.centers import get_center
from computenet.store.schema import JobRow, ServiceReplicaRow, ServiceRow

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


def _view(s: Session, row: ServiceRow) -> ServiceView:
    views = []
    for r in store.replicas(s, row.tenant_id, row.name, live_only=True):
        job = s.get(JobRow, r.job_id)
        state = JobState(job.state) if job is not None else JobState.CANCELLED
        center = (job.lease_center or job.center) if job is not None else r.center
        ready = state == JobState.RUNNING and r.endpoint is not None
        views.append(
            ReplicaView(
                job_id=r.job_id,
                slot=r.slot,
                state=state,
                center=center,
                endpoint=r.endpoint if ready else None,
                ready=ready,
                chip=job.chip if job is not None else None,
            )
        )
    return ServiceView(
        name=row.name,
        tenant=row.tenant_id,
        spec=ServiceSpec.model_validate(row.spec),
        wanted=row.wanted,
        ready=sum(v.ready for v in views),
        created_at=row.created_at,
        replicas=views,
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
        return [_view(s, row) for row in store.list_services(s, jobs.scope_of(who))]


def _own(s: Session, who: Principal, name: str, *, for_update: bool = False) -> ServiceRow:
    row = store.get_service(s, jobs.tenant_of(who), name, for_update=for_update)
    if row is None:
        raise NotFoundError(f"no service '{name}'", field="name", hint="cnet serve ls lists yours")
    return row


def status(plane: ControlPlane, who: Principal, name: str) -> ServiceView:
    """One service with its replicas."""
    with plane.db.read() as s:
        return _view(s, _own(s, who, name))


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
            view = _view(s, row)
            live = [r.job_id for r in store.replicas(s, row.tenant_id, name, live_only=True)]
            store.drop_service(s, row.tenant_id, name)
        for job_id in live:
            _cancel(plane, who, job_id)
    return view


def _cancel(plane: ControlPlane, who: Principal, job_id: str) -> None:
    with contextlib.suppress(ConflictError, NotFoundError):  # already final: nothing to stop
        jobs.cancel(plane, who, job_id)


LOAD_FRESH_S = 10.0
"""A gateway's load report counts for this many real seconds (then it is gone or idle)."""


def report_load(
    plane: ControlPlane, who: Principal, name: str, gateway: str, inflight: float
) -> None:
    """A gateway's mean in-flight requests to `name` (autoscaling reads the fresh ones)."""
    with plane.db.write() as s:
        row = _own(s, who, name, for_update=True)
        real = plane.clock.real()
        load = {g: v for g, v in (row.load or {}).items() if real - float(v[1]) <= LOAD_FRESH_S}
        load[gateway] = [inflight, real]
        row.load = load  # a new dict: the JSON column is saved only when replaced


def autoscale(row: ServiceRow, spec: ServiceSpec, real: float) -> None:
    """Move `row.wanted` toward what the fresh load calls for, once it has held its delay."""
    if spec.autoscale is None:
        return
    fresh = [float(v[0]) for v in (row.load or {}).values() if real - float(v[1]) <= LOAD_FRESH_S]
    if not fresh:
        row.above_since = row.below_since = None  # no gateway reports: nothing to go by
        return
    target = replicas_for(spec, sum(fresh))
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


def keep(plane: ControlPlane) -> int:
    """One pass over every service (see module doc); returns replica jobs submitted."""
    with _lock:
        todo: list[tuple[str, str, str, ServiceSpec, list[int], list[str]]] = []
        with plane.db.read() as s:
            if not store.list_services(s):
                return 0  # the common case: no write transaction every pass
        real = plane.clock.real()
        with plane.db.write() as s:
            for row in store.list_services(s):
                spec = ServiceSpec.model_validate(row.spec)
                autoscale(row, spec, real)
                live = []
                key = (row.tenant_id, row.name)
                fails, not_before = _crashes.get(key, (0, 0.0))
                for r in store.replicas(s, row.tenant_id, row.name, live_only=True):
                    job = s.get(JobRow, r.job_id)
                    if job is None or JobState(job.state) in TERMINAL_STATES:
                        r.retired = True  # it died or was stopped: its slot is free again
                        if job is not None and job.state == JobState.FAILED.value:
                            fails += 1
                            not_before = real + restart_delay_s(fails)
                        continue
                    if job.state == JobState.RUNNING.value and r.endpoint is not None:
                        fails = 0  # one answered its probe: the command works
                    live.append(r)
                _crashes[key] = (fails, not_before)
                extra = [r.job_id for r in live[row.wanted :]] if len(live) > row.wanted else []
                for r in live[row.wanted :]:
                    r.retired = True
                missing = row.wanted - len(live) if real >= not_before else 0
                new_slots = list(range(row.next_slot, row.next_slot + max(0, missing)))
                row.next_slot += len(new_slots)
                todo.append((row.tenant_id, row.name, row.created_by, spec, new_slots, extra))
        submitted = 0
        for tenant, name, subject, spec, slots, extra in todo:
            who = Principal(subject=subject, role="user", tenant=tenant)
            for job_id in extra:
                _cancel(plane, who, job_id)
            centers = _centers_for(plane, spec)
            for slot in slots:
                pin = centers[slot % len(centers)] if centers else None
                try:
                    view, _ = jobs.submit(
                        plane, who, SubmitRequest(spec=spec.replica_job(slot, pin))
                    )
                except Exception as exc:  # the next pass tries again
                    log.warning("service %s: replica %d not submitted: %s", name, slot, exc)
                    with plane.db.write() as s:
                        again = store.get_service(s, tenant, name, for_update=True)
                        if again is not None:
                            again.next_slot = min(again.next_slot, slot)
                    break
                with plane.db.write() as s:
                    s.add(
                        ServiceReplicaRow(
                            job_id=view.id,
                            tenant_id=tenant,
                            service=name,
                            slot=slot,
                            endpoint=None,
                            center=pin,
                            retired=False,
                        )
                    )
                submitted += 1
                log.info("service %s: replica %d submitted as %s", name, slot, view.id)
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
