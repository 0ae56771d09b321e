"""A region's capacity as its parent sees it, the one rule for every caller.

A region joins its parent as one center (docs/federation.md); its pools are
rolled up from its own centers' pools here, for the network agent that
reports them and for the simulator that models two levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from computenet.protocol.center import PoolCapacity


def aggregate_capacity(
    centers: Iterable[tuple[bool, Iterable[tuple[str, int, int, int | None]]]],
    chips: Sequence[str] = (),
) -> list[PoolCapacity]:
    """A region's capacity as its parent sees it: per chip, total, free and `largest_free`.

    `centers` is, per center of the region, whether it is online and its pools
    as (chip, total, free, largest_free or None). The total counts every
    center (an offline one comes back); free chips and the largest shape count
    online centers only; a center that is itself a region says how much of
    its free is in one place (`largest_free`), so shapes nest. The network
    backend (`NetworkBackend.capacity`) reports it and the simulator's
    two-level mode (`sim/federation.py`) plans with it; chips listed in
    `chips` come first and are reported even when the region has none.
    """
    total: dict[str, int] = {}
    free: dict[str, int] = {}
    largest: dict[str, int] = {}
    for online, pools in centers:
        for chip, n_total, n_free, one in pools:
            total[chip] = total.get(chip, 0) + n_total
            if not online:
                continue
            free[chip] = free.get(chip, 0) + n_free
            one = n_free if one is None else one
            largest[chip] = max(largest.get(chip, 0), min(one, n_free))
    names = list(chips) or sorted(total)
    return [
        PoolCapacity(
            chip=c,
            total=total.get(c, 0),
            free=min(free.get(c, 0), total.get(c, 0)),
            largest_free=min(largest.get(c, 0), free.get(c, 0), total.get(c, 0)),
        )
        for c in names
    ]
