"""Generated networks of any size, for scale tests: the `china` mix spread over many centers."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from computenet.catalog import load_chips, load_throughput
from computenet.model import Center, Link, Network, Pool, Tariff, UserSite
from computenet.model.network import fiber_rtt_ms

# (chip, share of centers that have a pool of it)
_CHIP_MIX = (
    ("H800", 0.35),
    ("A100", 0.35),
    ("H20", 0.25),
    ("Ascend-910B", 0.3),
    ("H200", 0.08),
    ("MLU370-X8", 0.08),
    ("Hygon-DCU", 0.08),
    ("CPU-node", 0.6),
)
_HUBS = (
    ("zhangjiakou", 40.8, 114.9, "east"),
    ("yrd", 31.0, 120.9, "east"),
    ("wuhu", 31.3, 118.4, "east"),
    ("shaoguan", 24.8, 113.6, "east"),
    ("tianfu", 30.4, 104.1, "east"),
    ("chongqing", 29.6, 106.5, "east"),
    ("guian", 26.4, 106.4, "west"),
    ("horinger", 40.4, 111.8, "west"),
    ("qingyang", 35.7, 107.6, "west"),
    ("zhongwei", 37.5, 105.2, "west"),
)


def generated_network(centers: int = 1000, seed: int = 0, bandwidth_gbps: float = 100.0) -> Network:
    """`centers` centers around the ten national hubs, each linked to its hub; hubs in a mesh.

    Pools, PUE, tariffs (east 0.6–0.9, west 0.3–0.45 ¥/kWh flat with the usual
    time-of-use shape), carbon and service prices are drawn from `seed` in the
    ranges of the `china` network.
    """
    rng = np.random.default_rng(seed)
    chips = load_chips()
    out: list[Center] = []
    links: list[Link] = []
    hub_of: list[int] = []
    for i in range(centers):
        h = i % len(_HUBS)
        _, lat, lon, region = _HUBS[h]
        lat = float(np.clip(lat + rng.normal(0, 1.5), -89, 89))
        lon = float(lon + rng.normal(0, 1.5))
        pools = []
        for chip, share in _CHIP_MIX:
            if rng.random() < share:
                pools.append(Pool(chip=chip, count=int(rng.choice([64, 128, 256, 512]))))
        if not pools:
            pools.append(Pool(chip="A100", count=128))
        west = region == "west"
        flat = rng.uniform(0.30, 0.45) if west else rng.uniform(0.60, 0.90)
        out.append(
            Center(
                id=f"c{i:04d}-{_HUBS[h][0]}",
                name=f"Center {i}",
                hub=_HUBS[h][0],
                region=region,
                lat=lat,
                lon=lon,
                pools=tuple(pools),
                pue=round(float(rng.uniform(1.1, 1.3)), 2),
                tariff=Tariff.time_of_use(round(flat, 3)),
                carbon_kg_per_kwh=round(float(rng.uniform(0.3, 0.85)), 2),
                service_price_per_cuh=Decimal(str(round(float(rng.uniform(1.6, 2.8)), 2))),
                tags=(f"region:{region}",),
            )
        )
        hub_of.append(h)
    # The first center of each hub is its gateway; the others hang off it.
    gateway = {h: i for i, h in reversed(list(enumerate(hub_of)))}
    coords = [(c.lat, c.lon) for c in out]
    for i, h in enumerate(hub_of):
        g = gateway[h]
        if g != i:
            links.append(_link(out[i].id, out[g].id, coords[i], coords[g], bandwidth_gbps))
    gws = sorted(gateway.values())
    for k, a in enumerate(gws):
        for b in gws[k + 1 :]:
            links.append(_link(out[a].id, out[b].id, coords[a], coords[b], bandwidth_gbps * 4))
    sites = (
        UserSite(id="beijing", lat=39.9, lon=116.4),
        UserSite(id="shanghai", lat=31.2, lon=121.5),
        UserSite(id="guangzhou", lat=23.1, lon=113.3),
        UserSite(id="chengdu", lat=30.7, lon=104.1),
    )
    for s in sites:
        for g in gws:
            links.append(_link(s.id, out[g].id, (s.lat, s.lon), coords[g], bandwidth_gbps))
    return Network(
        name=f"generated-{centers}",
        chips=dict(chips),
        throughput=load_throughput(),
        centers=tuple(out),
        sites=sites,
        links=tuple(links),
    )


def _link(a: str, b: str, pa: tuple[float, float], pb: tuple[float, float], bw: float) -> Link:
    return Link(
        a=a,
        b=b,
        bandwidth_gbps=bw,
        latency_ms=round(max(fiber_rtt_ms(pa, pb) / 2, 0.5), 2),
        price_per_gb=Decimal("0.03"),
    )
