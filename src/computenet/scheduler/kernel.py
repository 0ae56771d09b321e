"""The compiled inner loop of the scheduling cycle: one job's options, scored, in one call.

`framework.evaluate` used to price a job's (pool × start) options with some
60 small numpy operations, each paying Python's and numpy's per-call overhead
on arrays of a few hundred elements; at 10k jobs a cycle that overhead was the
cycle. Here the same arithmetic runs as scalar loops compiled by numba: the
capacity windows, each option's finish, energy, service, transfer, kWh and
CO₂, feasibility (horizon, deadline, budget) and, when asked, the profile's
score and the best option. Every float operation is the one numpy did, in the
same order (no fast-math, no fused multiply-add), so decisions and estimates
are the same to the last bit; `tests/unit/scheduler/test_kernel_equal.py`
holds them equal to the numpy implementation this replaced.

numba is imported and the functions compiled on first use, not at import: a
process that never schedules (the CLI, an agent) does not pay for it, and
`cache=True` keeps the machine code in numba's cache (``__pycache__`` beside
this file, or numba's per-user cache directory when that is not writable) so
that only the first process after a change compiles.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

# Rows of the float output of `evaluate_options` (one column per option).
(
    F_START_H,
    F_TRANSFER_S,
    F_RUN_S,
    F_FINISH_H,
    F_ENERGY,
    F_SERVICE,
    F_TRANSFER,
    F_KWH,
    F_CO2,
    F_COST,
) = range(10)
# Rows of its integer output.
I_POOL, I_SLOT, I_N_SLOTS = range(3)


def _pool_window(
    free: np.ndarray,
    p: int,
    count: int,
    n_first: int,
    n_later: int,
    cols: np.ndarray,
    nxt: np.ndarray,
    cand: np.ndarray,
    r: int,
) -> int:
    """Earliest start slot of pool `p` (-1: none) and, in `cand[r]`, which `cols` starts fit.

    A slot is blocked where `free[p, s] < count`; a start s fits when no slot of
    [s, s + n) is blocked (n = `n_first` for slot 0, else `n_later`; clipped at
    the horizon).
    """
    n_s = free.shape[1]
    # The row's minimum without an early exit: a loop the compiler vectorizes.
    low = free[p, 0]
    for s in range(1, n_s):
        low = min(low, free[p, s])
    if low >= count:
        for c in range(cols.size):
            cand[r, c] = True
        return 0
    # nxt[s]: the first blocked slot at or after s (n_s: none).
    m = n_s
    for s in range(n_s - 1, -1, -1):
        if free[p, s] < count:
            m = s
        nxt[s] = m
    earliest = -1
    for s in range(n_s):
        end = min(n_first if s == 0 else s + n_later, n_s)
        if nxt[s] >= end:
            earliest = s
            break
    for c in range(cols.size):
        col = cols[c]
        cand[r, c] = nxt[col] >= min(col + n_later, n_s)
    return earliest


def _windows_py(
    free: np.ndarray,
    count: int,
    n_first: np.ndarray,
    n_later: np.ndarray,
    cols: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_pool_window` for every row of `free`: (earliest, has_slot, cand_ok[rows, cols])."""
    n_p, n_s = free.shape
    earliest = np.zeros(n_p, np.int64)
    has_slot = np.ones(n_p, np.bool_)
    cand = np.zeros((n_p, cols.size), np.bool_)
    nxt = np.empty(n_s, np.int64)
    for p in range(n_p):
        e = _pool_window_jit(free, p, count, n_first[p], n_later[p], cols, nxt, cand, p)
        if e < 0:
            has_slot[p] = False
        else:
            earliest[p] = e
    return earliest, has_slot, cand


def _tariff_integral(cum: np.ndarray, p: int, x: float) -> float:
    """¥/kW from local midnight of day 0 to local hour `x` at pool `p` (`cost.tariff_integral`)."""
    days = np.floor(x * (1.0 / 24.0))
    hx = x - days * 24.0
    h = min(int(hx), 23)
    at = p * 25 + h
    lo = cum[at]
    out: float = days * cum[p * 25 + 24] + lo + (hx - h) * (cum[at + 1] - lo)
    return out


def _norm_min(x: np.ndarray, n: int) -> float:
    """`x[:n].min()`, NaN when any is NaN (numpy's rule)."""
    lo = math.inf
    for k in range(n):
        v: float = x[k]
        if v != v:
            return v
        if v < lo:
            lo = v
    return lo


def _norm(v: float, lo: float) -> float:
    """`Profile.score`'s normalization of one value by the options' best."""
    return v / lo if lo > 0 else v - lo + 1.0


def _run_times_py(
    cu_hours: float, count: int, pflops: np.ndarray, transfer_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pool: seconds the work runs on `count` chips, and hours the chips are held.

    ``run = CU·h / (PFLOPS per chip × chips)``; the chips are held from the
    planned start through staging and the run.
    """
    n = pflops.size
    run_s = np.empty(n, np.float64)
    dur_h = np.empty(n, np.float64)
    for r in range(n):
        run_s[r] = cu_hours / (pflops[r] * count) * 3600.0
        dur_h[r] = (transfer_s[r] + run_s[r]) / 3600.0
    return run_s, dur_h


def _prune_py(
    pools: np.ndarray,
    pflops: np.ndarray,
    transfer_s: np.ndarray,
    transfer_cny: np.ndarray,
    tdp_kw: np.ndarray,
    pue: np.ndarray,
    tariff_min: np.ndarray,
    service: np.ndarray,
    count: int,
    cu_hours: float,
    plain: bool,
    w_cost: float,
    w_time: float,
    w_carbon: float,
    keep_n: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A lower bound of each pool's score, and the `keep_n` pools with the lowest.

    The bound prices the whole run at the pool's cheapest hour. Returns
    (lb_cost, dur_h, lb, keep): `lb` is the profile's score of the bound (empty
    unless `plain`, a `Profile` scored by its weights), `keep` the positions of
    the `keep_n` lowest, ascending — empty when they are not one set (a tie at
    the cut, a NaN) or not `plain`, for the caller to choose as numpy's
    `argpartition` does.
    """
    n = pools.size
    run_s, dur_h = _run_times_jit(cu_hours, count, pflops, transfer_s)
    lb_cost = np.empty(n, np.float64)
    for r in range(n):
        p = pools[r]
        kw0 = count * tdp_kw[p] * pue[p]
        c = kw0 * tariff_min[p] * run_s[r] / 3600.0 + transfer_cny[r]
        lb_cost[r] = c + cu_hours * service[p]
    lb = np.empty(0, np.float64)
    keep = np.empty(0, np.int64)
    if not plain:
        return lb_cost, dur_h, lb, keep
    lb = np.empty(n, np.float64)
    lo_c = _norm_min_jit(lb_cost, n)
    lo_t = _norm_min_jit(dur_h, n)
    nan = False
    for r in range(n):
        c = lb_cost[r]
        f = dur_h[r]
        nc = _norm_jit(c, lo_c)
        v = w_cost * nc + w_time * _norm_jit(f, lo_t) + w_carbon * nc
        v = v + 1e-9 * f + 1e-12 * c
        lb[r] = v
        if v != v:
            nan = True
    if nan or keep_n >= n:
        return lb_cost, dur_h, lb, keep
    # part[keep_n] is in its sorted place, everything before it no greater: the
    # cut is the largest of those, and a tie at the cut leaves the choice open.
    part = np.partition(lb, keep_n)
    cut = part[0]
    for r in range(1, keep_n):
        cut = max(cut, part[r])
    if part[keep_n] == cut:
        return lb_cost, dur_h, lb, keep
    keep = np.empty(keep_n, np.int64)
    m = 0
    for r in range(n):
        if lb[r] <= cut:
            keep[m] = r
            m += 1
    return lb_cost, dur_h, lb, keep


def _evaluate_py(
    free: np.ndarray,
    pools: np.ndarray,
    transfer_s: np.ndarray,
    transfer_cny: np.ndarray,
    pflops: np.ndarray,
    count: int,
    cu_hours: float,
    frac: float,
    h0f: float,
    cols: np.ndarray,
    has_deadline: bool,
    left_h: float,
    has_budget: bool,
    budget: float,
    max_finish_h: float,
    tdp_kw: np.ndarray,
    pue: np.ndarray,
    cum: np.ndarray,
    service: np.ndarray,
    carbon: np.ndarray,
    want_score: bool,
    w_cost: float,
    w_time: float,
    w_carbon: float,
    pool_center: np.ndarray,
    n_centers: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Every option of one job: see `evaluate_options` for the arguments and results."""
    n = pools.size
    n_s = free.shape[1]
    n_cols = cols.size
    run_s, dur_h = _run_times_jit(cu_hours, count, pflops, transfer_s)
    n_first = np.empty(n, np.int64)
    n_later = np.empty(n, np.int64)
    earliest = np.zeros(n, np.int64)
    has_slot = np.ones(n, np.bool_)
    cand = np.zeros((n, n_cols), np.bool_)
    nxt = np.empty(n_s, np.int64)
    n_opt = n
    any_slot = False
    for r in range(n):
        n_first[r] = int(np.ceil(frac + dur_h[r]))
        n_later[r] = int(np.ceil(dur_h[r]))
        # Most pools have the chips in every slot: say so without a call (a call per
        # pool costs more than this scan, which the compiler vectorizes).
        p = pools[r]
        low = free[p, 0]
        for s in range(1, n_s):
            low = min(low, free[p, s])
        if low >= count:
            e = 0
            for c in range(n_cols):
                cand[r, c] = True
        else:
            e = _pool_window_jit(free, p, count, n_first[r], n_later[r], cols, nxt, cand, r)
        if e < 0:
            has_slot[r] = False
        else:
            earliest[r] = e
            any_slot = True
            # A later start is an option only after the earliest one.
            for c in range(n_cols):
                if cand[r, c] and cols[c] > e:
                    n_opt += 1
                else:
                    cand[r, c] = False

    fv = np.empty((10, n_opt), np.float64)
    iv = np.empty((3, n_opt), np.int64)
    ok = np.empty(n_opt, np.bool_)
    row = np.empty(n_opt, np.int64)
    k = 0
    for r in range(n):
        row[k] = r
        iv[I_SLOT, k] = earliest[r]
        ok[k] = has_slot[r]
        k += 1
    for r in range(n):
        for c in range(n_cols):
            if cand[r, c]:
                row[k] = r
                iv[I_SLOT, k] = cols[c]
                ok[k] = True
                k += 1

    # What depends on the pool only (the same numpy expressions, computed once per pool).
    t_h = np.empty(n, np.float64)
    run_h = np.empty(n, np.float64)
    kw = np.empty(n, np.float64)
    kwh = np.empty(n, np.float64)
    svc = np.empty(n, np.float64)
    for r in range(n):
        p = pools[r]
        t_h[r] = transfer_s[r] / 3600.0
        run_h[r] = run_s[r] / 3600.0
        kw[r] = count * tdp_kw[p] * pue[p]
        kwh[r] = kw[r] * run_s[r] / 3600.0
        svc[r] = cu_hours * service[p]

    too_long_any = False
    ok_any = False
    ok_in_time = False
    for k in range(n_opt):
        r = row[k]
        p = pools[r]
        s = iv[I_SLOT, k]
        start_h = 0.0 if s == 0 else s - frac
        run_start = start_h + t_h[r]
        finish_h = run_start + run_h[r]
        x0 = h0f + run_start
        energy = kw[r] * (
            _tariff_integral_jit(cum, p, x0 + run_h[r]) - _tariff_integral_jit(cum, p, x0)
        )
        fv[F_START_H, k] = start_h
        fv[F_TRANSFER_S, k] = transfer_s[r]
        fv[F_RUN_S, k] = run_s[r]
        fv[F_FINISH_H, k] = finish_h
        fv[F_ENERGY, k] = energy
        fv[F_SERVICE, k] = svc[r]
        fv[F_TRANSFER, k] = transfer_cny[r]
        fv[F_KWH, k] = kwh[r]
        fv[F_CO2, k] = kwh[r] * carbon[p]
        fv[F_COST, k] = energy + svc[r] + transfer_cny[r]
        iv[I_POOL, k] = p
        iv[I_N_SLOTS, k] = n_first[r] if s == 0 else n_later[r]
        if ok[k]:
            ok_any = True
        if not finish_h <= max_finish_h:
            too_long_any = True
        elif ok[k]:
            ok_in_time = True

    # flags[0]: an option had a slot but every such one runs past the horizon;
    # flags[1]: no pool has a slot; flags[2] / flags[3]: the option named by the
    # deadline / budget message (its fastest finish / cheapest cost), -1 for none.
    flags = np.full(4, -1, np.int64)
    flags[0] = 1 if too_long_any and ok_any and not ok_in_time else 0
    flags[1] = 0 if any_slot else 1
    if too_long_any:
        for k in range(n_opt):
            if not fv[F_FINISH_H, k] <= max_finish_h:
                ok[k] = False
    if has_deadline:
        limit = left_h + 1e-9
        best = -1
        kept = False
        for k in range(n_opt):
            if ok[k]:
                if fv[F_FINISH_H, k] > limit:
                    if best < 0 or fv[F_FINISH_H, k] < fv[F_FINISH_H, best]:
                        best = k
                    ok[k] = False
                else:
                    kept = True
        if best >= 0 and not kept:
            flags[2] = best
    if has_budget:
        limit = budget + 1e-9
        best = -1
        best_cost = 0.0
        kept = False
        for k in range(n_opt):
            if ok[k]:
                cost = fv[F_COST, k]
                if cost > limit:
                    if best < 0 or cost < best_cost:
                        best = k
                        best_cost = cost
                    ok[k] = False
                else:
                    kept = True
        if best >= 0 and not kept:
            flags[3] = best

    score = np.empty(0, np.float64)
    chosen = -1
    if want_score and n_opt > 0:
        score = np.empty(n_opt, np.float64)
        lo_c = _norm_min_jit(fv[F_COST], n_opt)
        lo_t = _norm_min_jit(fv[F_FINISH_H], n_opt)
        lo_k = _norm_min_jit(fv[F_CO2], n_opt)
        nan = False
        for k in range(n_opt):
            if not ok[k]:
                v = math.inf
            else:
                f = fv[F_FINISH_H, k]
                c = fv[F_COST, k]
                v = (
                    w_cost * _norm_jit(c, lo_c)
                    + w_time * _norm_jit(f, lo_t)
                    + w_carbon * _norm_jit(fv[F_CO2, k], lo_k)
                )
                v = v + 1e-9 * f + 1e-12 * c
            score[k] = v
            # np.argmin: the first minimum, or the first NaN.
            if nan:
                continue
            if v != v:
                chosen = k
                nan = True
            elif chosen < 0 or v < score[chosen]:
                chosen = k
        if chosen >= 0 and not ok[chosen]:
            chosen = -1
    if chosen >= 0 and n_centers > 0:
        # What the reasons for the chosen option name, appended to the flags.
        j, same, late = _explain_index_jit(
            pool_center, iv[I_POOL], iv[I_SLOT], fv[F_START_H], ok, score, chosen, n_centers
        )
        more = np.empty(6 + late.size, np.int64)
        more[:4] = flags
        more[4] = j
        more[5] = same
        more[6:] = late
        flags = more
    return fv, iv, ok, flags, score, chosen


def _explain_index_py(
    pool_center: np.ndarray,
    pool: np.ndarray,
    slot: np.ndarray,
    start_h: np.ndarray,
    feasible: np.ndarray,
    score: np.ndarray,
    i: int,
    n_centers: int,
) -> tuple[int, int, np.ndarray]:
    """What the reasons for option `i` name: see `explain_index`."""
    n = pool.size
    ci = pool_center[pool[i]]
    j = -1
    for k in range(n):
        if feasible[k] and pool_center[pool[k]] != ci:
            v = score[k]
            if j < 0 or v < score[j] or (v != v and score[j] == score[j]):
                j = k
                if v != v:
                    break
    present = np.zeros(n_centers, np.bool_)
    some_ok = np.zeros(n_centers, np.bool_)
    for k in range(n):
        c = pool_center[pool[k]]
        present[c] = True
        if feasible[k]:
            some_ok[c] = True
    n_late = 0
    for c in range(n_centers):
        if present[c] and not some_ok[c]:
            n_late += 1
    late = np.empty(n_late, np.int64)
    m = 0
    for c in range(n_centers):
        if present[c] and not some_ok[c]:
            late[m] = c
            m += 1
    same = -1
    if slot[i] > 0 and start_h[i] > 0:
        lo = slot[0]
        for k in range(n):
            lo = min(lo, slot[k])
        for k in range(n):
            if pool[k] == pool[i] and slot[k] < slot[i] and slot[k] == lo:
                same = k
                break
    return j, same, late


# The compiled forms, made on first use (`_compile`); each compiled function
# calls the others through these names, so they are module globals.
_pool_window_jit: Any = _pool_window
_tariff_integral_jit: Any = _tariff_integral
_norm_min_jit: Any = _norm_min
_norm_jit: Any = _norm
_run_times_jit: Any = _run_times_py


def _input_paths_py(
    lat: np.ndarray,
    bw: np.ndarray,
    unlimited: np.ndarray,
    local: np.ndarray,
    per_gb: np.ndarray,
    gb: float,
    t: np.ndarray,
    price: np.ndarray,
    best: np.ndarray,
) -> None:
    """One input of `gb` GB, with replicas as rows: add its seconds and ¥ to each center.

    Per center (column), the replica whose transfer takes least (`best`, numpy's
    `argmin`: the first minimum, or the first NaN) gives `t` its seconds
    (``latency + GB × 8 / bandwidth``; 0 over an unlimited or zero-latency
    path, and for an empty input) and `price` its ¥ (GB × ¥/GB, 0 where the
    price is not finite): `framework._inputs`' arithmetic, in numpy's order.
    """
    n_rep, n_c = lat.shape
    g8 = gb * 8.0
    for c in range(n_c):
        bi = 0
        bv = 0.0
        for r in range(n_rep):
            v = 0.0
            if gb > 0 and not local[r, c] and not unlimited[r, c]:
                v = lat[r, c] + g8 / bw[r, c]
            if r == 0 or (not math.isnan(bv) and (math.isnan(v) or v < bv)):
                bi = r
                bv = v
        best[c] = bi
        t[c] += bv
        p = per_gb[bi, c]
        price[c] += gb * (p if math.isfinite(p) else 0.0)


_evaluate_jit: Any = None
_windows_jit: Any = None
_explain_index_jit: Any = None
_prune_jit: Any = None
_input_paths_jit: Any = None
_lock = threading.Lock()


def _compile() -> None:
    """Compile (or load from numba's cache) every kernel; once per process."""
    global _pool_window_jit, _tariff_integral_jit, _norm_min_jit, _norm_jit, _run_times_jit
    global _evaluate_jit, _windows_jit, _explain_index_jit, _prune_jit, _input_paths_jit
    with _lock:
        if _evaluate_jit is not None:
            return
        import numba

        def jit(fn: Callable[..., Any], inline: Literal["never", "always"] = "never") -> Any:
            # No fastmath: float operations must stay exactly numpy's. Helpers are
            # inlined into their callers (no call, no reference counting per pool).
            return numba.njit(cache=True, nogil=True, error_model="numpy", inline=inline)(fn)

        _pool_window_jit = jit(_pool_window, "always")
        _tariff_integral_jit = jit(_tariff_integral, "always")
        _norm_min_jit = jit(_norm_min, "always")
        _norm_jit = jit(_norm, "always")
        _run_times_jit = jit(_run_times_py)
        _windows_jit = jit(_windows_py)
        _explain_index_jit = jit(_explain_index_py)
        _prune_jit = jit(_prune_py)
        _input_paths_jit = jit(_input_paths_py)
        _evaluate_jit = jit(_evaluate_py)  # calls the ones above: compiled last


class Evaluated(NamedTuple):
    """The result of `evaluate_options`.

    `fv[F_*, k]` and `iv[I_*, k]` are option k's values; `feasible[k]` whether
    it may be chosen; `flags` = (every option with a slot runs past the
    horizon, no pool has a slot, the option the deadline message names or -1,
    the option the budget message names or -1), followed, when a best option
    was chosen and the centers were given, by `explain_index` of it (j, same,
    then the late centers); `score` the profile's score of every option (inf
    where infeasible; empty unless asked) and `best` the chosen option (-1:
    none feasible, or not asked).
    """

    fv: np.ndarray
    iv: np.ndarray
    feasible: np.ndarray
    flags: np.ndarray
    score: np.ndarray
    best: int


def evaluate_options(*args: Any) -> Evaluated:
    """Every (pool, start) option of one job against the calendar `free`.

    Arguments, in order: `free` [P, S] int64 (not modified); the job's pools
    and, per pool, its transfer seconds, transfer ¥ and PFLOPS per chip;
    `count`, `cu_hours`; the snapshot's `frac` and `hour0.hour + frac`;
    the later start slots to try (`cols`); whether the job has a deadline and
    the hours to it; whether it has a budget and the ¥; the horizon in hours;
    the index's TDP kW, PUE, flattened cumulative tariff, service ¥/CU·h and
    carbon per pool; whether to score, and the profile's cost, time and carbon
    weights; the index's center of each pool and the number of centers (0: do
    not work out what the reasons name). Options are each pool's earliest
    start, then the later starts pool by pool (numpy's `nonzero` order), as
    `framework.evaluate` lists them.
    """
    if _evaluate_jit is None:
        _compile()
    return Evaluated(*_evaluate_jit(*args))


def prune(*args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_prune_py`: the pools' lower-bound scores and the best `keep_n` of them.

    Arguments, in order: the job's pools and, per pool, PFLOPS per chip,
    transfer seconds and ¥; the index's TDP kW, PUE, cheapest tariff and
    service ¥/CU·h per pool; `count`, `cu_hours`; whether the profile is scored
    by its weights, the weights; how many pools to keep.
    """
    if _evaluate_jit is None:
        _compile()
    out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = _prune_jit(*args)
    return out


def input_paths(
    lat: np.ndarray,
    bw: np.ndarray,
    unlimited: np.ndarray,
    local: np.ndarray,
    per_gb: np.ndarray,
    gb: float,
    t: np.ndarray,
    price: np.ndarray,
) -> np.ndarray:
    """`_input_paths_py`: adds one input's seconds and ¥ to `t` and `price` (per center).

    Returns, per center, the row (replica) it is fetched from.
    """
    if _evaluate_jit is None:
        _compile()
    best = np.empty(t.size, np.int64)
    _input_paths_jit(lat, bw, unlimited, local, per_gb, gb, t, price, best)
    return best


def windows(
    blocked: np.ndarray, n_first: np.ndarray, n_later: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earliest start slot per row of `blocked`, whether it has one, and which `cols` fit.

    The kernel's own window rule (a start s fits when no slot of [s, s + n) is
    blocked; n = `n_first` for slot 0, else `n_later`), on a boolean calendar.
    """
    if _windows_jit is None:
        _compile()
    free = np.where(blocked, 0, 1).astype(np.int64)
    out: tuple[np.ndarray, np.ndarray, np.ndarray] = _windows_jit(
        free,
        1,
        np.asarray(n_first, np.int64),
        np.asarray(n_later, np.int64),
        np.asarray(cols, np.int64),
    )
    return out


def explain_index(
    pool_center: np.ndarray,
    pool: np.ndarray,
    slot: np.ndarray,
    start_h: np.ndarray,
    feasible: np.ndarray,
    score: np.ndarray,
    i: int,
    n_centers: int,
) -> tuple[int, int, np.ndarray]:
    """What the reasons for option `i` name, by `score` (lower is better).

    (j, same, late): j is the best feasible option at another center (-1:
    none); `same` the first option on `i`'s pool at the earliest slot of all,
    before `i`'s (-1: none, or `i` starts now); `late` the centers, ascending,
    that have options but no feasible one.
    """
    if _explain_index_jit is None:
        _compile()
    out: tuple[int, int, np.ndarray] = _explain_index_jit(
        pool_center, pool, slot, start_h, feasible, score, i, n_centers
    )
    return out


def warm_up() -> float:
    """Compile the kernels (or load them from numba's cache) now; seconds it took.

    A process's first scheduling cycle does this anyway; calling it ahead (at
    server start, in a background thread: `warm_up_in_background`, or once
    after installing with
    ``python -c "from computenet.scheduler.kernel import warm_up; warm_up()"``)
    keeps that time out of a cycle.
    """
    import time
    from datetime import datetime

    from computenet.catalog.generate import generated_network
    from computenet.model import Dataset
    from computenet.model.center import CST
    from computenet.scheduler import framework
    from computenet.scheduler.greedy import greedy_cycle
    from computenet.scheduler.snapshot import JobRequest, build_snapshot

    t0 = time.perf_counter()
    # A real (tiny) cycle, so that every specialization the cycle uses is made: a job
    # with an input (its transfers), one without, and the pruning of large networks.
    net = generated_network(3, seed=0)
    now = datetime(2026, 1, 1, 10, 30, tzinfo=CST)
    data = Dataset(id="warm", size_bytes=10**9, sha256="0" * 64, replicas=(net.centers[0].id,))
    jobs = [
        JobRequest(
            id=f"warm-{k}",
            workload_class="llm-train",
            count=1,
            cu_hours=1.0,
            inputs=(data,) if k else (),
        )
        for k in range(2)
    ]
    snap = build_snapshot(net, now)
    greedy_cycle(snap, jobs)
    # The pruning's arguments as `framework.prune_pools` passes them (there, only
    # beyond MAX_POOLS_CHECKED eligible pools).
    jp, idx = framework._eligible(snap, jobs[1]), snap.index
    prune(
        jp.pools,
        jp.pflops,
        jp.transfer_s,
        jp.transfer_cny,
        idx.tdp_kw,
        idx.pue,
        idx.tariff_min,
        idx.service,
        1,
        1.0,
        True,
        1.0,
        0.0,
        0.0,
        framework.MAX_POOLS_CHECKED,
    )
    windows(np.zeros((1, 2), np.bool_), np.ones(1, np.int64), np.ones(1, np.int64), np.ones(1))
    return time.perf_counter() - t0


def warm_up_in_background() -> threading.Thread:
    """`warm_up` in a daemon thread (a server's start goes on meanwhile); a failure is logged.

    A cycle that starts before it is done waits for the compilation it would
    have done itself (`_compile` holds a lock), so nothing is compiled twice.
    """

    def run() -> None:
        try:
            took = warm_up()
        except Exception:  # the first cycle compiles then, and reports any error itself
            log.warning("warming up the scheduler's kernels failed", exc_info=True)
        else:
            log.info("scheduler kernels ready in %.2f s", took)

    thread = threading.Thread(target=run, name="kernel-warm-up", daemon=True)
    thread.start()
    return thread
