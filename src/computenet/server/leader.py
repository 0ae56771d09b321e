"""Which replica leads: the control loop's leader lease, seen from one replica.

Every replica serves the API; only the leader runs the reconciler and the
scheduling cycle (after Kubernetes' leader election for its scheduler). The
policy, over `store.leader`:

* Every replica tries to acquire or renew the lease every ``lease/3``
  (`Settings.leader_lease_s`, a few seconds): the leader renews, followers
  take it over once it has expired.
* A leader counts itself leading only until ``start of its last successful
  renewal + lease``; a renewal that fails (database unreachable) or finds
  another holder makes it step down at once.
* Every write of the leader's loop is fenced: its transaction calls
  `Leadership.fence`, which aborts (`LeadershipLost`) unless the lease row
  still names this replica and its epoch — so a leader deposed while it was
  paused writes nothing when it wakes up.
* A replica that stops cleanly releases the lease, so a successor takes over
  at its next try instead of after the lease runs out. On SQLite (one
  machine) a holder whose process is gone is taken over at once as well:
  a restarted embedded server need not wait out its dead predecessor's lease.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from computenet.errors import ComputeNetError
from computenet.store import Database
from computenet.store import leader as lease_store

log = logging.getLogger(__name__)


class LeadershipLost(ComputeNetError):
    """This replica no longer holds the leader lease in its epoch: its loop must not write."""

    status_code = 503


@dataclass(frozen=True)
class Term:
    """One uninterrupted period of leading: its epoch, when it began, until when it is good."""

    epoch: int
    since: float
    valid_until: float


def _pid_namespace() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "-"


def replica_id() -> str:
    """This process's holder id: ``host:pid-namespace:pid:nonce`` (unique per start)."""
    host = socket.gethostname()[:64]
    return f"{host}:{_pid_namespace()}:{os.getpid()}:{secrets.token_hex(3)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def holder_gone(holder: str) -> bool:
    """Whether `holder` is a process of this machine (same pid namespace) that no longer runs.

    Anything else — another machine, another namespace, an id of another
    shape, this very process — counts as alive: a wrong "alive" only makes a
    successor wait for the lease to expire.
    """
    parts = holder.split(":")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    host, ns, pid = parts[0], parts[1], int(parts[2])
    if host != socket.gethostname()[:64] or ns != _pid_namespace() or ns == "-":
        return False
    return pid != os.getpid() and not _pid_alive(pid)


class Leadership:
    """One replica's side of the leader lease for role `name` (see module doc).

    `renew()` is one acquire-or-renew; `term()` is the term this replica is in
    now (None while it follows); `fence(session)` is the check every write of
    the leader's loop makes first. Thread-safe.
    """

    def __init__(
        self,
        db: Database,
        *,
        lease_s: float,
        real: Callable[[], float],
        holder: str | None = None,
        name: str = lease_store.CONTROL_LOOP,
    ) -> None:
        self.db = db
        self.lease_s = float(lease_s)
        self.name = name
        self.holder = holder or replica_id()
        self._real = real
        self._lock = threading.Lock()
        self._term: Term | None = None
        self._epoch: int | None = None  # the last epoch this replica held, kept after a lapse
        self._last_try = float("-inf")
        self.seen: lease_store.Lease | None = None  # the row as the last try found it
        # Only on SQLite can every holder be assumed to run on this machine.
        self._gone = holder_gone if db.sqlite else None

    @property
    def renew_interval_s(self) -> float:
        """How often the lease is renewed (leader) or tried (followers): a third of it."""
        return self.lease_s / 3

    def term(self) -> Term | None:
        """The term this replica leads in now, or None (following, or its lease ran out)."""
        t = self._term
        if t is None or self._real() > t.valid_until:
            return None
        return t

    def renew(self) -> Term | None:
        """Acquire or renew the lease once; the term it leaves this replica in (None: following)."""
        with self._lock:
            return self._renew()

    def renew_if_due(self) -> Term | None:
        """`renew()` once the last try is an interval old or the term ran out; else `term()`."""
        with self._lock:
            now = self._real()
            if self.term() is not None and now - self._last_try < self.renew_interval_s:
                return self._term
            return self._renew()

    def _renew(self) -> Term | None:
        start = self._real()
        self._last_try = start
        try:
            with self.db.write() as s:
                row = lease_store.acquire(
                    s,
                    self.name,
                    self.holder,
                    start,
                    self.lease_s,
                    epoch=self._epoch,
                    gone=self._gone,
                )
        except SQLAlchemyError as exc:
            # We cannot tell whether we still hold it: stop acting as leader now.
            self.step_down(f"renewing the leader lease failed: {type(exc).__name__}: {exc}")
            return None
        self.seen = row
        if row.holder != self.holder:
            if self._term is not None:
                log.warning(
                    "stepping down: %s took the leader lease (epoch %d)", row.holder, row.epoch
                )
            self._term = None
            return None
        if self._term is None or self._term.epoch != row.epoch:
            log.info("leading the control loop as %s (epoch %d)", self.holder, row.epoch)
            self._term = Term(row.epoch, row.acquired_real, start + self.lease_s)
        else:
            self._term = Term(row.epoch, self._term.since, start + self.lease_s)
        self._epoch = row.epoch
        return self._term

    def step_down(self, why: str) -> None:
        """Stop leading now (the lease row is left to expire or to be renewed later)."""
        if self._term is not None:
            log.warning("stepping down (epoch %d): %s", self._term.epoch, why)
        self._term = None

    def fence(self, s: Session) -> None:
        """Raise `LeadershipLost` unless the lease row still names this replica in its epoch.

        Call it first in each write transaction of the leader's loop: it locks
        the lease row until that transaction ends (see `store.leader`).
        """
        t = self._term
        if t is None or not lease_store.holds(s, self.name, self.holder, t.epoch):
            epoch = "-" if t is None else str(t.epoch)
            raise LeadershipLost(
                f"replica {self.holder} no longer leads in epoch {epoch}",
                hint="another replica took the leader lease; this one follows",
            )

    def release(self) -> None:
        """Give the lease up (on a clean stop) so another replica can take it at once."""
        with self._lock:
            t, self._term = self._term, None
            if t is None:
                return
            try:
                with self.db.write() as s:
                    lease_store.release(s, self.name, self.holder, t.epoch)
            except SQLAlchemyError as exc:
                log.warning("could not release the leader lease: %s", exc)
                return
            log.info("released the leader lease (epoch %d)", t.epoch)
