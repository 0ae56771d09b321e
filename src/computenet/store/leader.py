"""The leader lease of the control-plane replicas: acquire-or-renew, fence, release, read.

One `leader_lease` row per role (e.g. ``control-loop``). Every function here
runs inside the caller's write transaction and first locks the role: on
PostgreSQL with a transaction-scoped advisory lock (which also serializes two
contenders racing to insert the first row) and ``SELECT … FOR UPDATE``; on
SQLite the write transaction is ``BEGIN IMMEDIATE`` already, which serializes
every writer of the file. So each call is one compare-and-set:

* `acquire` takes the lease when it is free, expired, or already this
  holder's, and renews it when this holder still holds the epoch it knows;
  the epoch rises by one with every new term (another holder, or this holder
  after it lost track of its own term).
* `holds` is the fencing check: a leader's write transaction calls it first and
  aborts unless the row still names this holder *and* its epoch. The row stays
  locked until that transaction ends, so a contender cannot take the lease
  between the check and the commit; a deposed leader that wakes up from a
  pause finds a higher epoch and writes nothing.

Times are real unix seconds from the caller's clock; replicas' clocks are
expected to agree to well within a lease (NTP). A skewed clock can only make
two replicas *believe* they lead for a moment; fencing keeps their writes
exclusive all the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from computenet.store.schema import LeaderRow

CONTROL_LOOP = "control-loop"


@dataclass(frozen=True)
class Lease:
    """The lease row as read: who holds role `name`, in which epoch, since and until when."""

    name: str
    holder: str
    epoch: int
    acquired_real: float
    expires_real: float

    def held_by(self, holder: str, now: float) -> bool:
        """Whether `holder` holds this lease and it has not expired at `now`."""
        return self.holder == holder and now <= self.expires_real


def _lease(row: LeaderRow) -> Lease:
    return Lease(row.name, row.holder, int(row.epoch), row.acquired_real, row.expires_real)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for PostgreSQL's advisory locks, one per role."""
    digest = hashlib.sha256(f"computenet-leader:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _lock(s: Session, name: str) -> LeaderRow | None:
    """Lock role `name` for the rest of the transaction; its row, if any."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_key(name)})
    q = select(LeaderRow).where(LeaderRow.name == name).with_for_update()
    return s.scalars(q.execution_options(populate_existing=True)).first()


def acquire(
    s: Session,
    name: str,
    holder: str,
    now: float,
    lease_s: float,
    *,
    epoch: int | None = None,
    gone: Callable[[str], bool] | None = None,
) -> Lease:
    """Acquire or renew role `name` for `holder` until ``now + lease_s``; the row after.

    `epoch` is the epoch `holder` believes it holds (None if none): when the
    row still names `holder` with that epoch the lease is renewed in the same
    term. Otherwise the lease is taken (epoch + 1) when it is free, expired at
    `now`, already `holder`'s, or its holder is known to be `gone` (a dead
    process, see `server.leader`); else it is left to its live holder, and the
    returned `Lease` names that holder.
    """
    row = _lock(s, name)
    until = now + lease_s
    if row is None:
        row = LeaderRow(name=name, holder=holder, epoch=1, acquired_real=now, expires_real=until)
        s.add(row)
        s.flush()
        return _lease(row)
    if row.holder == holder and epoch is not None and row.epoch == epoch:
        row.expires_real = until
    elif row.holder == holder or row.expires_real < now or (gone is not None and gone(row.holder)):
        row.holder = holder
        row.epoch = int(row.epoch) + 1
        row.acquired_real = now
        row.expires_real = until
    s.flush()
    return _lease(row)


def holds(s: Session, name: str, holder: str, epoch: int) -> bool:
    """The fencing check: does `holder` still hold role `name` in `epoch`? (Locks the role.)"""
    row = _lock(s, name)
    return row is not None and row.holder == holder and int(row.epoch) == epoch


def release(s: Session, name: str, holder: str, epoch: int) -> bool:
    """Give up role `name` if `holder` holds it in `epoch`, so a successor need not wait."""
    row = _lock(s, name)
    if row is None or row.holder != holder or int(row.epoch) != epoch:
        return False
    row.expires_real = 0.0
    return True


def current(s: Session, name: str = CONTROL_LOOP) -> Lease | None:
    """The lease row of role `name` as it stands (no lock; for health and tests)."""
    row = s.get(LeaderRow, name, populate_existing=True)
    return None if row is None else _lease(row)
