"""Two-level scheduling in the simulator: the price of hierarchy, measured (issue 9, item 9).

A national plane schedules over regions, and each region over its own
centers (docs/federation.md). The simulator runs that with the production
scheduler at both levels and compares it with one flat plane over every
center, on the same workload:

- **Regions** come from a small YAML file (region name → its center ids) or,
  by default, from the network's hubs (`Center.hub`), merged into fewer
  groups by geography when fewer regions are asked for (`hub_regions`).
- **The national level** sees each region as one center: per chip type its
  chips summed over the region's centers, and free *now* no more than
  `largest_free`, the most free chips in one online center — the rule of the
  network backend (`protocol/capacity.py` `aggregate_capacity`, the one
  place it is written for both) and of the server's snapshot (`min(free, largest_free)`).
- **How a region's price reaches the national level** is the design question,
  and there are three (`PRICING`):

  * ``declared``: the national plane prices a region from a declaration, as
    it prices any center — one tariff, PUE, service price and carbon (the
    chip-weighted mean of its centers), its links the best between the two
    regions' centers — and runs its own scheduler policy over that network
    of regions. This is what the parent's scheduler does today (docs/federation.md).
  * ``declared-per-chip``: the same, but a region declares one price per chip
    type (the mean over the centers that have the chip): what a rate card
    per chip type (`PoolCapacity.quote_cny_per_cuh`) could tell a scheduler.
  * ``quoted`` (the default; the market the issue asks for): every region
    quotes each job from its own calendar with the scheduler's own
    evaluation (`framework.evaluate`, as `POST /api/v1/quote` does, its best
    option scored among its own options as `framework.place` scores them),
    holding what it quoted for the cycle; the national plane picks the best
    quote by the job's scoring profile and keeps the winner's hold. A job no
    region can promise goes to the region whose untouched calendar holds it
    best: that region's own strategy may still fit it.

- **The region** then schedules the jobs the national level gave it with its
  own instance of the flat run's scheduler policy (`SchedulerPolicy`: the
  same strategy and profile, through `schedule_cycle`) over its own centers
  only: the snapshot with every other center marked offline, which the
  scheduler's `online` filter excludes. What a region leaves unplaced this
  cycle (no room, or its strategy decides it later) goes back up and is
  offered again next cycle (overflow up).

Nothing of the scheduler is forked: both levels run `schedule_cycle` (through
the simulator's `SchedulerPolicy`), `evaluate` and the scoring profiles.
With one region holding every center the two-level run equals the flat one
exactly (tests/unit/sim/test_federation.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from computenet.errors import ValidationError
from computenet.model import Center, Dataset, Link, Network, Pool, Tariff
from computenet.model.network import great_circle_km
from computenet.protocol.capacity import aggregate_capacity
from computenet.scheduler import (
    HORIZON_SLOTS,
    Decision,
    JobRequest,
    Snapshot,
    order_key,
)
from computenet.scheduler.framework import MAX_POOLS_CHECKED, Options, evaluate
from computenet.scheduler.index import network_index
from computenet.scheduler.plugins import PROFILES, Profile
from computenet.sim.metrics import PolicyMetrics, summarize
from computenet.sim.policies import SchedulerPolicy, make_policy
from computenet.sim.results import SimConfig
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload

PRICING = ("quoted", "declared", "declared-per-chip")


# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Regions:
    """A partition of a network's centers into named regions (each center in exactly one)."""

    names: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]  # center ids per region, in the network's order

    def __len__(self) -> int:
        return len(self.names)

    def of(self) -> dict[str, int]:
        """Center id → its region's index."""
        return {c: r for r, ms in enumerate(self.members) for c in ms}

    def as_dict(self) -> dict[str, list[str]]:
        """Region name → its center ids (the file format)."""
        return {n: list(m) for n, m in zip(self.names, self.members, strict=True)}


def make_regions(network: Network, groups: Mapping[str, Sequence[str]], where: str) -> Regions:
    """Check `groups` (region → center ids) against `network`: every center exactly once."""
    known = [c.id for c in network.centers]
    seen: dict[str, str] = {}
    if not groups:
        raise ValidationError("no region given", field=where, hint="e.g. gba: [shaoguan]")
    for name, ids in groups.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValidationError(f"region name {name!r} is not a word", field=where)
        if isinstance(ids, str) or not isinstance(ids, Sequence) or not ids:
            raise ValidationError(
                f"region '{name}' needs a list of center ids",
                field=f"{where}.{name}",
                hint=f"e.g. {name}: [{known[0]}]",
            )
        for c in ids:
            if c not in known:
                raise ValidationError(
                    f"unknown center '{c}' in region '{name}'",
                    field=f"{where}.{name}",
                    hint="centers of " + network.name + ": " + ", ".join(known),
                )
            if c in seen:
                raise ValidationError(
                    f"center '{c}' is in regions '{seen[c]}' and '{name}'",
                    field=f"{where}.{name}",
                    hint="each center belongs to one region",
                )
            seen[c] = name
    missing = [c for c in known if c not in seen]
    if missing:
        raise ValidationError(
            f"centers in no region: {', '.join(missing)}",
            field=where,
            hint="list every center of the network in one region",
        )
    names = tuple(groups)
    members = tuple(tuple(c for c in known if seen[c] == n) for n in names)
    return Regions(names, members)


def load_regions(network: Network, path: Path) -> Regions:
    """Regions from a YAML file: a mapping region name → list of center ids."""
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}", field="--regions") from exc
    except yaml.YAMLError as exc:
        raise ValidationError(f"{path} is not YAML: {exc}", field="--regions") from exc
    if not isinstance(raw, dict):
        raise ValidationError(
            f"{path} must map region names to lists of center ids",
            field="--regions",
            hint="e.g.\\n  gba: [shaoguan]\\n  west: [guian, zhongwei]",
        )
    return make_regions(network, {str(k): v for k, v in raw.items()}, "--regions")


def hub_regions(network: Network, count: int | None = None) -> Regions:
    """The network's hubs as regions, merged into `count` groups (None: one per hub).

    Hubs are merged closest first (the distance between the mean positions of
    their centers, ties by name): a deterministic, geographic grouping, so
    that 2 regions on `china` are north and south rather than arbitrary.
    A center without a hub is a region of its own.
    """
    hubs: dict[str, list[Center]] = {}
    for c in network.centers:
        hubs.setdefault(c.hub or c.id, []).append(c)
    groups: list[tuple[str, list[Center]]] = [(h, cs) for h, cs in hubs.items()]
    if count is None:
        count = len(groups)
    if not 1 <= count <= len(groups):
        raise ValidationError(
            f"{count} regions asked of {len(groups)} hubs",
            field="--counts",
            hint=f"between 1 and {len(groups)} (all) on {network.name}",
        )

    def pos(cs: list[Center]) -> tuple[float, float]:
        return (sum(c.lat for c in cs) / len(cs), sum(c.lon for c in cs) / len(cs))

    while len(groups) > count:
        best: tuple[float, str, int, int] | None = None
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                d = great_circle_km(pos(groups[i][1]), pos(groups[j][1]))
                key = (round(d, 6), groups[i][0] + "|" + groups[j][0], i, j)
                if best is None or key < best:
                    best = key
        assert best is not None
        _, _, i, j = best
        merged = (f"{groups[i][0]} + {groups[j][0]}", groups[i][1] + groups[j][1])
        groups = [g for k, g in enumerate(groups) if k not in (i, j)] + [merged]
    if count == 1:
        groups = [("all", groups[0][1])]
    return make_regions(network, {n: [c.id for c in cs] for n, cs in groups}, "regions")


# --------------------------------------------------------------------------- national view


def _mean_decimal(values: Sequence[Decimal], weights: Sequence[int]) -> Decimal:
    w = sum(weights)
    return (sum((v * n for v, n in zip(values, weights, strict=True)), Decimal(0)) / w).quantize(
        Decimal("0.0001")
    )


def declared_network(network: Network, regions: Regions, per_chip: bool = False) -> Network:
    """The network of regions the national plane declares: each region one center.

    A region's pools are its chips summed per type; its tariff, PUE, carbon and
    service price the chip-weighted means of its centers (what one declaration
    can say); its tags the union of its centers' (a residency it can hold
    somewhere); each link between two regions (or a region and a user site) the
    best of the links between their members. With `per_chip` a region declares
    one center per chip type instead (`region-R-K`), each priced as the mean of
    the centers that have that chip, weighted by how many they have: a price per
    chip type, as a rate card gives it.
    """
    by_id = {c.id: c for c in network.centers}
    centers = []
    ids_of: list[list[str]] = []  # per region, its declared center ids
    for r, (name, ids) in enumerate(zip(regions.names, regions.members, strict=True)):
        cs = [by_id[c] for c in ids]
        groups: list[tuple[str, list[Center], list[int], dict[str, int]]] = []
        if per_chip:
            chips = list(dict.fromkeys(p.chip for c in cs for p in c.pools))
            for k, chip in enumerate(chips):
                have = [c for c in cs if c.pool(chip) is not None]
                w = [c.pool(chip).count for c in have]  # type: ignore[union-attr]
                groups.append((f"region-{r}-{k}", have, w, {chip: sum(w)}))
        else:
            pools: dict[str, int] = {}
            for c in cs:
                for p in c.pools:
                    pools[p.chip] = pools.get(p.chip, 0) + p.count
            groups.append((f"region-{r}", cs, [c.total_chips for c in cs], pools))
        ids_of.append([g[0] for g in groups])
        tags = tuple(sorted({t for c in cs for t in c.tags}))
        for cid, have, w, pools in groups:
            hourly = tuple(_mean_decimal([c.tariff.hourly[h] for c in have], w) for h in range(24))
            centers.append(
                Center(
                    id=cid,
                    name=name,
                    hub=name,
                    region=cs[0].region,
                    lat=sum(c.lat for c in cs) / len(cs),
                    lon=sum(c.lon for c in cs) / len(cs),
                    pools=tuple(Pool(chip=k, count=v) for k, v in pools.items()),
                    pue=sum(c.pue * n for c, n in zip(have, w, strict=True)) / sum(w),
                    tariff=Tariff(hourly=hourly),
                    carbon_kg_per_kwh=sum(
                        c.carbon_kg_per_kwh * n for c, n in zip(have, w, strict=True)
                    )
                    / sum(w),
                    service_price_per_cuh=_mean_decimal([c.service_price_per_cuh for c in have], w),
                    tags=tags,
                )
            )
    region_of = regions.of()
    best: dict[tuple[str, str], Link] = {}
    for link in network.links:
        ra, rb = region_of.get(link.a), region_of.get(link.b)
        if ra is not None and ra == rb:
            continue
        ends_a = [link.a] if ra is None else ids_of[ra]
        ends_b = [link.b] if rb is None else ids_of[rb]
        for a in ends_a:
            for b in ends_b:
                key = (min(a, b), max(a, b))
                old = best.get(key)
                best[key] = Link(
                    a=key[0],
                    b=key[1],
                    bandwidth_gbps=link.bandwidth_gbps
                    if old is None
                    else max(old.bandwidth_gbps, link.bandwidth_gbps),
                    latency_ms=link.latency_ms
                    if old is None
                    else min(old.latency_ms, link.latency_ms),
                    price_per_gb=link.price_per_gb
                    if old is None
                    else min(old.price_per_gb, link.price_per_gb),
                )
    return network.model_copy(
        update={
            "name": f"{network.name} (regions)",
            "centers": tuple(centers),
            "links": tuple(best.values()),
        }
    )


def declared_region(center_id: str) -> int:
    """The region index of a declared center (`region-R` or `region-R-K`)."""
    return int(center_id.split("-")[1])


# --------------------------------------------------------------------------- the policy


@dataclass
class FederatedPolicy:
    """Two-level scheduling as one simulator policy (see the module doc).

    `inner` is the scheduler both levels run (strategy and profile), `pricing`
    how a region's price reaches the national level. Counters: `national_s`
    and `regional_s` (seconds spent at each level), `quotes` (regions asked),
    `overflow` (jobs a region handed back), `by_region` (placements per region).
    """

    network: Network
    regions: Regions
    inner: SchedulerPolicy
    pricing: str = "quoted"
    name: str = ""
    national_s: float = 0.0
    regional_s: float = 0.0
    quotes: int = 0
    overflow: int = 0
    by_region: list[int] = field(default_factory=list)
    _mask: np.ndarray = field(init=False, repr=False)
    _declared: Network | None = field(default=None, init=False, repr=False)
    _region_pools: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _pool_region: np.ndarray = field(init=False, repr=False)
    _ids_of: list[list[str]] = field(default_factory=list, init=False, repr=False)
    _regional: list[SchedulerPolicy] = field(default_factory=list, init=False, repr=False)
    _national: SchedulerPolicy = field(init=False, repr=False)
    _ds_memo: dict[tuple[str, tuple[str, ...]], Dataset] = field(
        default_factory=dict, init=False, repr=False
    )

    def __post_init__(self) -> None:
        if self.pricing not in PRICING:
            raise ValidationError(
                f"unknown pricing '{self.pricing}'",
                field="--pricing",
                hint="quoted, declared or declared-per-chip",
            )
        region_of = self.regions.of()
        ids = [c.id for c in self.network.centers]
        self._mask = np.zeros((len(self.regions), len(ids)), dtype=bool)
        for ci, cid in enumerate(ids):
            self._mask[region_of[cid], ci] = True
        self.by_region = [0] * len(self.regions)
        # Each plane runs its own copy of the scheduler policy (a fresh one: the
        # simulator's policy may keep decisions between cycles, per plane).
        self.reset()
        self._pool_region = np.argmax(self._mask, axis=0)[network_index(self.network).pool_center]
        if not self.name:
            self.name = f"{self.inner.name} federated {len(self.regions)} ({self.pricing})"
        if self.pricing.startswith("declared"):
            self._declared = declared_network(
                self.network, self.regions, per_chip=self.pricing == "declared-per-chip"
            )
            self._region_pools = _region_pools(self.network, self.regions, self._declared)
            self._ids_of = [[] for _ in self.regions.names]
            for c in self._declared.centers:
                self._ids_of[declared_region(c.id)].append(c.id)

    def reset(self) -> None:
        """Forget what the planes keep between cycles: the next call starts as a fresh run."""
        self._regional = [replace(self.inner) for _ in self.regions.names]
        self._national = replace(self.inner)

    @property
    def profile(self) -> str:
        """The scoring profile (the simulator re-plans placed jobs with it, as for `ours`)."""
        return self.inner.profile

    def region_view(self, snap: Snapshot, r: int) -> Snapshot:
        """Region `r`'s own snapshot: the same calendar, every other center offline."""
        return replace(snap, online=snap.online & self._mask[r])

    def keeps(self, job: JobRequest, now: datetime) -> bool:
        """Whether the region the job was sent to keeps a decision on it past `now`."""
        return self._kept_by(job, now) is not None

    def __call__(self, snapshot: Snapshot, jobs: Sequence[JobRequest]) -> list[Decision]:
        """National level picks a region per job, then each region schedules its share."""
        t0 = time.perf_counter()
        views = [self.region_view(snapshot, r) for r in range(len(self.regions))]
        if self.pricing == "quoted":
            choice, why = self._quoted(snapshot, views, jobs)
        else:
            choice, why = self._declared_choice(snapshot, jobs)
        t1 = time.perf_counter()
        self.national_s += t1 - t0
        out: list[Decision | None] = [None] * len(jobs)
        for k, job in enumerate(jobs):
            if choice[k] < 0:
                out[k] = Decision(job.id, None, tuple(why.get(k, ("no region can run it",))))
        for r in range(len(self.regions)):
            mine = [k for k in range(len(jobs)) if choice[k] == r]
            if not mine:
                continue
            # The region's own plane: its own instance of the scheduler policy (with
            # whatever it keeps between cycles, as the flat run's policy does).
            decided = self._regional[r](views[r], [jobs[k] for k in mine])
            for k, d in zip(mine, decided, strict=True):
                out[k] = d
                if d.placement is None:
                    self.overflow += 1
                else:
                    self.by_region[r] += 1
        self.regional_s += time.perf_counter() - t1
        return [d for d in out if d is not None]

    # ---------------------------------------------------------------- quoted

    def _quoted(
        self, snap: Snapshot, views: list[Snapshot], jobs: Sequence[JobRequest]
    ) -> tuple[list[int], dict[int, tuple[str, ...]]]:
        """Each region quotes each job against what it has promised this cycle; best quote wins."""
        prof = PROFILES[self.inner.profile]
        free = snap.free.copy()  # regions' pools are disjoint: one array holds every promise
        choice = [-1] * len(jobs)
        why: dict[int, tuple[str, ...]] = {}
        order = sorted(range(len(jobs)), key=lambda k: order_key(jobs[k], snap.now))
        live = [r for r in range(len(views)) if views[r].online.any()]
        for k in order:
            job = jobs[k]
            kept = self._kept_by(job, snap.now)
            if kept is not None:
                # The region keeps its decision on this job until a later instant (a
                # deferred job): it stays with that region, as a delegated job does,
                # and nobody prices it again meanwhile (the flat run's policy does not).
                choice[k] = kept
                continue
            job_prof = _job_profile(job, prof)
            best = self._best_quote(snap, views, live, job, job_prof, free)
            if best is None:
                # No region can promise it on top of this cycle's promises: the region
                # whose own calendar could hold it best gets it; its strategy decides.
                best = self._best_quote(snap, views, live, job, job_prof, snap.free)
                if best is not None:
                    best = (best[0], None)
            if best is None:
                why[k] = ("no region quotes it",)
                continue
            r, hold = best
            choice[k] = r
            if hold is not None:
                p, s0, s1 = hold
                free[p, s0:s1] -= job.count
        return choice, why

    def _kept_by(self, job: JobRequest, now: datetime) -> int | None:
        """The region whose policy keeps a decision on `job` until after `now`, if any.

        Asks each region's `SchedulerPolicy.keeps` (the lookahead strategy's
        deferred jobs; with any other strategy it keeps nothing).
        """
        for r, pol in enumerate(self._regional):
            if pol.keeps(job, now):
                return r
        return None

    def _best_quote(
        self,
        snap: Snapshot,
        views: list[Snapshot],
        live: list[int],
        job: JobRequest,
        prof: Profile,
        free: np.ndarray,
    ) -> tuple[int, tuple[int, int, int] | None] | None:
        """The winning region and the chips its quote holds (pool, slots), or None.

        Each region's quote is its best option by the profile, scored among its own
        options — what `framework.place` on the region's own view returns. Options
        are per pool, so one `evaluate` over every pool gives every region's options
        at once; a job that avoids centers (its own rule looks at all eligible pools)
        or a network large enough to prune pools is evaluated region by region.
        """
        per_region = bool(job.avoid_centers) or snap.index.n_pools > MAX_POOLS_CHECKED
        quotes: list[tuple[int, float, float, float, tuple[int, int, int]]] = []
        for view, regions in [(views[r], [r]) for r in live] if per_region else [(snap, live)]:
            self.quotes += len(regions)
            opts = evaluate(view, free, job, prof)
            if not opts.feasible.any():
                continue
            region = self._pool_region[opts.pool]
            for i in self._region_bests(opts, region, regions, prof):
                p, s = int(opts.pool[i]), int(opts.slot[i])
                hold = (p, s, min(s + int(opts.n_slots[i]), HORIZON_SLOTS))
                quotes.append(
                    (
                        int(region[i]),
                        float(opts.cost[i]),
                        float(opts.finish_h[i]),
                        float(opts.co2[i]),
                        hold,
                    )
                )
        if not quotes:
            return None
        score = prof.score(
            np.array([q[1] for q in quotes]),
            np.array([q[2] for q in quotes]),
            np.array([q[3] for q in quotes]),
        )
        best = quotes[int(np.argmin(score))]
        return best[0], best[4]

    @staticmethod
    def _region_bests(
        opts: Options, region: np.ndarray, regions: list[int], prof: Profile
    ) -> list[int]:
        """Per region among `regions`, its best feasible option (index), as its `place` picks.

        A profile of one objective orders a region's options the same whatever the
        others are (its normalization is one positive factor), so one score serves
        every region; otherwise each region's options are scored among themselves.
        """
        ok = opts.feasible & np.isin(region, regions)
        if not ok.any():
            return []
        if sum(w > 0 for w in (prof.cost, prof.time, prof.carbon)) == 1:
            score = prof.score(opts.cost, opts.finish_h, opts.co2)
            cand = np.flatnonzero(ok)
            # Stable: among equal scores the first option wins, as np.argmin picks it.
            order = cand[np.lexsort((score[cand], region[cand]))]
            _, first = np.unique(region[order], return_index=True)
            return [int(i) for i in order[first]]
        out = []
        for r in regions:
            mine = region == r
            if not (mine & ok).any():
                continue
            score = np.full(opts.pool.size, np.inf)
            score[mine] = prof.score(opts.cost[mine], opts.finish_h[mine], opts.co2[mine])
            out.append(int(np.argmin(np.where(ok, score, np.inf))))
        return out

    # ---------------------------------------------------------------- declared

    def _declared_choice(
        self, snap: Snapshot, jobs: Sequence[JobRequest]
    ) -> tuple[list[int], dict[int, tuple[str, ...]]]:
        """The national plane's own cycle over the network of regions, as declared."""
        assert self._declared is not None
        nat = self.national_snapshot(snap)
        mapped = [self._national_job(j) for j in jobs]
        decided = self._national(nat, mapped)
        choice = [-1] * len(jobs)
        why: dict[int, tuple[str, ...]] = {}
        for k, d in enumerate(decided):
            if d.placement is None:
                why[k] = tuple(f"national: {w}" for w in d.reasons)
            else:
                choice[k] = declared_region(d.placement.center)
        return choice, why

    def national_snapshot(self, snap: Snapshot) -> Snapshot:
        """The national plane's snapshot: per region and chip, the free chips summed per slot,
        and now no more than the largest free in one online center (`aggregate_capacity`)."""
        assert self._declared is not None
        nat = self._declared
        idx = network_index(nat)
        free = np.zeros((idx.n_pools, HORIZON_SLOTS), dtype=np.int64)
        online = np.zeros(len(nat.centers), dtype=bool)
        flat_idx = snap.index
        for q, rows in enumerate(self._region_pools):
            free[q] = snap.free[rows].sum(axis=0)
        for r in range(len(self.regions)):
            members = np.flatnonzero(self._mask[r])
            up = bool(snap.online[members].any())
            caps = aggregate_capacity(
                (
                    bool(snap.online[ci]),
                    [
                        (
                            flat_idx.pool_chip[p],
                            int(flat_idx.pool_total[p]),
                            int(snap.free[p, 0]),
                            None,
                        )
                        for p in np.flatnonzero(flat_idx.pool_center == ci)
                    ],
                )
                for ci in members
            )
            for cid in self._ids_of[r]:
                online[[c.id for c in nat.centers].index(cid)] = up
                for cap in caps:
                    row = idx.pool_of.get((cid, cap.chip))
                    if row is not None:
                        # The server's snapshot rule for a region (server/scheduling.py):
                        # what one job can get now is at most the largest free in one center.
                        largest = cap.free if cap.largest_free is None else cap.largest_free
                        free[row, 0] = min(cap.free, largest)
        return Snapshot(
            network=nat,
            now=snap.now,
            index=idx,
            free=free,
            online=online,
            datasets={},
            patience_h=snap.patience_h,
        )

    def _national_job(self, job: JobRequest) -> JobRequest:
        """The job as the national plane sees it: replicas and pins named by region."""
        region_of = self.regions.of()

        def rids(center: str) -> list[str]:
            r = region_of.get(center)
            return [center] if r is None else self._ids_of[r]

        inputs = []
        for ds in job.inputs:
            key = (ds.id, ds.replicas)
            m = self._ds_memo.get(key)
            if m is None:
                # Data in a region is at every center the region declares.
                reps = tuple(dict.fromkeys(x for c in ds.replicas for x in rids(c)))
                m = self._ds_memo[key] = ds.model_copy(update={"replicas": reps})
            inputs.append(m)
        return replace(
            job,
            inputs=tuple(inputs),
            avoid_centers=(),
            pin_center=None if job.pin_center is None else rids(job.pin_center)[0],
        )


def _region_pools(network: Network, regions: Regions, declared: Network) -> list[np.ndarray]:
    """For each pool of the network of regions, the flat pools it sums."""
    flat = network_index(network)
    nat = network_index(declared)
    region_of = regions.of()
    out: list[np.ndarray] = []
    for q in range(nat.n_pools):
        r = declared_region(declared.centers[int(nat.pool_center[q])].id)
        chip = nat.pool_chip[q]
        rows = [
            p
            for p in range(flat.n_pools)
            if flat.pool_chip[p] == chip
            and region_of[network.centers[int(flat.pool_center[p])].id] == r
        ]
        out.append(np.array(rows, dtype=np.int64))
    return out


def _job_profile(job: JobRequest, prof: Profile) -> Profile:
    # As the strategies do (scheduler/greedy.py): an interactive job is placed fastest.
    return PROFILES["fastest"] if job.latency_class == "interactive" else prof


def federated_policy(
    network: Network, regions: Regions, policy: str = "ours", pricing: str = "quoted"
) -> FederatedPolicy:
    """Two-level scheduling with the scheduler policy `policy` (`ours`, `ours:STRATEGY`, …)."""
    inner = make_policy(policy)
    if not isinstance(inner, SchedulerPolicy):
        raise ValidationError(
            f"'{policy}' is a baseline, not the scheduler",
            field="--policy",
            hint="ours, ours:PROFILE, ours:STRATEGY or ours:STRATEGY:PROFILE",
        )
    return FederatedPolicy(network, regions, inner, pricing)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class FederationRow:
    """One run of the comparison: flat, or federated over `regions` with `pricing`."""

    label: str
    regions: int
    pricing: str
    names: tuple[str, ...]
    metrics: PolicyMetrics
    cost_vs_flat_pct: float
    national_s: float = 0.0
    regional_s: float = 0.0
    quotes: int = 0
    overflow: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        m = self.metrics
        return {
            "label": self.label,
            "regions": self.regions,
            "pricing": self.pricing,
            "region_names": list(self.names),
            "total_cny": m.total_cny,
            "cost_vs_flat_pct": self.cost_vs_flat_pct,
            "deadline_miss_pct": m.deadline_miss_pct,
            "avg_jct_s": m.avg_jct_s,
            "p95_jct_s": m.p95_jct_s,
            "succeeded": m.succeeded,
            "jobs": m.jobs,
            "wall_s": m.wall_s,
            "policy_s": m.policy_s,
            "national_s": self.national_s,
            "regional_s": self.regional_s,
            "quotes": self.quotes,
            "overflow": self.overflow,
        }


def compare_federation(
    workload: Workload,
    partitions: Sequence[Regions],
    policy: str = "ours",
    pricings: Sequence[str] = ("quoted",),
    config: SimConfig | None = None,
) -> list[FederationRow]:
    """Flat scheduling, then two-level over each partition and pricing, on the same workload."""
    cfg = config or SimConfig()
    flat = summarize(Simulation(workload, make_policy(policy, cfg.seed), cfg).run())
    rows = [FederationRow("flat", 0, "-", (), flat, 0.0)]
    for regions in partitions:
        for pricing in pricings:
            pol = federated_policy(workload.network, regions, policy, pricing)
            m = summarize(Simulation(workload, pol, cfg).run())
            rows.append(
                FederationRow(
                    pol.name,
                    len(regions),
                    pricing,
                    regions.names,
                    m,
                    100.0 * (m.total_cny / flat.total_cny - 1.0) if flat.total_cny else 0.0,
                    pol.national_s,
                    pol.regional_s,
                    pol.quotes,
                    pol.overflow,
                )
            )
    return rows


def parse_counts(text: str, network: Network) -> list[int | None]:
    """`1,2,4,all` → region counts over the hubs (None: one region per hub)."""
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "all":
            out.append(None)
            continue
        try:
            out.append(int(part))
        except ValueError as exc:
            raise ValidationError(
                f"'{part}' is not a number of regions", field="--counts", hint="e.g. 1,2,4,all"
            ) from exc
    if not out:
        raise ValidationError("no region count given", field="--counts", hint="e.g. 1,2,4,all")
    for n in out:
        hub_regions(network, n)  # checks the range
    return out
