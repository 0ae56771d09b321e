"""Simulated links: transfers that share a link's bandwidth (max-min fair, fluid).

Each transfer follows the lowest-latency path of the link graph (the same
criterion as `network.PathTable`). While several transfers cross a link they
split its bandwidth max-min fairly, so a transfer's time depends on what else
crosses its bottleneck. When a transfer starts or ends, only the transfers
that share a link with it, directly or through others, get new rates; each
transfer's predicted finish sits in a heap, so the next completion is cheap.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from computenet.model import Network

_EPS_GBIT = 1e-6


@dataclass
class Transfer:
    """Data moving from `src` to `dst`: gigabits left (as of `updated`), rate, links crossed."""

    key: object
    src: str
    dst: str
    gbit_left: float
    links: tuple[int, ...]
    latency_s: float
    rate_gbps: float = 0.0
    started: float = 0.0
    updated: float = 0.0
    gb: float = 0.0
    version: int = 0

    def left_at(self, now: float) -> float:
        """Gigabits still to move at `now` at the current rate."""
        return max(self.gbit_left - self.rate_gbps * (now - self.updated), 0.0)


@dataclass
class LinkModel:
    """The link graph as directed links with capacity, and the transfers on them."""

    network: Network
    capacity: list[float] = field(default_factory=list)
    active: dict[object, Transfer] = field(default_factory=dict)
    version: int = 0
    moved_gb: float = 0.0
    _adj: dict[str, list[tuple[str, int, float]]] = field(default_factory=dict)
    _paths: dict[tuple[str, str], tuple[tuple[int, ...], float] | None] = field(
        default_factory=dict
    )
    _users: dict[int, set[object]] = field(default_factory=dict)
    # link → how many of its transfers cross other links too (0: its transfers split it
    # evenly, known without looking at each of them)
    _multi: dict[int, int] = field(default_factory=dict)
    _trees: dict[str, tuple[dict[str, float], dict[str, tuple[str, int]]]] = field(
        default_factory=dict
    )
    _heap: list[tuple[float, int, object, int]] = field(default_factory=list)
    _seq: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

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
        if key in self._paths:
            return self._paths[key]
        if src == dst:
            out: tuple[tuple[int, ...], float] | None = ((), 0.0)
        else:
            tree = self._trees.get(src)
            if tree is None:
                tree = self._trees[src] = self._dijkstra(src)
            dist, prev = tree
            if dst not in dist:
                out = None
            else:
                links: list[int] = []
                node = dst
                while node != src:
                    node, li = prev[node]
                    links.append(li)
                out = (tuple(reversed(links)), dist[dst])
        self._paths[key] = out
        return out

    def _dijkstra(self, src: str) -> tuple[dict[str, float], dict[str, tuple[str, int]]]:
        """Lowest-latency distances and predecessors from `src` to every node."""
        dist: dict[str, float] = {src: 0.0}
        prev: dict[str, tuple[str, int]] = {}
        heap = [(0.0, src)]
        while heap:
            d, u = heapq.heappop(heap)
            if d > dist.get(u, float("inf")):
                continue
            for v, li, lat in self._adj.get(u, ()):
                nd = d + lat
                if nd < dist.get(v, float("inf")) - 1e-12:
                    dist[v] = nd
                    prev[v] = (u, li)
                    heapq.heappush(heap, (nd, v))
        return dist, prev

    def start(self, key: object, src: str, dst: str, gb: float, now: float) -> Transfer | None:
        """Begin moving `gb` gigabytes; None when no path exists (no links: nothing to share)."""
        found = self.path(src, dst)
        if found is None:
            return None
        links, latency = found
        t = Transfer(key, src, dst, gb * 8.0, links, latency, started=now, updated=now, gb=gb)
        if not links:
            return t
        self.active[key] = t
        multi = len(links) > 1
        for li in links:
            users = self._users.setdefault(li, set())
            if multi and key not in users:
                self._multi[li] = self._multi.get(li, 0) + 1
            users.add(key)
        self._rebalance(links, now)
        return t

    def cancel(self, key: object, now: float) -> float:
        """Stop a transfer (its center failed, or the run ended); returns the GB it had moved."""
        t = self.active.pop(key, None)
        if t is None:
            return 0.0
        moved = (t.gb * 8.0 - t.left_at(now)) / 8.0
        self.moved_gb += moved
        self._detach(t)
        self._rebalance(t.links, now)
        return moved

    def finish_due(self, now: float) -> list[Transfer]:
        """Transfers done by `now`, removed from the links."""
        done: list[Transfer] = []
        heap = self._heap
        while heap and heap[0][0] <= now + 1e-9:
            _, _, key, version = heapq.heappop(heap)
            t = self.active.get(key)
            if t is None or t.version != version:
                continue
            if t.left_at(now) > _EPS_GBIT * max(1.0, t.gb):
                continue
            del self.active[key]
            self._detach(t)
            self.moved_gb += t.gb
            done.append(t)
        touched = {li for t in done for li in t.links}
        if touched:
            self._rebalance(tuple(touched), now)
        return done

    def next_completion(self) -> float:
        """Virtual second at which the first active transfer finishes at current rates."""
        heap = self._heap
        while heap:
            _, _, key, version = heap[0]
            t = self.active.get(key)
            if t is not None and t.version == version:
                return heap[0][0]
            heapq.heappop(heap)
        return float("inf")

    def _detach(self, t: Transfer) -> None:
        for li in t.links:
            users = self._users.get(li)
            if users is not None:
                if len(t.links) > 1 and t.key in users:
                    self._multi[li] -= 1
                users.discard(t.key)
                if not users:
                    del self._users[li]

    def _rebalance(self, seeds: tuple[int, ...], now: float) -> None:
        """New max-min fair rates for the transfers connected to links `seeds`."""
        self.version += 1
        if len(seeds) == 1:
            # The common case: one link whose transfers cross only it; they split it evenly.
            sharing = self._users.get(seeds[0])
            if not sharing:
                return
            if not self._multi.get(seeds[0]):
                share = self.capacity[seeds[0]] / len(sharing)
                self._set_rates(dict.fromkeys(sharing, share), now)
                return
        # The component: links and transfers reachable through shared links.
        links: set[int] = set()
        keys: set[object] = set()
        stack = [li for li in seeds if li in self._users]
        while stack:
            li = stack.pop()
            if li in links:
                continue
            links.add(li)
            for k in self._users.get(li, ()):
                if k not in keys:
                    keys.add(k)
                    stack.extend(x for x in self.active[k].links if x not in links)
        if not keys:
            return
        left = {li: self.capacity[li] for li in links}
        users = {li: set(self._users[li]) for li in links}
        rates: dict[object, float] = {}
        unfixed = set(keys)
        while unfixed:
            li = min((x for x in users if users[x]), key=lambda x: left[x] / len(users[x]))
            share = left[li] / len(users[li])
            for k in list(users[li]):
                rates[k] = share
                unfixed.discard(k)
                for lj in self.active[k].links:
                    left[lj] -= share
                    users[lj].discard(k)
        self._set_rates(rates, now)

    def _set_rates(self, rates: dict[object, float], now: float) -> None:
        for k, rate in rates.items():
            t = self.active[k]
            if rate == t.rate_gbps and t.version:
                continue
            t.gbit_left = t.left_at(now)
            t.updated = now
            t.rate_gbps = rate
            t.version += 1
            finish = now + (t.gbit_left / rate if rate > 0 else float("inf"))
            heapq.heappush(self._heap, (finish, next(self._seq), k, t.version))
