"""The network's capacity calendar, kept incrementally, and the snapshots cut from it.

The server builds each cycle's snapshot with `build_snapshot` from the
reservations of scheduled and running jobs. Rebuilding that from tens of
thousands of reservations every simulated cycle would dominate a long run, so
the simulator keeps the same reservations as a per-pool, per-absolute-hour
array of reserved chips and cuts the 48-slot window out of it. The result is
the same `Snapshot` that `build_snapshot` returns for the same reservations
and agent reports (tests/unit/sim/test_calendar.py checks this).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from computenet.errors import ValidationError
from computenet.model import Dataset, Network
from computenet.scheduler import HORIZON_SLOTS, OVERRUN_HOLD, Snapshot
from computenet.scheduler.index import NetworkIndex, network_index
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H
from computenet.sim.engine import Environment

_GROW = 24 * 14
# Like the server's snapshot, the calendar keeps an overrunning job's chips held
# until at least now + OVERRUN_HOLD (computenet.scheduler.snapshot).
OVERRUN_HOLD_S = OVERRUN_HOLD.total_seconds()


@dataclass
class _Res:
    pool: int
    count: int
    start: float
    end: float
    h0: int
    h1: int


class CapacityCalendar:
    """Reserved chips per pool per hour since the epoch; reservations by id."""

    def __init__(
        self, network: Network, env: Environment, patience_h: float = DEFAULT_PATIENCE_H
    ) -> None:
        if env.epoch.minute or env.epoch.second or env.epoch.microsecond:
            raise ValidationError("the simulation epoch must be on a full hour", field="epoch")
        self.network = network
        self.env = env
        self.patience_h = patience_h  # the operator's, carried by every snapshot
        self.index: NetworkIndex = network_index(network)
        n = self.index.n_pools
        self.total = self.index.pool_total.astype(np.int64)
        self.busy = np.zeros((n, _GROW), dtype=np.int64)
        self._res: dict[object, _Res] = {}
        # Reservations by their last (partial) hour: one whose end has passed is held by the
        # server until now + OVERRUN_HOLD_S, which may reach into the next slot.
        self._ending: dict[int, set[object]] = {}
        self._overdue: set[object] = set()
        self._checked_until = 0

    def _ensure(self, hour: int) -> None:
        if hour >= self.busy.shape[1]:
            extra = max(_GROW, hour + 1 - self.busy.shape[1] + HORIZON_SLOTS)
            self.busy = np.concatenate(
                [self.busy, np.zeros((self.busy.shape[0], extra), dtype=np.int64)], axis=1
            )

    def reserve(self, key: object, pool: int, count: int, start: float, end: float) -> None:
        """Hold `count` chips of `pool` from `start` to `end` (virtual s) under `key`."""
        self.release(key)
        # Placements are instants to the microsecond; so are these.
        start, end = round(start, 6), round(end, 6)
        if end <= start:
            return
        h0 = max(math.floor(start / 3600.0), 0)
        h1 = max(math.ceil(end / 3600.0), h0 + 1)
        self._ensure(h1 + HORIZON_SLOTS)
        self.busy[pool, h0:h1] += count
        self._res[key] = _Res(pool, count, start, end, h0, h1)
        self._ending.setdefault(h1 - 1, set()).add(key)
        if h1 - 1 < self._checked_until:
            self._overdue.add(key)

    def release(self, key: object) -> None:
        """Drop the reservation under `key`, if any (idempotent)."""
        r = self._res.pop(key, None)
        if r is None:
            return
        self.busy[r.pool, r.h0 : r.h1] -= r.count
        self._overdue.discard(key)
        bucket = self._ending.get(r.h1 - 1)
        if bucket is not None:
            bucket.discard(key)
            if not bucket:
                del self._ending[r.h1 - 1]

    def reservations(self) -> list[tuple[object, int, int, float, float]]:
        """Every reservation held: (key, pool, chips, start s, end s)."""
        return [(k, r.pool, r.count, r.start, r.end) for k, r in self._res.items()]

    def has(self, key: object) -> bool:
        """Whether a reservation is held under `key`."""
        return key in self._res

    def __len__(self) -> int:
        return len(self._res)

    def free_window(self, now: float) -> np.ndarray:
        """Free chips per pool for the 48 slots of a snapshot taken at `now`."""
        now = round(now, 6)
        h = math.floor(now / 3600.0)
        self._ensure(h + HORIZON_SLOTS)
        free = self.total[:, None] - self.busy[:, h : h + HORIZON_SLOTS]
        # Reservations that ended before this hour but are still held (their job overran).
        for b in range(self._checked_until, h):
            self._overdue.update(self._ending.get(b, ()))
        self._checked_until = max(self._checked_until, h)
        hold = now + OVERRUN_HOLD_S
        crosses = hold > (h + 1) * 3600.0
        for key in self._overdue:
            r = self._res[key]
            free[r.pool, 0] -= r.count
            if crosses:
                free[r.pool, 1] -= r.count
        if crosses:
            # Ending in this hour, within the hold: the server keeps them into the next.
            for key in self._ending.get(h, ()):
                r = self._res[key]
                if r.end <= hold:
                    free[r.pool, 1] -= r.count
        return free

    def snapshot(
        self,
        now: float,
        *,
        online: np.ndarray,
        datasets: Mapping[str, Dataset],
        reported_free: np.ndarray | None = None,
    ) -> Snapshot:
        """The snapshot `build_snapshot` would give for these reservations at `now`.

        `reported_free[p]` caps slot 0 the way agents' heartbeats do on the server.
        """
        free = self.free_window(now)
        if reported_free is not None:
            np.minimum(free[:, 0], reported_free, out=free[:, 0])
        np.maximum(free, 0, out=free)
        return Snapshot(
            network=self.network,
            now=self.env.datetime(now),
            index=self.index,
            free=free,
            online=online.copy(),
            datasets=datasets,
            patience_h=self.patience_h,
        )
