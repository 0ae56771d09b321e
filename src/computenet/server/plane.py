"""The control plane object: store, clock, network and the background loop, passed to every part."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from computenet.model.center import CST
from computenet.network import PathTable
from computenet.scheduler import JobRequest
from computenet.scheduler.index import network_index
from computenet.server.auth import Authenticator
from computenet.server.reconciler import reconcile
from computenet.server.scheduling import run_cycle
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
    """Shared state of one server: settings, database, network clock, path table, loop thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.network = settings.network
        if settings.migrate:
            upgrade_db(settings.db_url)
        self.db = Database(settings.db_url)
        self.clock = self._load_clock()
        self.paths: PathTable = network_index(self.network).paths
        self.auth = Authenticator(self.db)
        self.submitter = Submitter(self.db)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        # Scheduling-cycle memory: each pending job's request (with what it was built from
        # and its signature), the last snapshot inputs seen, and the (job, avoided centers
        # as stored) pairs left unplaced under those inputs.
        self.request_cache: dict[str, tuple[object, JobRequest, tuple[object, ...]]] = {}
        self.last_cycle_key: object = None
        self.last_full_cycle: float = float("-inf")
        self.unplaced: set[tuple[str, str]] = set()
        # Real unix time this replica became the leader (runs reconcile + cycles). Lease
        # expiry is counted from no earlier than this, so a failover does not requeue
        # every job whose heartbeats went to the old leader.
        self.leading_since: float = self.clock.real()

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

    def tick(self) -> TickReport:
        """One pass of the control loop: expire lost leases, then run a scheduling cycle."""
        with self._tick_lock:
            requeued = reconcile(self)
            scheduled, pending = run_cycle(self)
        return TickReport(requeued=requeued, scheduled=scheduled, pending=pending)

    def start(self) -> None:
        """Start the background loop (if the settings ask for it)."""
        if not self.settings.run_loop or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="computenet-control", daemon=True)
        self._thread.start()
        log.info(
            "control loop started: cycle %.1fs, lease timeout %.1fs, network %s at %gx",
            self.settings.cycle_interval_s,
            self.settings.lease_timeout_s,
            self.network.name,
            self.clock.time_scale,
        )

    def stop(self) -> None:
        """Stop the loop, store the submissions already accepted, and release the database."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.submitter.close()
        self.db.dispose()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.cycle_interval_s):
            try:
                self.tick()
            except Exception:
                # One bad cycle must not stop the network; the next cycle retries.
                log.exception("control loop pass failed")
