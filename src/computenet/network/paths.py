"""All-pairs paths over the link graph: lowest latency, its bottleneck bandwidth and price."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from computenet.model import Network


@dataclass(frozen=True)
class PathTable:
    """Latency (s), bottleneck bandwidth (Gbps) and price (¥/GB) for every node pair.

    Paths minimize latency (Floyd–Warshall, vectorized over numpy); bandwidth is
    the narrowest link on the chosen path and price the sum of link prices.
    Unreachable pairs have infinite latency and zero bandwidth.
    """

    nodes: tuple[str, ...]
    latency_s: np.ndarray
    bandwidth_gbps: np.ndarray
    price_per_gb: np.ndarray

    @classmethod
    def build(cls, net: Network) -> PathTable:
        """Compute the table for `net`'s links."""
        nodes = tuple(net.node_ids)
        idx = {n: i for i, n in enumerate(nodes)}
        n = len(nodes)
        lat = np.full((n, n), np.inf)
        bw = np.zeros((n, n))
        price = np.full((n, n), np.inf)
        np.fill_diagonal(lat, 0.0)
        np.fill_diagonal(bw, np.inf)
        np.fill_diagonal(price, 0.0)
        for link in net.links:
            i, j = idx[link.a], idx[link.b]
            s = link.latency_ms / 1000.0
            if s < lat[i, j] or (s == lat[i, j] and link.bandwidth_gbps > bw[i, j]):
                for a, b in ((i, j), (j, i)):
                    lat[a, b] = s
                    bw[a, b] = link.bandwidth_gbps
                    price[a, b] = float(link.price_per_gb)
        for k in range(n):
            via = lat[:, k : k + 1] + lat[k : k + 1, :]
            better = via < lat - 1e-12
            if better.any():
                lat = np.where(better, via, lat)
                bw = np.where(better, np.minimum(bw[:, k : k + 1], bw[k : k + 1, :]), bw)
                price = np.where(better, price[:, k : k + 1] + price[k : k + 1, :], price)
        return cls(nodes=nodes, latency_s=lat, bandwidth_gbps=bw, price_per_gb=price)

    def index(self, node: str) -> int:
        """Row/column of `node`."""
        return self.nodes.index(node)

    def transfer_s(self, src: str, dst: str, gigabytes: float) -> float:
        """Seconds to move `gigabytes` from `src` to `dst` (inf when unreachable)."""
        i, j = self.index(src), self.index(dst)
        return transfer_seconds(
            gigabytes, float(self.latency_s[i, j]), float(self.bandwidth_gbps[i, j])
        )

    def price(self, src: str, dst: str) -> Decimal:
        """¥ per GB from `src` to `dst`, exact to the fen-hundredth."""
        return Decimal(repr(float(self.price_per_gb[self.index(src), self.index(dst)]))).quantize(
            Decimal("0.0001")
        )


def transfer_seconds(gigabytes: float, latency_s: float, bandwidth_gbps: float) -> float:
    """Time to move data: one latency plus size over the bottleneck bandwidth."""
    if gigabytes <= 0:
        return 0.0
    if bandwidth_gbps <= 0:
        return float("inf")
    if bandwidth_gbps == float("inf"):
        return 0.0
    return latency_s + gigabytes * 8.0 / bandwidth_gbps
