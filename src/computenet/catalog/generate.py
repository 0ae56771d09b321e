"""Generated networks of any size, for benchmarks and what-if studies at scale."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from computenet.catalog.loader import network_from_dict
from computenet.model import Network

# Chip mixes a generated center draws from (weights of the built-in catalog chips).
_EAST_CHIPS = ("H800", "A100", "H20", "Ascend-910B", "CPU-node")
_WEST_CHIPS = ("H800", "H200", "Ascend-910B", "H20", "CPU-node")


def generate_network(
    n_centers: int, seed: int = 0, *, sites: int = 4, bandwidth_gbps: float = 10.0
) -> Network:
    """A network of `n_centers` centers spread over China's east and west, deterministic in `seed`.

    Links: each center to its 3 nearest neighbours and to a backbone of
    every 10th center, so paths exist without a full mesh (1,000 centers
    would otherwise need half a million links).
    """
    rng = random.Random(seed)
    centers: list[dict[str, Any]] = []
    for i in range(n_centers):
        west = rng.random() < 0.45
        lat = rng.uniform(25, 41) if not west else rng.uniform(26, 41)
        lon = rng.uniform(108, 122) if not west else rng.uniform(98, 112)
        chips = _WEST_CHIPS if west else _EAST_CHIPS
        pools = [
            {"chip": c, "count": rng.choice((64, 128, 256, 512))}
            for c in rng.sample(chips, k=rng.randint(1, 3))
        ]
        flat = rng.uniform(0.30, 0.45) if west else rng.uniform(0.60, 0.90)
        centers.append(
            {
                "id": f"c{i:04d}",
                "name": f"center {i}",
                "region": "west" if west else "east",
                "lat": round(lat, 3),
                "lon": round(lon, 3),
                "pools": pools,
                "pue": round(rng.uniform(1.12, 1.25) if west else rng.uniform(1.2, 1.4), 2),
                "tariff": {"flat": round(flat, 3)},
                "carbon_kg_per_kwh": round(rng.uniform(0.3, 0.85), 2),
                "service_price_per_cuh": round(rng.uniform(1.5, 3.0), 2),
                "tags": ["region:west" if west else "region:east"],
            }
        )
    site_list = [
        {"id": "beijing", "lat": 39.9, "lon": 116.4},
        {"id": "shanghai", "lat": 31.2, "lon": 121.5},
        {"id": "guangzhou", "lat": 23.1, "lon": 113.3},
        {"id": "chengdu", "lat": 30.7, "lon": 104.1},
    ][:sites]
    links: list[dict[str, Any]] = []
    seen: set[frozenset[str]] = set()

    def link(a: dict[str, Any], b: dict[str, Any]) -> None:
        key = frozenset((a["id"], b["id"]))
        if a["id"] == b["id"] or key in seen:
            return
        seen.add(key)
        km = ((a["lat"] - b["lat"]) ** 2 + (a["lon"] - b["lon"]) ** 2) ** 0.5 * 100
        links.append(
            {
                "a": a["id"],
                "b": b["id"],
                "bandwidth_gbps": bandwidth_gbps,
                "latency_ms": round(max(km * 1.2 * 0.005, 0.5), 2),
                "price_per_gb": str(Decimal("0.03")),
            }
        )

    nodes = centers + site_list
    backbone = nodes[::10] + site_list
    for a in nodes:
        near = sorted(nodes, key=lambda b: (a["lat"] - b["lat"]) ** 2 + (a["lon"] - b["lon"]) ** 2)
        for b in near[1:4]:
            link(a, b)
    for i, a in enumerate(backbone):
        for b in backbone[i + 1 :]:
            link(a, b)
    return network_from_dict(
        {"name": f"generated-{n_centers}", "centers": centers, "sites": site_list, "links": links}
    )
