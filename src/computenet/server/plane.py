"""The control plane object: store, clock, network and the background loop, passed to every part."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from computenet.model.center import CST
from computenet.network import PathTable
from computenet.scheduler.index import network_index
from computenet.server.auth import Authenticator
from computenet.server.leader import Leadership, LeadershipLost, Term
from computenet.server.limits import Admission
from computenet.server.members import MemberBook
from computenet.server.metrics import Metrics
from computenet.server.quotes import QuoteBook
from computenet.server.reconciler import reconcile
from computenet.server.scheduling import CycleMemory, run_cycle
from computenet.server.settings import NetworkClock, Settings
from computenet.server.submitter import Submitter
from computenet.store import Database, upgrade_db
from computenet.store.accounts import get_meta, set_meta
from computenet.store.schema import CenterRow

log = logging.getLogger(__name__)

CLOCK_KEY = "network_clock"


@dataclass(frozen=True)
class TickReport:
    """What one pass of the control loop did."""

    requeued: int
    scheduled: int
    pending: int


class ControlPlane:
    """Shared state of one server: settings, database, network clock, path table, loop thread.

    One of possibly several replicas on one database: every replica serves the
    API, and only the one holding the leader lease (`leadership`, see
    `server.leader`) runs the loop — `tick()` does nothing on the others.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.network = settings.network
        if settings.migrate:
            upgrade_db(settings.db_url)
        self.db = Database(settings.db_url)
        self.clock = self._load_clock()
        self.paths: PathTable = network_index(self.network).paths
        self.auth = Authenticator(self.db)
        # Per-tenant limits (server/limits.py): checked on submit, pending cap in the writer.
        self.admission = Admission(
            self.db,
            max_pending_jobs=settings.max_pending_jobs,
            submits_per_s=settings.submits_per_s,
            real=self.clock.real,
        )
        self.submitter = Submitter(self.db, admission=self.admission)
        self.metrics = Metrics(self)  # GET /metrics: this server's own registry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        # Real time this replica started leading (running the reconciler): lease expiry
        # counts from it at the earliest, so a restart or a new leader gives agents a full
        # requeue period to heartbeat first. The leader election moves it forward.
        self.leading_since: float = self.clock.real()
        # What the scheduling cycles remember between passes (server.scheduling owns it).
        self.cycle = CycleMemory()
        # Regions' own quotes for pending jobs and what was asked of them (server.quotes).
        self.quotes = QuoteBook()
        # Regions' member centers as their agents last listed them (server.members).
        self.members = MemberBook()
        # The leader lease (see server.leader): only the leader reconciles and schedules.
        self.leadership = Leadership(
            self.db, lease_s=settings.leader_lease_s, real=settings.real_time
        )
        self.term_epoch: int | None = None  # epoch of the term this replica last led in
        self.term_first_cycle: float | None = None  # real time its first cycle ended
        self._wake = threading.Event()
        self._renewer: threading.Thread | None = None
        self._begin_term(self.leadership.renew())

    def _load_clock(self) -> NetworkClock:
        """Continue the clock stored in the database, or start one (at `settings.epoch` or now)."""
        s = self.settings
        real_now = s.real_time()
        with self.db.write() as session:
            stored = get_meta(session, CLOCK_KEY)
            if s.epoch is not None:
                start = s.epoch
            elif stored:
                old = NetworkClock(
                    datetime.fromisoformat(stored["epoch_network"]),
                    float(stored["time_scale"]),
                    epoch_real=float(stored["epoch_real"]),
                    real=s.real_time,
                )
                # Network time never runs backwards across restarts.
                start = old.to_network(real_now)
            else:
                start = datetime.fromtimestamp(real_now, CST)
            clock = NetworkClock(start, s.time_scale, epoch_real=real_now, real=s.real_time)
            set_meta(
                session,
                CLOCK_KEY,
                {
                    "epoch_network": clock.epoch_network.isoformat(),
                    "epoch_real": clock.epoch_real,
                    "time_scale": clock.time_scale,
                },
            )
        return clock

    def is_online(self, row: CenterRow | None, real_now: float | None = None) -> bool:
        """A center is online while its last heartbeat is younger than the lease timeout."""
        if row is None or row.last_heartbeat is None:
            return False
        now = self.clock.real() if real_now is None else real_now
        return now - row.last_heartbeat <= self.settings.lease_timeout_s

    def _begin_term(self, term: Term | None) -> None:
        """On gaining leadership (a new epoch): start the term afresh.

        The cycle's memory describes what the database looked like when this
        replica last scheduled; another leader has written since, so it is dropped.
        """
        if term is None or term.epoch == self.term_epoch:
            return
        self.term_epoch = term.epoch
        self.term_first_cycle = None
        self.leading_since = term.since
        self.cycle.forget()

    def leader_status(self) -> dict[str, object]:
        """For /healthz: whether this replica leads now, its epoch, since when, first cycle.

        `first_cycle_real` is when the current term's first cycle ended (None
        until it has, and while following).
        """
        term = self.leadership.term()
        current = term is not None and self.term_epoch == term.epoch
        return {
            "leader": term is not None,
            "epoch": term.epoch if term is not None else self.term_epoch,
            "leading_since": term.since if term is not None else None,
            "first_cycle_real": self.term_first_cycle if current else None,
        }

    def fence(self, s: Session) -> None:
        """First call of every write transaction of the loop: abort unless still the leader.

        Raises `LeadershipLost` when another replica took the lease (a higher
        epoch); the lease row stays locked until `s` ends (see `server.leader`).
        """
        self.leadership.fence(s)

    def tick(self) -> TickReport:
        """One pass of the control loop, if this replica leads: expire leases, run a cycle."""
        with self._tick_lock:
            term = self.leadership.renew_if_due()
            self._begin_term(term)
            if term is None:
                return TickReport(requeued=0, scheduled=0, pending=0)
            try:
                requeued = reconcile(self)
                with self.metrics.cycle_timer():
                    scheduled, pending = run_cycle(self)
            except LeadershipLost as exc:
                self.leadership.step_down(exc.message)
                return TickReport(requeued=0, scheduled=0, pending=0)
            if self.term_first_cycle is None:
                self.term_first_cycle = self.clock.real()
                log.info("epoch %d: first cycle as leader, %d pending", term.epoch, pending)
            if requeued:
                log.info("epoch %d: requeued or re-planned %d job(s)", term.epoch, requeued)
        return TickReport(requeued=requeued, scheduled=scheduled, pending=pending)

    def start(self) -> None:
        """Start the background loop (if the settings ask for it)."""
        if not self.settings.run_loop or self._thread is not None:
            return
        self._stop.clear()
        self._renewer = threading.Thread(
            target=self._renew_loop, name="computenet-leader", daemon=True
        )
        self._renewer.start()
        self._thread = threading.Thread(target=self._loop, name="computenet-control", daemon=True)
        self._thread.start()
        lead = self.leadership
        log.info(
            "control loop started: cycle %.1fs, lease timeout %.1fs, network %s at %gx;"
            " replica %s, leader lease %.1fs, %s",
            self.settings.cycle_interval_s,
            self.settings.lease_timeout_s,
            self.network.name,
            self.clock.time_scale,
            lead.holder,
            lead.lease_s,
            f"leading (epoch {self.term_epoch})" if lead.term() else "following",
        )

    def stop(self) -> None:
        """Stop the loop, hand the lease on, store accepted submissions, release the database."""
        self._stop.set()
        self._wake.set()
        for t in (self._thread, self._renewer):
            if t is not None:
                t.join(timeout=30)
        self._thread = self._renewer = None
        self.leadership.release()
        self.submitter.close()
        self.db.dispose()

    def _renew_loop(self) -> None:
        # Its own thread, so a long cycle never lets the lease lapse.
        while not self._stop.is_set():
            was_leading = self.leadership.term() is not None
            try:
                term = self.leadership.renew()
            except Exception:
                log.exception("leader lease renewal failed")
                term = None
            if term is not None and not was_leading:
                self._wake.set()  # a new leader runs its first cycle now, not a cycle later
            self._stop.wait(self.leadership.renew_interval_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.cycle_interval_s)
            self._wake.clear()
            if self._stop.is_set() or self.leadership.term() is None:
                continue
            try:
                self.tick()
            except Exception:
                # One bad cycle must not stop the network; the next cycle retries.
                log.exception("control loop pass failed")
