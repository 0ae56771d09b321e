"""One cost model: a planned or measured usage → energy, service and transfer ¥.

A usage is chips of one TDP held from `start` to `end` at a center (its PUE
and hourly tariff), the CU·h delivered, and the data brought in as lots of
(GB, source, ¥/GB along the path from that source). `price` turns it into
exact money (Decimal, each component rounded half-even to the fen once):
placements, quotes, the server's bills and the simulator's totals all call it.

The scheduler compares thousands of (pool, start) options at once. The
vector form `option_costs` (float ¥, same formula: energy integrated over
the tariff hour by hour, service per CU·h, transfer per GB) prices them for
the LP bound, which also prices a chip-hour with `energy_cny_per_chip_hour`;
the cycle runs the same formula compiled (`scheduler/kernel.py`). Two tests
chain them: the vector form equals `price` to the fen on random inputs
(tests/unit/metering/test_cost_model.py), and the kernel's options equal the
vector form's to the last bit (tests/unit/scheduler/test_kernel_equal.py).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import numpy as np

from computenet.model import Center, CostBreakdown
from computenet.model.center import CST, Tariff

GB = Decimal(10**9)
FEN = Decimal("0.01")


def fen(x: Decimal) -> Decimal:
    """Round ¥ to the fen, half-even."""
    return x.quantize(FEN, rounding=ROUND_HALF_EVEN)


_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US


def energy_cost_cny(
    center: Center, chips: int, tdp_w: float, start: datetime, end: datetime
) -> Decimal:
    """¥ for the energy of `chips` chips from `start` to `end`, hour by hour on the tariff.

    Exact: the microseconds spent in each local hour of the day, each priced at
    that hour's ¥/kWh, summed in Decimal — as the integral of the tariff from
    local midnight (`_tariff_integral`) at the end less at the start, whole
    days at once; every step is exact, so the sum is the hour-by-hour one.
    """
    if end <= start:
        return Decimal(0)
    if start.tzinfo is not None:
        # µs into the local day: CST is a fixed offset, so whole days since a local
        # midnight are whole local days (exact integers, as the fields below give).
        pos = ((start - _LOCAL_MIDNIGHT) // _US) % _DAY_US
    else:
        local = start.astimezone(CST)
        pos = (local.hour * 3600 + local.minute * 60 + local.second) * 1_000_000 + local.microsecond
    days, left = divmod((end - start) // _US, _DAY_US)
    cum = _tariff_integral(center.tariff)
    total = _integral_to(cum, pos + left) - _integral_to(cum, pos)
    if days:
        total += days * cum[24]
    return fen(_meter_kw(chips, tdp_w, center.pue) * total / _HOUR_US_D)


_US = timedelta(microseconds=1)
_HOUR_US_D = Decimal(_HOUR_US)
_LOCAL_MIDNIGHT = datetime(1970, 1, 1, tzinfo=CST)


@functools.lru_cache(maxsize=1024)
def _meter_kw(chips: int, tdp_w: float, pue: float) -> Decimal:
    """kW at the meter, exact in Decimal from the catalog's figures."""
    return Decimal(chips) * Decimal(str(tdp_w)) * Decimal(str(pue)) / Decimal(1000)


# id(tariff) → (the tariff, its integral): the entry holds the tariff, so its id is
# not reused while the entry lives (hashing 24 Decimals per call would cost more).
_INTEGRALS: dict[int, tuple[Tariff, tuple[Decimal, ...]]] = {}


def _tariff_integral(tariff: Tariff) -> tuple[Decimal, ...]:
    """µs × ¥/kWh from local midnight to the start of each hour h = 0..24 (exact), then
    each hour's own ¥/kWh (at 25 + h)."""
    hit = _INTEGRALS.get(id(tariff))
    if hit is not None and hit[0] is tariff:
        return hit[1]
    hourly = tariff.hourly
    out = [Decimal(0)]
    for h in range(24):
        out.append(out[-1] + Decimal(_HOUR_US) * hourly[h])
    cum = (*out, *hourly)
    if len(_INTEGRALS) > 4096:
        _INTEGRALS.clear()
    _INTEGRALS[id(tariff)] = (tariff, cum)
    return cum


def _integral_to(cum: tuple[Decimal, ...], us: int) -> Decimal:
    """µs × ¥/kWh from local midnight to `us` µs after it (less than two days)."""
    day, into = divmod(us, _DAY_US)
    hour, rest = divmod(into, _HOUR_US)
    out = cum[hour] + rest * cum[25 + hour] if rest else cum[hour]
    return out + cum[24] if day else out


@dataclass(frozen=True)
class TransferLot:
    """Data brought to the center from one source: GB, where from, and ¥/GB along the path."""

    gb: Decimal
    source: str
    price_per_gb: Decimal

    @classmethod
    def of_bytes(
        cls, n_bytes: int, source: str, price_per_gb: Decimal, data_scale: float = 1.0
    ) -> TransferLot:
        """A lot of `n_bytes` measured bytes (× the network's data scale) from `source`."""
        return cls(
            Decimal(int(n_bytes)) * Decimal(repr(float(data_scale))) / GB, source, price_per_gb
        )

    @classmethod
    def of_gb(cls, gb: float, source: str, price_per_gb: Decimal) -> TransferLot:
        """A lot of `gb` GB (a planned size) from `source`."""
        return cls(Decimal(repr(float(gb))), source, price_per_gb)

    @property
    def cny(self) -> Decimal:
        """The lot's ¥, unrounded."""
        return self.gb * self.price_per_gb


@dataclass(frozen=True)
class Usage:
    """What a job uses, planned or measured: the chips' run, the work done, the data moved in."""

    chips: int
    tdp_w: float
    start: datetime
    end: datetime
    cu_hours: float
    transfers: tuple[TransferLot, ...] = ()


def transfer_cny(lots: Iterable[TransferLot]) -> Decimal:
    """¥ for the data moved in: every lot at its own path's price, rounded once."""
    return fen(sum((lot.cny for lot in lots), Decimal(0)))


def service_cny(center: Center, cu_hours: float) -> Decimal:
    """¥ for the work delivered, at the center's price per CU·h."""
    return fen(Decimal(repr(float(cu_hours))) * center.service_price_per_cuh)


def fee_cny(amount: Decimal, rate: Decimal) -> Decimal:
    """A service fee of `rate` (0.05 for 5 %) on `amount` ¥, rounded once to the fen.

    A region's declared fee on its own bill line (docs/federation.md): the parent
    bills the region's amount to the fen plus this.
    """
    return fen(amount * rate)


def price(center: Center, usage: Usage) -> CostBreakdown:
    """The exact ¥ of `usage` at `center`: energy hour by hour on its tariff, service, transfer."""
    return CostBreakdown(
        energy_cny=energy_cost_cny(center, usage.chips, usage.tdp_w, usage.start, usage.end),
        service_cny=service_cny(center, usage.cu_hours),
        # Most runs move nothing in: the empty sum rounded is always this same ¥0.00.
        transfer_cny=transfer_cny(usage.transfers) if usage.transfers else _NO_TRANSFER,
    )


_NO_TRANSFER = fen(Decimal(0))


# ----------------------------------------------------------------- vector form


def cumulative_tariff(tariff: np.ndarray) -> np.ndarray:
    """[P, 25]: ¥/kW paid from local midnight to local hour h, for tariffs [P, 24] ¥/kWh."""
    cum = np.zeros((tariff.shape[0], 25))
    cum[:, 1:] = np.cumsum(tariff, axis=1)
    return cum


def tariff_integral(cum: np.ndarray, p: np.ndarray, x: np.ndarray) -> np.ndarray:
    """¥/kW paid from local midnight of day 0 to local hour `x` (may exceed 24) at pools `p`."""
    days = np.floor(x * (1.0 / 24.0))
    hx = x - days * 24.0
    h = np.minimum(hx.astype(np.int64), 23)
    flat = cum.ravel()
    at = p * 25 + h
    lo = flat.take(at)
    out: np.ndarray = days * flat.take(p * 25 + 24) + lo + (hx - h) * (flat.take(at + 1) - lo)
    return out


def meter_kw(chips: int | np.ndarray, tdp_kw: np.ndarray, pue: np.ndarray) -> np.ndarray:
    """kW drawn at the meter: chips × TDP × PUE."""
    out: np.ndarray = chips * tdp_kw * pue
    return out


def energy_cny_per_chip_hour(tdp_kw: np.ndarray, pue: np.ndarray, tariff: np.ndarray) -> np.ndarray:
    """¥ per chip-hour at each pool [P] and tariff hour [P, B]: TDP × PUE × ¥/kWh."""
    out: np.ndarray = (tdp_kw * pue)[:, None] * tariff
    return out


def option_costs(
    kw: np.ndarray,
    cum: np.ndarray,
    pool: np.ndarray,
    run_from_h: np.ndarray,
    run_h: np.ndarray,
    cu_hours: float,
    service_per_cuh: np.ndarray,
    transfer: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float ¥ (energy, service, transfer) of many options at once; `price`'s vector form.

    Option k draws `kw[k]` at pool `pool[k]` from local hour `run_from_h[k]`
    (hours after local midnight of day 0) for `run_h[k]` hours; `transfer[k]`
    is Σ GB × ¥/GB of its lots (`transfer_cny_vec`).
    """
    energy = kw * (
        tariff_integral(cum, pool, run_from_h + run_h) - tariff_integral(cum, pool, run_from_h)
    )
    return energy, cu_hours * service_per_cuh, transfer


def transfer_cny_vec(gb: float, price_per_gb: np.ndarray) -> np.ndarray:
    """Float ¥ of one lot of `gb` GB at each price (an unreachable path, inf, costs nothing)."""
    out: np.ndarray = gb * np.where(np.isfinite(price_per_gb), price_per_gb, 0.0)
    return out
