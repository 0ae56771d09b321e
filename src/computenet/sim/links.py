"""Simulated links: transfers that share a link's bandwidth (max-min fair, fluid).

Each transfer follows the lowest-latency path of the link graph (the same
criterion as `network.PathTable`). While several transfers cross a link, they
split its bandwidth max-min fairly, so a transfer's time depends on what else
crosses its bottleneck. Rates are recomputed whenever a transfer starts or
ends; the owner schedules the next completion on its event heap.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from computenet.model import Network

_EPS_GBIT = 1e-9


@dataclass
class Transfer:
    """Data moving from `src` to `dst`: gigabits left, current rate, links crossed."""

    key: object
    src: str
    dst: str
    gbit_left: float
    links: tuple[int, ...]
    latency_s: float
    rate_gbps: float = 0.0
    started: float = 0.0
    gb: float = 0.0


@dataclass
class LinkModel:
    """The link graph as directed links with capacity, and the transfers on them."""

    network: Network
    capacity: list[float] = field(default_factory=list)
    _adj: dict[str, list[tuple[str, int, float]]] = field(default_factory=dict)
    _paths: dict[tuple[str, str], tuple[tuple[int, ...], float]] = field(default_factory=dict)
    active: dict[object, Transfer] = field(default_factory=dict)
    last_update: float = 0.0
    version: int = 0
    moved_gb: float = 0.0

    def __post_init__(self) -> None:
        for node in self.network.node_ids:
            self._adj.setdefault(node, [])
        for link in self.network.links:
            # Full duplex: each direction has the link's bandwidth.
            for a, b in ((link.a, link.b), (link.b, link.a)):
                self._adj[a].append((b, len(self.capacity), link.latency_ms / 1000.0))
                self.capacity.append(link.bandwidth_gbps)

    def path(self, src: str, dst: str) -> tuple[tuple[int, ...], float] | None:
        """Directed links and total latency of the lowest-latency path, None if unreachable."""
        key = (src, dst)
        hit = self._paths.get(key)
        if hit is not None:
            return hit
        if src == dst:
            return ((), 0.0)
        dist: dict[str, float] = {src: 0.0}
        prev: dict[str, tuple[str, int]] = {}
        heap = [(0.0, src)]
        while heap:
            d, u = heapq.heappop(heap)
            if u == dst:
                break
            if d > dist.get(u, float("inf")):
                continue
            for v, li, lat in self._adj.get(u, ()):
                nd = d + lat
                if nd < dist.get(v, float("inf")) - 1e-12:
                    dist[v] = nd
                    prev[v] = (u, li)
                    heapq.heappush(heap, (nd, v))
        if dst not in dist:
            return None
        links: list[int] = []
        node = dst
        while node != src:
            node, li = prev[node]
            links.append(li)
        out = (tuple(reversed(links)), dist[dst])
        self._paths[key] = out
        return out

    def advance(self, now: float) -> None:
        """Move every active transfer forward at its current rate up to `now`."""
        dt = now - self.last_update
        if dt > 0:
            for t in self.active.values():
                t.gbit_left = max(t.gbit_left - t.rate_gbps * dt, 0.0)
        self.last_update = now

    def start(self, key: object, src: str, dst: str, gb: float, now: float) -> Transfer | None:
        """Begin moving `gb` gigabytes; None when no path exists."""
        found = self.path(src, dst)
        if found is None:
            return None
        links, latency = found
        if not links:
            return Transfer(key, src, dst, 0.0, links, 0.0, started=now, gb=gb)
        self.advance(now)
        t = Transfer(key, src, dst, gb * 8.0, links, latency, started=now, gb=gb)
        self.active[key] = t
        self._rebalance()
        return t

    def cancel(self, key: object, now: float) -> None:
        """Stop a transfer (its center failed or the job was requeued)."""
        if key in self.active:
            self.advance(now)
            t = self.active.pop(key)
            self.moved_gb += (t.gb * 8.0 - t.gbit_left) / 8.0
            self._rebalance()

    def finish_due(self, now: float) -> list[Transfer]:
        """Transfers done by `now`, removed from the links."""
        self.advance(now)
        done = [t for t in self.active.values() if t.gbit_left <= _EPS_GBIT * max(1.0, t.gb)]
        for t in done:
            del self.active[t.key]
            self.moved_gb += t.gb
        if done:
            self._rebalance()
        return done

    def next_completion(self) -> float:
        """Virtual second at which the first active transfer finishes at current rates."""
        best = float("inf")
        for t in self.active.values():
            if t.rate_gbps > 0:
                best = min(best, self.last_update + t.gbit_left / t.rate_gbps)
        return best

    def _rebalance(self) -> None:
        """Max-min fair rates by progressive filling over the links in use."""
        self.version += 1
        unfixed = set(self.active)
        for t in self.active.values():
            t.rate_gbps = 0.0
        left: dict[int, float] = {}
        users: dict[int, set[object]] = {}
        for k in unfixed:
            for li in self.active[k].links:
                left.setdefault(li, self.capacity[li])
                users.setdefault(li, set()).add(k)
        while unfixed:
            li = min((li for li in users if users[li]), key=lambda x: left[x] / len(users[x]))
            share = left[li] / len(users[li])
            for k in list(users[li]):
                t = self.active[k]
                t.rate_gbps = share
                unfixed.discard(k)
                for lj in t.links:
                    left[lj] -= share
                    users[lj].discard(k)
