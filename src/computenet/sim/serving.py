"""Inference services in the simulator: replay an LLM request trace against replicas.

`cnet sim compare --workload azure-llm:TRACE[,service=FILE]` (docs/simulator.md,
"Inference services") replays the requests of a trace in the Azure LLM
inference format (TIMESTAMP, ContextTokens, GeneratedTokens) against the
replicas of one service on a network, under six routing and placement
policies, and reports what each costs per million tokens and how many
requests met the latency objective.

The model, in one place (each constant below says what it assumes):

- **Requests** arrive at the trace's instants (`rate=X` compresses time X-fold),
  each from a user site of the network drawn with a seed (`sites=` weights).
- **Replicas** hold `chips.count` chips of one type at one center. A request
  on a replica takes a prefill of ``context / prefill_tps`` and a decode of
  ``generated / decode_tps``; both rates are the chip's delivered inference
  PFLOPS (the catalog's peak × the throughput matrix's `inference` share) ×
  the chip count times a base rate per PFLOPS (`PREFILL_TOKENS_PER_PFLOPS`,
  `DECODE_TOKENS_PER_PFLOPS`). A replica batches up to `batch` requests at
  once (continuous batching, each at the full per-request rate); more wait
  in its queue, first come first served.
- **Time to first token** = the round trip from the request's site to the
  replica's center (twice the shortest-path link latency, the gateway's own
  `rtt_ms`) + the wait in the replica's queue + the prefill; end to end adds
  the decode.
- **Money, energy, CO2**: every replica is metered from the moment it is
  started to the moment it stops with `metering.pricing.charge`, the function
  that bills real runs and the batch simulator's (energy hour by hour on the
  center's tariff, service per CU·h; kWh and CO2 as the batch simulator's).
- **Autoscaling** (every policy but `static-peak`): every `TICK_S` the mean
  in-flight requests of the tick is a reading; the mean of the readings of
  the service's `autoscale.lookback_s` (`lookback=` overrides it), the
  server's `model.service.Lookback`, gives ``replicas_for(spec, inflight)``
  (the server's rule); the count moves up once that has held `up_delay_s`
  and down once it has held `down_delay_s` (the service's `autoscale:`, or
  its defaults) — the same hysteresis as `server/services.py`'s autoscale.
  A new replica is billed at once and serves after `startup=` seconds; one
  scaled down takes no new requests and stops once its last one finished.
- **Policies**: `POLICIES`; `static-peak` (the issue's baseline) sizes each
  site's replicas at its nearest center for the busiest minute and never
  changes them; `ours` places with the server's `scheduler.serving.choose`
  and routes with the gateway's `gateway.scoring.score`. Its network share of
  the objective is the server's measured one (`serving.network_share`): the
  p99 time to first token of the last `TTFB_WINDOW_S` less the round trip in
  it, as the server reads the gateways' histograms; before there are
  `MIN_TTFB_SAMPLES` requests, the prefill of the trace's p99 prompt on the
  service's slowest chip type.
"""

from __future__ import annotations

import csv
import datetime as dt
import heapq
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from computenet.errors import ValidationError
from computenet.gateway.scoring import Raw, rtt_ms, score, tariff_now
from computenet.metering.pricing import charge
from computenet.model import Center, Chip, Network
from computenet.model.center import CST
from computenet.model.service import (
    REPLICA_CLASS,
    Autoscale,
    Lookback,
    ServiceSpec,
    parse_service_text,
    replicas_for,
)
from computenet.network.paths import PathTable
from computenet.scheduler.serving import (
    MIN_TTFB_SAMPLES,
    Spot,
    choose,
    replica_cost_cny_per_hour,
    service_p99_ms,
    suits,
)

WORKLOAD_PREFIX = "azure-llm:"

WORKLOAD_CLASS = REPLICA_CLASS  # the replica jobs' class (model/service.py)
"""The throughput-matrix class a replica's chips run (its delivered PFLOPS and its CU·h)."""

MODEL_PARAMS = 7e9
"""Assumed: the served model has 7 B parameters (bf16, fits one 80 GB chip)."""

PREFILL_TOKENS_PER_PFLOPS = 1e15 / (2.0 * MODEL_PARAMS)
"""Prompt tokens a second per delivered PFLOPS: 2 FLOP per parameter per token (REFERENCE.md's
estimate for inferred tokens). An A100 delivers 312 × 0.45 = 140 TFLOPS on inference: 10,029
prompt tokens a second."""

REF_DELIVERED_PFLOPS = 312 * 0.45 / 1000.0
"""An A100's delivered inference PFLOPS in the built-in catalog (the decode rate's reference)."""

DECODE_TOKENS_PER_PFLOPS = 50.0 / REF_DELIVERED_PFLOPS
"""Assumed: 50 generated tokens a second per request on an A100 while batching (decode is
memory-bound; the catalog has no bandwidth, so the rate scales with delivered PFLOPS like
prefill — a simplification)."""

BATCH_PER_TARGET = 2
"""Default batch: a replica runs at most 2 × `target_inflight` requests at once, the rest wait."""

STARTUP_S = 60.0
"""Assumed: seconds from starting a replica to its first answer (model load); billed."""

TICK_S = 2.0
"""How often the autoscaler looks: the gateway's load report interval (docs/services.md)."""

TTFB_WINDOW_S = 15 * 60.0
"""Seconds of requests placement measures the service's own time by (the server's
`TTFB_WINDOW_MIN`)."""

SIZING_WINDOW_S = 60.0
"""Static peak provisioning sizes for the busiest window of this length (a dashboard minute)."""

POLICIES = ("nearest", "least-loaded", "round-robin", "cheapest-power", "static-peak", "ours")

DEFAULT_SERVICE_YAML = """\
name: llm
command: python3 -m vllm.entrypoints.openai.api_server --port $PORT
chips: {count: 1, types: [A100, H800, H100, H200]}
replicas: {min: 1, max: 64}
target_inflight: 4
latency: {p99_ttfb_ms: 500}
autoscale: {up_delay_s: 30, down_delay_s: 600}
"""
"""The service replayed when the workload names none: 1 A100-class chip a replica, in-flight
target 4, p99 time to first byte <= 500 ms (issue 11), Ray Serve's 30 s / 600 s hysteresis."""

_KEYS = (
    "service",
    "seed",
    "rate",
    "hour",
    "day",
    "batch",
    "startup",
    "lookback",
    "sites",
    "requests",
)


# ----------------------------------------------------------------- the trace


@dataclass(frozen=True)
class LLMTrace:
    """Requests of an LLM trace: seconds after the first, prompt and generated tokens."""

    name: str
    start: dt.datetime
    t_s: np.ndarray
    context: np.ndarray
    generated: np.ndarray

    def __len__(self) -> int:
        return len(self.t_s)


def _timestamp(text: str) -> dt.datetime:
    """'2023-11-16 18:15:46.6805900' (7 fractional digits, no zone) as a naive datetime."""
    head, _, frac = text.strip().partition(".")
    base = dt.datetime.fromisoformat(head)
    if frac:
        if not frac.isdigit():
            raise ValueError(text)
        base += dt.timedelta(microseconds=round(float("0." + frac) * 1e6))
    return base


def load_azure_llm(path: str | Path, limit: int | None = None) -> LLMTrace:
    """Read a trace in the Azure LLM inference 2023 format; ValidationError naming the row."""
    p = Path(path)
    if not p.is_file():
        raise ValidationError(
            f"no trace file at '{p}'",
            field="--workload",
            hint="give azure-llm:PATH to a CSV with TIMESTAMP,ContextTokens,GeneratedTokens",
        )
    times: list[dt.datetime] = []
    ctx: list[int] = []
    gen: list[int] = []
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        want = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
        if header is None or [h.strip() for h in header] != want:
            raise ValidationError(
                f"'{p.name}' does not start with the header {','.join(want)}",
                field="--workload",
                hint="use a trace of the Azure LLM inference 2023 format",
            )
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            where = f"{p.name}:{line}"
            if len(row) != 3:
                raise ValidationError(
                    f"has {len(row)} fields, needs 3",
                    field=where,
                    hint="TIMESTAMP,context,generated",
                )
            try:
                when = _timestamp(row[0])
            except ValueError:
                raise ValidationError(
                    f"TIMESTAMP '{row[0][:40]}' is not a date and time",
                    field=where,
                    hint="write it as 2023-11-16 18:15:46.68",
                ) from None
            try:
                c, g = int(row[1]), int(row[2])
            except ValueError:
                raise ValidationError(
                    "ContextTokens and GeneratedTokens must be whole numbers",
                    field=where,
                    hint="fix the row",
                ) from None
            if c < 0 or g < 0:
                raise ValidationError("token counts must be >= 0", field=where, hint="fix the row")
            times.append(when)
            ctx.append(c)
            gen.append(g)
            if limit is not None and len(times) >= limit:
                break
    if not times:
        raise ValidationError(f"'{p.name}' has no requests", field="--workload", hint="a trace")
    order = sorted(range(len(times)), key=times.__getitem__)
    t0 = times[order[0]]
    return LLMTrace(
        name=p.name,
        start=t0,
        t_s=np.array([(times[i] - t0).total_seconds() for i in order]),
        context=np.array([ctx[i] for i in order], dtype=np.int64),
        generated=np.array([gen[i] for i in order], dtype=np.int64),
    )


DIURNAL_PEAK_HOUR = 15
"""Assumed: the local hour when an interactive service is busiest (and 12 h later the quietest)."""

DIURNAL_LOW = 0.2
"""Assumed: the quietest hour's requests as a share of the busiest's."""


def diurnal_share(hour: int) -> float:
    """The share of the busiest hour's requests that local `hour` sees (a cosine, 0.2 .. 1)."""
    mid = (1.0 + DIURNAL_LOW) / 2.0
    return mid + (1.0 - mid) * math.cos(2.0 * math.pi * (hour - DIURNAL_PEAK_HOUR) / 24.0)


def over_a_day(trace: LLMTrace, start_hour: int, seed: int) -> LLMTrace:
    """The trace's hour as the busiest hour of a day: 24 copies one hour apart, copy k keeping
    (seeded) `diurnal_share` of the requests of local hour ``start_hour + k``."""
    rng = np.random.default_rng(seed + 1)
    span = max(3600.0, math.ceil(float(trace.t_s[-1]) / 3600.0) * 3600.0)
    t, c, g = [], [], []
    for k in range(24):
        keep = rng.random(len(trace)) < diurnal_share((start_hour + k) % 24)
        t.append(trace.t_s[keep] + k * span)
        c.append(trace.context[keep])
        g.append(trace.generated[keep])
    return LLMTrace(
        name=f"{trace.name} over a day",
        start=trace.start,
        t_s=np.concatenate(t),
        context=np.concatenate(c),
        generated=np.concatenate(g),
    )


# ----------------------------------------------------------------- the workload


@dataclass(frozen=True)
class ServingWorkload:
    """A trace, the service replayed, and where each request comes from."""

    trace: LLMTrace
    spec: ServiceSpec
    epoch: dt.datetime  # network time of the first request (CST)
    t_s: np.ndarray  # arrival instants after the rate
    origin: np.ndarray  # index into `sites`
    sites: tuple[str, ...]
    batch: int
    startup_s: float
    seed: int
    lookback_s: float = 30.0  # the autoscaler's mean in-flight over this many seconds

    @property
    def name(self) -> str:
        """The trace's file name."""
        return self.trace.name

    @property
    def tokens(self) -> int:
        """Prompt and generated tokens of every request."""
        return int(self.trace.context.sum() + self.trace.generated.sum())


def is_serving_workload(spec: str) -> bool:
    """Whether a `--workload` names an LLM trace (this module) rather than batch jobs."""
    return spec.startswith(WORKLOAD_PREFIX)


def _number(key: str, value: str, lo: float, hi: float, integer: bool = False) -> float:
    try:
        x = int(value) if integer else float(value)
    except ValueError:
        x = float("nan")
    if not (lo <= x <= hi):
        kind = "a whole number" if integer else "a number"
        raise ValidationError(
            f"'{value}' is not {kind} in {lo:g}..{hi:g}",
            field=f"--workload {key}",
            hint=f"write {key}=N with N in {lo:g}..{hi:g}",
        )
    return x


def parse_serving_workload(text: str, net: Network) -> ServingWorkload:
    """`azure-llm:PATH[,service=FILE][,seed=S][,rate=X][,hour=H][,batch=B][,startup=S]
    [,day=1][,lookback=S][,sites=SITE:W/SITE:W][,requests=N]` on `net`; ValidationError naming
    the key."""
    if not is_serving_workload(text):
        raise ValidationError(f"'{text[:60]}' is not azure-llm:PATH", field="--workload")
    path, *pairs = text[len(WORKLOAD_PREFIX) :].split(",")
    opts: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS:
            raise ValidationError(
                f"unknown option '{pair}'",
                field="--workload",
                hint=f"options are KEY=VALUE with KEY one of {', '.join(_KEYS)}",
            )
        opts[key] = value.strip()
    if not path.strip():
        raise ValidationError("no trace file", field="--workload", hint="azure-llm:PATH")
    limit = opts.get("requests")
    trace = load_azure_llm(
        path.strip(), int(_number("requests", limit, 1, 1e9, True)) if limit else None
    )
    if "service" in opts:
        sp = Path(opts["service"])
        if not sp.is_file():
            raise ValidationError(
                f"no service file at '{sp}'",
                field="--workload service",
                hint="service=FILE names a service YAML (docs/services.md)",
            )
        spec = parse_service_text(sp.read_text("utf-8"), where=str(sp))
    else:
        spec = parse_service_text(DEFAULT_SERVICE_YAML, where="(built-in service)")
    seed = int(_number("seed", opts.get("seed", "0"), 0, 2**32 - 1, True))
    rate = _number("rate", opts.get("rate", "1"), 0.01, 1000)
    batch = int(
        _number(
            "batch",
            opts.get("batch", str(BATCH_PER_TARGET * spec.target_inflight)),
            1,
            10_000,
            True,
        )
    )
    startup = _number("startup", opts.get("startup", str(STARTUP_S)), 0, 86_400)
    # The service's own look-back unless the workload overrides it (what the server does).
    own = (spec.autoscale or Autoscale()).lookback_s
    lookback = _number("lookback", opts["lookback"], TICK_S, 3600) if "lookback" in opts else own
    # The trace does not say its zone: its clock time is taken as China Standard Time.
    start = trace.start.replace(tzinfo=CST)
    if "hour" in opts:
        h = int(_number("hour", opts["hour"], 0, 23, True))
        start = start.replace(hour=h)
    if not net.sites:
        raise ValidationError(
            f"network '{net.name}' has no user sites to send requests from",
            field="--network",
            hint="use a network with sites: (china, demo) or add some to the file",
        )
    ids = tuple(s.id for s in net.sites)
    weights = np.ones(len(ids))
    if "sites" in opts:
        weights = np.zeros(len(ids))
        for part in opts["sites"].split("/"):
            site, _, w = part.partition(":")
            if site not in ids:
                raise ValidationError(
                    f"'{site}' is not a user site of {net.name}",
                    field="--workload sites",
                    hint=f"sites=SITE:WEIGHT/… with SITE one of {', '.join(ids)}",
                )
            weights[ids.index(site)] = _number("sites", w or "1", 0, 1e9)
        if weights.sum() <= 0:
            raise ValidationError(
                "every weight is 0", field="--workload sites", hint="give one > 0"
            )
    if int(_number("day", opts.get("day", "0"), 0, 1, True)):
        trace = over_a_day(trace, start.hour, seed)
    rng = np.random.default_rng(seed)
    origin = rng.choice(len(ids), size=len(trace), p=weights / weights.sum())
    return ServingWorkload(
        trace=trace,
        spec=spec,
        epoch=start,
        t_s=trace.t_s / rate,
        origin=origin,
        sites=ids,
        batch=batch,
        startup_s=startup,
        seed=seed,
        lookback_s=lookback,
    )


# ----------------------------------------------------------------- chips and places


@dataclass(frozen=True)
class Option:
    """Where a replica may run: a center and the chip type its replica takes there."""

    center: Center
    chip: Chip

    @property
    def id(self) -> str:
        """center/chip."""
        return f"{self.center.id}/{self.chip.name}"


def replica_speed(net: Network, chip: Chip, count: int) -> float:
    """Delivered inference PFLOPS of a replica of `count` × `chip` (ideal tensor parallelism)."""
    return net.throughput.delivered_pflops(WORKLOAD_CLASS, chip) * count


def service_s(net: Network, opt: Option, count: int, context: float, generated: float) -> float:
    """Seconds of prefill and decode of one request on a replica at `opt`, nothing waiting."""
    pf = replica_speed(net, opt.chip, count)
    return context / (pf * PREFILL_TOKENS_PER_PFLOPS) + generated / (pf * DECODE_TOKENS_PER_PFLOPS)


def options(net: Network, spec: ServiceSpec) -> list[Option]:
    """Every (center, chip) a replica of `spec` may take, in the service's order of chip types."""
    want = spec.chips
    out: list[Option] = []
    for c in net.centers:
        if spec.residency and c.id not in spec.residency and c.region not in spec.residency:
            continue
        pools = [p for p in c.pools if p.count >= want.count]
        if want.types:
            pools = sorted(
                (p for p in pools if p.chip in want.types), key=lambda p: want.types.index(p.chip)
            )
        # The placement's own rule of which chips a replica may take (types, stack, memory).
        out.extend(
            Option(c, net.chips[p.chip]) for p in pools if suits(net.chips[p.chip], want, net)
        )
    if not out:
        raise ValidationError(
            f"no center of {net.name} has {want.count} chip(s) of"
            f" {', '.join(want.types) or 'any type'} that run inference",
            field="chips",
            hint="name chip types the network has in the service file",
        )
    return out


# ----------------------------------------------------------------- results


@dataclass(frozen=True)
class ServingResult:
    """One policy's figures (JSON-ready through `as_dict`)."""

    policy: str
    requests: int
    tokens: int
    total_cny: float
    energy_cny: float
    service_cny: float
    cost_per_mtok_cny: float
    slo_attainment_pct: float
    p50_ttft_s: float
    p99_ttft_s: float
    p50_e2e_s: float
    p99_e2e_s: float
    replica_hours: float
    replica_hours_by_center: dict[str, float]
    peak_replicas: int
    scale_events: int
    kwh: float
    co2_kg: float
    wall_s: float

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Replica:
    """One replica in the run: where, how fast, what it holds, and when it ran."""

    idx: int
    opt: Option
    group: int
    prefill_tps: float
    decode_tps: float
    rtt_s: tuple[float, ...]  # round trip from each site (index as ServingWorkload.sites)
    slots: int
    started: float
    ready_at: float
    rank: float  # ¥ per hour per PFLOPS when started: the first to go when scaling down (ours)
    ready: bool = False
    draining: bool = False
    stopped: float | None = None
    active: int = 0
    inflight: int = 0
    queue: deque[int] = field(default_factory=deque)


@dataclass
class Group:
    """Replicas that scale together, and the sites whose requests they are sized by."""

    sites: tuple[int, ...]
    wanted: int
    option: Option | None  # fixed place (None: chosen at each scale-up)
    autoscaled: bool
    replicas: list[Replica] = field(default_factory=list)
    inflight: int = 0
    area: float = 0.0  # ∫ in-flight dt since the last tick
    window: Lookback | None = None  # the ticks' readings of the last lookback (autoscaled)
    last: float = 0.0
    above_since: float | None = None
    below_since: float | None = None

    def live(self) -> list[Replica]:
        """Replicas not scaled down (ready or starting)."""
        return [r for r in self.replicas if not r.draining and r.stopped is None]


def hysteresis(g: Group, target: int, now: float, delays: Autoscale) -> None:
    """Move `g.wanted` toward `target` once it has held its delay (server/services.py's rule)."""
    if target > g.wanted:
        g.below_since = None
        g.above_since = g.above_since if g.above_since is not None else now
        if now - g.above_since >= delays.up_delay_s:
            g.wanted, g.above_since = target, None
    elif target < g.wanted:
        g.above_since = None
        g.below_since = g.below_since if g.below_since is not None else now
        if now - g.below_since >= delays.down_delay_s:
            g.wanted, g.below_since = target, None
    else:
        g.above_since = g.below_since = None


def autoscale_tick(
    g: Group, reading: float, now: float, spec: ServiceSpec, lookback_s: float, least: int
) -> float:
    """One tick of `g`'s autoscaler: add the tick's mean in-flight `reading` to its look-back,
    move `g.wanted` toward what the mean calls for (at least `least`); returns the mean."""
    if g.window is None or g.window.lookback_s != lookback_s:
        g.window = Lookback(lookback_s)
    mean = g.window.add(now, reading)
    target = max(least, replicas_for(spec, mean))
    hysteresis(g, target, now, spec.autoscale or Autoscale())
    return mean


def window_peak_inflight(t: np.ndarray, dur: np.ndarray, window_s: float) -> tuple[float, float]:
    """(busiest, first) mean in-flight over windows of `window_s` of requests served at once.

    The in-flight integral to x is Σ clip(x − t_i, 0, dur_i); a window's mean is its
    difference over the window's ends divided by the window.
    """
    if len(t) == 0:
        return 0.0, 0.0
    end = float((t + dur).max())
    edges = np.arange(0.0, end + window_s, window_s)
    area = np.empty(len(edges))
    for k, x in enumerate(edges):
        area[k] = float(np.clip(x - t, 0.0, dur).sum())
    means = np.diff(area) / window_s
    return float(means.max()), float(means[0])


# ----------------------------------------------------------------- the run


class ServingRun:
    """One policy over one workload: an event-driven replay (arrivals, finishes, ticks)."""

    def __init__(self, net: Network, work: ServingWorkload, policy: str) -> None:
        if policy not in POLICIES:
            raise ValidationError(
                f"unknown serving policy '{policy}'",
                field="--policies",
                hint=f"all, or a list of {', '.join(POLICIES)}",
            )
        self.net, self.work, self.policy = net, work, policy
        self.spec = work.spec
        self.paths = PathTable.build(net)
        self.opts = options(net, work.spec)
        self.count = work.spec.chips.count
        self.objective_s = work.spec.latency.p99_ttfb_ms / 1000.0
        self.min_replicas = max(1, work.spec.replicas.min)  # no scale to zero in the sim
        n = len(work.t_s)
        self.ttft = np.full(n, np.nan)
        self.ttfb_prior_ms = self._prior_service_ms()
        self.service_ms: float | None = self.ttfb_prior_ms  # the last estimate placement used
        self.e2e = np.full(n, np.nan)
        self.served_by = np.full(n, -1, dtype=np.int64)
        self.replicas: list[Replica] = []
        self.heap: list[tuple[float, int, int, int, int]] = []  # (t, prio, seq, kind, arg)
        self.seq = 0
        self.now = 0.0
        self.rr = 0
        self.scale_events = 0
        self._tariffs: dict[tuple[str, int], float] = {}
        self._rtt: dict[tuple[int, str], float] = {}
        self.demand = np.bincount(work.origin, minlength=len(work.sites))
        self.groups = self._groups()
        self.live: list[Replica] = []

    # -- places ---------------------------------------------------------------

    def rtt_s(self, site: int, center: str) -> float:
        """Round trip in seconds from site `site` to `center` (the gateway's rtt_ms)."""
        key = (site, center)
        hit = self._rtt.get(key)
        if hit is None:
            hit = rtt_ms(self.paths, self.net, self.work.sites[site], center) / 1000.0
            self._rtt[key] = hit
        return hit

    def _prior_service_ms(self) -> float:
        """The service's own p99 TTFT before any is measured: the prefill of the trace's
        p99 prompt on the slowest of its chip types (nothing waiting)."""
        p99_prompt = float(np.percentile(self.work.trace.context, 99))
        slowest = min(replica_speed(self.net, o.chip, self.count) for o in self.opts)
        return 1000.0 * p99_prompt / (slowest * PREFILL_TOKENS_PER_PFLOPS)

    def measured_service_ms(self, placed: Sequence[str], now: float) -> float:
        """The server's measure (`server.services.measured_service_ms`) on the simulated
        requests: the p99 time to first token of those that arrived in the last
        `TTFB_WINDOW_S` and started, less the demand-weighted mean RTT of each site to
        its nearest placed center; the prior with fewer than `MIN_TTFB_SAMPLES`."""
        w = self.work
        lo, hi = np.searchsorted(w.t_s, [now - TTFB_WINDOW_S, now], side="right")
        seen = self.ttft[lo:hi]
        seen = seen[~np.isnan(seen)]
        if len(seen) < MIN_TTFB_SAMPLES or not placed:
            return self.ttfb_prior_ms
        centers = set(placed)
        total = float(self.demand.sum())
        share = sum(
            float(self.demand[s]) * min(self.rtt_s(s, c) for c in centers)
            for s in range(len(w.sites))
        ) / max(total, 1.0)
        got = service_p99_ms(1000.0 * float(np.percentile(seen, 99)), 1000.0 * share)
        return self.ttfb_prior_ms if got is None else got

    def nearest(self, site: int) -> Option:
        """The option at the center nearest `site` (the service's first chip type there)."""
        return min(self.opts, key=lambda o: self.rtt_s(site, o.center.id))

    def hour_cost(self, opt: Option, now: float) -> float:
        """¥ of one replica at `opt` for the hour from `now`, by the metering function."""
        start = self.work.epoch + dt.timedelta(seconds=now)
        ch = charge(
            opt.center,
            opt.chip,
            self.net.throughput,
            WORKLOAD_CLASS,
            self.count,
            start,
            start + dt.timedelta(hours=1),
        )
        return float(ch.total_cny)

    def cheapest_power(self, now: float) -> Option:
        """The option with the cheapest ¥/kWh (tariff × PUE) now, wherever it is."""
        when = self.work.epoch + dt.timedelta(seconds=now)
        return min(self.opts, key=lambda o: tariff_now(self.net, o.center.id, when))

    def ours(self, g: Group, now: float) -> Option:
        """Where the server's placement (`scheduler.serving.choose`) puts the next replica.

        Demand: each site's share of the requests; spots: each center's cheapest
        option for the coming hour per unit of speed (the placement's
        `replica_cost_cny_per_hour` × an A100's delivered PFLOPS / the replica's),
        with room for as many replicas as its pool holds less those placed.
        """
        when = self.work.epoch + dt.timedelta(seconds=now)
        placed = [r.opt.center.id for r in g.live()]
        best: dict[str, tuple[float, Option]] = {}
        for o in self.opts:
            # Per unit of speed: a chip twice as fast serves the same requests with half the
            # replicas (in-flight falls with service time), so ¥ an hour per A100's worth.
            hourly = float(replica_cost_cny_per_hour(self.net, o.center, o.chip, self.count, when))
            cost = hourly * REF_DELIVERED_PFLOPS / replica_speed(self.net, o.chip, self.count)
            if o.center.id not in best or cost < best[o.center.id][0]:
                best[o.center.id] = (cost, o)
        spots = []
        for cid, (cost, o) in best.items():
            pool = o.center.pool(o.chip.name)
            room = (pool.count if pool else 0) // self.count - placed.count(cid)
            spots.append(Spot(cid, cost, room))
        site_ids = self.work.sites
        rtt = {(site_ids[s], cid): 1000.0 * self.rtt_s(s, cid) for s in g.sites for cid in best}
        demand = {site_ids[s]: float(self.demand[s]) for s in g.sites}
        self.service_ms = self.measured_service_ms(placed, now)
        pick = choose(
            demand, spots, rtt, self.spec.latency.p99_ttfb_ms, placed, service_ms=self.service_ms
        )
        if pick is None:  # no room anywhere: the nearest option of the busiest site
            return self.nearest(max(g.sites, key=lambda s: self.demand[s]))
        return best[pick.center][1]

    def rank(self, opt: Option, now: float) -> float:
        """¥ an hour per delivered PFLOPS of a replica at `opt` from `now`."""
        return self.hour_cost(opt, now) / replica_speed(self.net, opt.chip, self.count)

    def place(self, g: Group, now: float) -> Option:
        """Where group `g`'s next replica goes."""
        if g.option is not None:
            return g.option
        if self.policy == "cheapest-power":
            return self.cheapest_power(now)
        return self.ours(g, now)

    # -- groups and sizing ----------------------------------------------------

    def _groups(self) -> list[Group]:
        w = self.work
        every = tuple(range(len(w.sites)))
        if self.policy in ("cheapest-power", "ours"):
            groups = [Group(every, 0, None, True)]
        else:  # one deployment per site at its nearest center
            groups = [
                Group((s,), 0, self.nearest(s), self.policy != "static-peak")
                for s in every
                if (w.origin == s).any()
            ]
        for g in groups:
            opt = self.place(g, 0.0)
            mask = np.isin(w.origin, g.sites)
            dur = np.array(
                [
                    service_s(self.net, opt, self.count, c, n)
                    for c, n in zip(w.trace.context[mask], w.trace.generated[mask], strict=True)
                ]
            )
            peak, first = window_peak_inflight(w.t_s[mask], dur, SIZING_WINDOW_S)
            # Static peak: enough replicas for the busiest minute at the target, for ever.
            # The others start warm, sized for the first minute, then follow the load.
            g.wanted = max(
                self.min_replicas, replicas_for(self.spec, peak if not g.autoscaled else first)
            )
        return groups

    # -- events ---------------------------------------------------------------

    ARRIVE, FINISH, READY, TICK = 0, 1, 2, 3

    def at(self, t: float, kind: int, arg: int) -> None:
        """Schedule an event (finishes before ticks before arrivals at one instant)."""
        self.seq += 1
        prio = (1, 3, 0, 2)[kind]
        heapq.heappush(self.heap, (t, prio, self.seq, kind, arg))

    def start_replica(self, g: Group, now: float, warm: bool) -> None:
        """Start a replica for `g` (ready at once when `warm`: before the trace begins)."""
        opt = self.place(g, now)
        speed = replica_speed(self.net, opt.chip, self.count)
        r = Replica(
            idx=len(self.replicas),
            opt=opt,
            group=self.groups.index(g),
            prefill_tps=speed * PREFILL_TOKENS_PER_PFLOPS,
            decode_tps=speed * DECODE_TOKENS_PER_PFLOPS,
            rtt_s=tuple(self.rtt_s(s, opt.center.id) for s in range(len(self.work.sites))),
            slots=self.work.batch,
            started=now,
            ready_at=now if warm else now + self.work.startup_s,
            rank=self.rank(opt, now),
        )
        self.replicas.append(r)
        g.replicas.append(r)
        if warm:
            r.ready = True
        else:
            self.at(r.ready_at, self.READY, r.idx)

    def stop_replica(self, r: Replica, now: float) -> None:
        """Scale `r` down: it takes no new request and stops once empty."""
        r.draining = True
        if r.inflight == 0:
            r.stopped = now

    def reconcile(self, g: Group, now: float) -> None:
        """Start or drain replicas until `g` has `g.wanted` live ones."""
        live = g.live()
        for _ in range(g.wanted - len(live)):
            self.start_replica(g, now, warm=False)
            self.scale_events += 1
        if len(live) > g.wanted:
            # Replicas still starting go first, then the dearest per PFLOPS, then the newest.
            victims = sorted(live, key=lambda r: (r.ready, -r.rank, -r.started))
            for r in victims[: len(live) - g.wanted]:
                self.stop_replica(r, now)
                self.scale_events += 1
        self.refresh()

    def refresh(self) -> None:
        """The replicas requests may be sent to: ready and not scaled down."""
        self.live = [r for r in self.replicas if r.ready and not r.draining]

    def _area(self, g: Group, now: float) -> None:
        g.area += g.inflight * (now - g.last)
        g.last = now

    # -- routing --------------------------------------------------------------

    def route(self, i: int, site: int, now: float) -> Replica:
        """The replica request `i` from `site` goes to."""
        cands = self.live
        if self.policy == "static-peak":
            g = self.group_of[site]
            cands = [r for r in cands if r.group == g]
        if not cands:  # every replica still starting: the first to be ready
            pool = [r for r in self.replicas if r.stopped is None and not r.draining]
            return min(pool, key=lambda r: (r.ready_at, r.inflight, r.idx))
        p = self.policy
        if p == "nearest":
            return min(cands, key=lambda r: (r.rtt_s[site], r.inflight, r.idx))
        if p == "round-robin":
            self.rr += 1
            return cands[self.rr % len(cands)]
        if p == "ours":
            return self._cats(cands, site, now)
        # least-loaded, static-peak and cheapest-power (one center: load is all that differs)
        return min(cands, key=lambda r: (r.inflight, r.rtt_s[site], r.idx))

    def _cats(self, cands: list[Replica], site: int, now: float) -> Replica:
        """The gateway's own decision (gateway/scoring.py) over the candidates."""
        hour = int((self.work.epoch.timestamp() + now) // 3600)
        raws = []
        for r in cands:
            key = (r.opt.center.id, hour)
            tariff = self._tariffs.get(key)
            if tariff is None:
                when = self.work.epoch + dt.timedelta(seconds=now)
                tariff = tariff_now(self.net, r.opt.center.id, when)
                self._tariffs[key] = tariff
            raws.append(
                Raw(str(r.idx), "", r.opt.center.id, 1000.0 * r.rtt_s[site], r.inflight, tariff)
            )
        best = score(
            raws,
            objective_ms=self.spec.latency.p99_ttfb_ms,
            target_inflight=self.spec.target_inflight,
        )
        return self.replicas[int(best[0].raw.key)]

    # -- requests ---------------------------------------------------------------

    def begin(self, i: int, r: Replica, now: float) -> None:
        """Request `i` starts on `r` now: its TTFT and end-to-end latency are known."""
        w = self.work
        r.active += 1
        prefill = float(w.trace.context[i]) / r.prefill_tps
        decode = float(w.trace.generated[i]) / r.decode_tps
        wait = now - float(w.t_s[i])
        rtt = r.rtt_s[int(w.origin[i])]
        self.ttft[i] = rtt + wait + prefill
        self.e2e[i] = rtt + wait + prefill + decode
        self.at(now + prefill + decode, self.FINISH, i)

    def run(self) -> ServingResult:
        """Replay every request; the policy's figures."""
        wall = time.perf_counter()
        w = self.work
        self.group_of = {s: k for k, g in enumerate(self.groups) for s in g.sites}
        for g in self.groups:
            for _ in range(g.wanted):
                self.start_replica(g, 0.0, warm=True)
        self.refresh()
        for i in range(len(w.t_s)):
            self.at(float(w.t_s[i]), self.ARRIVE, i)
        last_arrival = float(w.t_s[-1])
        if any(g.autoscaled for g in self.groups):
            self.at(TICK_S, self.TICK, 0)
        heap = self.heap
        while heap:
            now, _, _, kind, arg = heapq.heappop(heap)
            self.now = now
            if kind == self.ARRIVE:
                site = int(w.origin[arg])
                g = self.groups[self.group_of[site]]
                self._area(g, now)
                g.inflight += 1
                r = self.route(arg, site, now)
                self.served_by[arg] = r.idx
                r.inflight += 1
                if r.ready and r.active < r.slots:
                    self.begin(arg, r, now)
                else:
                    r.queue.append(arg)
            elif kind == self.FINISH:
                r = self.replicas[int(self.served_by[arg])]
                g = self.groups[self.group_of[int(w.origin[arg])]]
                self._area(g, now)
                g.inflight -= 1
                r.active -= 1
                r.inflight -= 1
                if r.queue:
                    self.begin(r.queue.popleft(), r, now)
                elif r.draining and r.inflight == 0:
                    r.stopped = now
            elif kind == self.READY:
                r = self.replicas[arg]
                r.ready = True
                while r.queue and r.active < r.slots:
                    self.begin(r.queue.popleft(), r, now)
                self.refresh()
            else:  # TICK
                for g in self.groups:
                    if not g.autoscaled:
                        continue
                    self._area(g, now)
                    reading, g.area = g.area / TICK_S, 0.0
                    autoscale_tick(g, reading, now, self.spec, w.lookback_s, self.min_replicas)
                    self.reconcile(g, now)
                if now + TICK_S <= last_arrival:
                    self.at(now + TICK_S, self.TICK, 0)
        end = self.now
        for r in self.replicas:
            if r.stopped is None:
                r.stopped = end
        return self._result(time.perf_counter() - wall)

    def _result(self, wall_s: float) -> ServingResult:
        w = self.work
        total = energy = service = Decimal(0)
        kwh = co2 = hours = 0.0
        by_center: dict[str, float] = {}
        for r in self.replicas:
            stop = r.stopped if r.stopped is not None else self.now
            ch = charge(
                r.opt.center,
                r.opt.chip,
                self.net.throughput,
                WORKLOAD_CLASS,
                self.count,
                w.epoch + dt.timedelta(seconds=r.started),
                w.epoch + dt.timedelta(seconds=stop),
            )
            total += ch.total_cny
            energy += ch.energy_cny
            service += ch.service_cny
            kwh += ch.kwh
            co2 += ch.co2_kg
            h = (stop - r.started) / 3600.0
            hours += h
            by_center[r.opt.center.id] = by_center.get(r.opt.center.id, 0.0) + h
        tokens = w.tokens
        return ServingResult(
            policy=self.policy,
            requests=len(w.t_s),
            tokens=tokens,
            total_cny=float(total),
            energy_cny=float(energy),
            service_cny=float(service),
            cost_per_mtok_cny=float(total) / (tokens / 1e6) if tokens else 0.0,
            slo_attainment_pct=100.0 * float((self.ttft <= self.objective_s).mean()),
            p50_ttft_s=float(np.percentile(self.ttft, 50)),
            p99_ttft_s=float(np.percentile(self.ttft, 99)),
            p50_e2e_s=float(np.percentile(self.e2e, 50)),
            p99_e2e_s=float(np.percentile(self.e2e, 99)),
            replica_hours=hours,
            replica_hours_by_center={k: round(v, 4) for k, v in sorted(by_center.items())},
            peak_replicas=_peak_replicas(self.replicas),
            scale_events=self.scale_events,
            kwh=kwh,
            co2_kg=co2,
            wall_s=wall_s,
        )


def _peak_replicas(replicas: Sequence[Replica]) -> int:
    """The most replicas billed at one instant."""
    ev = sorted(
        [(r.started, 1) for r in replicas]
        + [(r.stopped if r.stopped is not None else math.inf, -1) for r in replicas],
        key=lambda e: (e[0], e[1]),
    )
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def parse_serving_policies(text: str, *, flag: str = "--policies") -> list[str]:
    """`all` or a comma-separated list of `POLICIES`; ValidationError naming the unknown one."""
    if text.strip() == "all":
        return list(POLICIES)
    names = [p.strip() for p in text.split(",") if p.strip()]
    for n in names:
        if n not in POLICIES:
            raise ValidationError(
                f"unknown serving policy '{n}'",
                field=flag,
                hint=f"all, or a comma-separated list of {', '.join(POLICIES)}",
            )
    if not names:
        raise ValidationError("no policy", field=flag, hint="all, or a list")
    return names


def simulate(net: Network, work: ServingWorkload, policy: str) -> ServingResult:
    """Run one policy over the workload."""
    return ServingRun(net, work, policy).run()


def compare_serving(
    net: Network, work: ServingWorkload, policies: Sequence[str]
) -> list[ServingResult]:
    """Every policy over the same requests (same origins, same service)."""
    return [simulate(net, work, p) for p in policies]


def goal(results: Sequence[ServingResult]) -> dict[str, float | bool] | None:
    """Ours against static peak: the cost ratio and whether issue 11's goal is met."""
    by = {r.policy: r for r in results}
    ours, peak = by.get("ours"), by.get("static-peak")
    if ours is None or peak is None or peak.cost_per_mtok_cny <= 0:
        return None
    saved = 1.0 - ours.cost_per_mtok_cny / peak.cost_per_mtok_cny
    return {
        "cost_ratio": ours.cost_per_mtok_cny / peak.cost_per_mtok_cny,
        "saved_pct": 100.0 * saved,
        "ours_slo_pct": ours.slo_attainment_pct,
        "static_peak_slo_pct": peak.slo_attainment_pct,
        "met": saved >= 0.30
        and ours.slo_attainment_pct >= 99.0
        and ours.slo_attainment_pct >= peak.slo_attainment_pct,
    }
