"""Per-network arrays the scheduler's hot path works on, computed once per network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from computenet.metering.cost import cumulative_tariff
from computenet.model import Network
from computenet.network import PathTable


@dataclass(frozen=True, eq=False)
class NetworkIndex:
    """Flat numpy views of a network: one row per (center, chip) pool.

    `cum_tariff[p, h]` is the ¥/kW paid from local midnight to hour h (h = 0..24),
    so the energy price of any interval is a difference of two lookups.
    """

    network: Network
    pool_center: np.ndarray  # [P] center index
    pool_chip: tuple[str, ...]
    pool_of: dict[tuple[str, str], int]
    pool_total: np.ndarray  # [P]
    memory_gb: np.ndarray  # [P]
    tdp_kw: np.ndarray  # [P]
    pue: np.ndarray  # [P]
    carbon: np.ndarray  # [P] kg/kWh
    service: np.ndarray  # [P] ¥/CU·h
    tariff: np.ndarray  # [P, 24] ¥/kWh
    cum_tariff: np.ndarray  # [P, 25]
    cum_flat: np.ndarray  # [P × 25] `cum_tariff` flattened (the kernel's view of it)
    tariff_min: np.ndarray  # [P] the cheapest hour's ¥/kWh
    stack: tuple[str, ...]
    pflops: dict[str, np.ndarray]  # class → [P] delivered PFLOPS per chip (0 = cannot run)
    center_tags: tuple[frozenset[str], ...]
    center_node: np.ndarray  # [C] row of each center in `paths`
    paths: PathTable
    tariff_change_hours: tuple[int, ...]  # local hours at which some pool's price drops
    # Capacity-independent results (filter masks, input transfer estimates) that
    # stay valid as long as the network does; see scheduler/framework.py.
    memo: dict[object, Any] = field(default_factory=dict, repr=False)

    @property
    def n_pools(self) -> int:
        """Number of pools."""
        return len(self.pool_chip)


_CACHE: dict[int, NetworkIndex] = {}


def network_index(net: Network) -> NetworkIndex:
    """The index of `net`, cached by identity (networks are immutable)."""
    hit = _CACHE.get(id(net))
    if hit is not None and hit.network is net:
        return hit
    if len(_CACHE) > 16:
        _CACHE.clear()
    _CACHE[id(net)] = built = _build(net)
    return built


def _build(net: Network) -> NetworkIndex:
    rows: list[tuple[int, str, int]] = []
    for ci, c in enumerate(net.centers):
        for p in c.pools:
            rows.append((ci, p.chip, p.count))
    chips = net.chips
    pool_center = np.array([r[0] for r in rows], dtype=np.int64)
    pool_chip = tuple(r[1] for r in rows)
    centers = net.centers
    tariff = np.array(
        [[float(x) for x in centers[r[0]].tariff.hourly] for r in rows], dtype=np.float64
    )
    cum = cumulative_tariff(tariff)
    # Starting just as a cheaper period begins dominates starting inside it for
    # the jobs that shifting helps, so only price drops are candidate starts.
    changes = sorted({h for h in range(24) if np.any(tariff[:, h] < tariff[:, (h - 1) % 24])})
    paths = PathTable.build(net)
    node_row = {n: i for i, n in enumerate(paths.nodes)}
    return NetworkIndex(
        network=net,
        pool_center=pool_center,
        pool_chip=pool_chip,
        pool_of={(centers[r[0]].id, r[1]): i for i, r in enumerate(rows)},
        pool_total=np.array([r[2] for r in rows], dtype=np.int64),
        memory_gb=np.array([chips[r[1]].memory_gb for r in rows]),
        tdp_kw=np.array([chips[r[1]].tdp_w / 1000.0 for r in rows]),
        pue=np.array([centers[r[0]].pue for r in rows]),
        carbon=np.array([centers[r[0]].carbon_kg_per_kwh for r in rows]),
        service=np.array([float(centers[r[0]].service_price_per_cuh) for r in rows]),
        tariff=tariff,
        cum_tariff=cum,
        cum_flat=np.ascontiguousarray(cum).ravel(),
        tariff_min=tariff.min(axis=1),
        stack=tuple(chips[r[1]].stack.value for r in rows),
        pflops={
            cls: np.array([net.throughput.delivered_pflops(cls, chips[r[1]]) for r in rows])
            for cls in net.throughput.efficiency
        },
        center_tags=tuple(frozenset(c.tags) for c in centers),
        center_node=np.array([node_row[c.id] for c in centers], dtype=np.int64),
        paths=paths,
        tariff_change_hours=tuple(changes),
    )
