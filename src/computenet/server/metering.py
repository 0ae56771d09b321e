"""Metering a finished job into charges, and summing charges into bills (money exact)."""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from computenet.errors import ComputeNetError, ForbiddenError, ValidationError
from computenet.metering import Charges, TransferLot, charge, fee_cny, fen
from computenet.model import JobSpec
from computenet.model.center import CST
from computenet.protocol import BillLine, BillView
from computenet.protocol.center import MeteredCharge
from computenet.protocol.vouchers import SubsidyLineView
from computenet.server.auth import Principal
from computenet.server.center_checks import fee_rate
from computenet.server.vouchers import view as voucher_view
from computenet.store.billing import charges, put_charge
from computenet.store.schema import ChargeRow, JobRow
from computenet.store.vouchers import apply_to_charge, list_vouchers, uses_of

if TYPE_CHECKING:
    from computenet.server.plane import ControlPlane

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")


def transfer_price(plane: ControlPlane, src: str | None, dst: str) -> Decimal:
    """¥/GB along the path from `src` to `dst` (0 when unknown, local or unreachable)."""
    paths = plane.paths
    if not src or src == dst or src not in paths.nodes or dst not in paths.nodes:
        return Decimal(0)
    raw = float(paths.price_per_gb[paths.index(src), paths.index(dst)])
    return paths.price(src, dst) if math.isfinite(raw) else Decimal(0)


def attempt_charges(plane: ControlPlane, job: JobRow) -> Charges | None:
    """What the job's current attempt costs, once it ended; None when it is not billed.

    Run time is from the RUNNING report to the final report (network time);
    transfer is one lot per source the agent fetched from (``bytes × data_scale``
    priced along the path from that source), see `staged_lots`. A run that
    neither ran nor moved data is not billed.
    """
    if job.finished_at is None or job.center is None or job.chip is None:
        return None
    lots = staged_lots(plane, job.usage or {}, job.center)
    if job.started_at is None and not any(lot.gb > 0 for lot in lots):
        return None
    net = plane.network
    center = net.center(job.center)
    start = job.started_at or job.finished_at
    end = max(job.finished_at, start)
    ch = charge(
        center,
        net.chips[job.chip],
        net.throughput,
        job.workload_class,
        job.chips,
        start,
        end,
        transfers=lots,
    )
    metered = (job.usage or {}).get("metered")
    if metered:
        ch = metered_charges(metered, ch.transfer_cny, fee_rate(center))
    return ch


# The fields of `Charges`, and those of them that are money (kept as exact text).
_FLOATS = ("chip_hours", "cu_hours", "kwh", "co2_kg")
_MONEY = ("energy_cny", "service_cny", "transfer_cny")


def keep_part(plane: ControlPlane, job: JobRow) -> Charges | None:
    """Add the ended current attempt's charges to the job's billed parts (a preempted run,
    `JobRow.parts_billed`), before the job goes back to the queue; returns them."""
    ch = attempt_charges(plane, job)
    end = job.finished_at
    if ch is None or end is None:  # `attempt_charges` bills only an ended attempt
        return None
    part: dict[str, Any] = {
        "attempt": job.attempt,
        "center": job.center,
        "chip": job.chip,
        "chips": job.chips,
        "started_at": (job.started_at or end).isoformat(),
        "finished_at": end.isoformat(),
        **{k: getattr(ch, k) for k in _FLOATS},
        **{k: str(getattr(ch, k)) for k in _MONEY},
    }
    job.parts_billed = [*(job.parts_billed or []), part]  # a new list: the JSON column sees it
    return ch


def _part_charges(part: dict[str, Any]) -> Charges:
    return Charges(
        chip_hours=float(part["chip_hours"]),
        cu_hours=float(part["cu_hours"]),
        kwh=float(part["kwh"]),
        co2_kg=float(part["co2_kg"]),
        energy_cny=Decimal(str(part["energy_cny"])),
        service_cny=Decimal(str(part["service_cny"])),
        transfer_cny=Decimal(str(part["transfer_cny"])),
    )


def _sum(parts: list[Charges]) -> Charges:
    zero = Decimal(0)
    return Charges(
        chip_hours=math.fsum(p.chip_hours for p in parts),
        cu_hours=math.fsum(p.cu_hours for p in parts),
        kwh=math.fsum(p.kwh for p in parts),
        co2_kg=math.fsum(p.co2_kg for p in parts),
        energy_cny=sum((p.energy_cny for p in parts), zero),
        service_cny=sum((p.service_cny for p in parts), zero),
        transfer_cny=sum((p.transfer_cny for p in parts), zero),
    )


def meter(plane: ControlPlane, s: Session, job: JobRow) -> ChargeRow | None:
    """Price a finished job and store its charges (one row per job, money exact).

    The row is the current attempt's charges (`attempt_charges`) plus those of
    the job's earlier, preempted attempts (`JobRow.parts_billed`): each attempt
    that ran is billed once, a lost one (never reported) is not. None when
    nothing is billed.
    """
    ch = attempt_charges(plane, job)
    parts = list(job.parts_billed or [])
    if ch is None and not parts:
        return None
    each = [_part_charges(p) for p in parts] + ([ch] if ch is not None else [])
    total = _sum(each)
    if ch is not None and job.center is not None and job.chip is not None:
        center, chip, chips = job.center, job.chip, job.chips
        finished = job.finished_at
    else:
        last = parts[-1]
        center, chip, chips = str(last["center"]), str(last["chip"]), int(last["chips"])
        finished = datetime.fromisoformat(str(last["finished_at"]))
    assert finished is not None
    started = datetime.fromisoformat(str(parts[0]["started_at"])) if parts else job.started_at
    end = max(finished, started or finished)
    row = ChargeRow(
        job_id=job.id,
        tenant_id=job.tenant_id,
        period=period_of(end),
        job_name=job.name,
        center=center,
        chip=chip,
        chips=chips,
        started_at=started,
        finished_at=finished,
        chip_hours=total.chip_hours,
        cu_hours=total.cu_hours,
        kwh=total.kwh,
        co2_kg=total.co2_kg,
        energy_cny=total.energy_cny,
        service_cny=total.service_cny,
        transfer_cny=total.transfer_cny,
        total_cny=total.total_cny,
    )
    job.cost_cny = total.total_cny
    stored = put_charge(s, row)
    # The tenant's compute vouchers pay their share in this same transaction, replacing
    # what they paid of an earlier metering of this job (store.vouchers.apply_to_charge).
    apply_to_charge(s, job.id, job.tenant_id, total.total_cny, center, job.workload_class, end)
    return stored


def metered_charges(
    metered: dict[str, Any], own_transfer_cny: Decimal, fee: Decimal = Decimal(0)
) -> Charges:
    """The charges of a run a region metered itself (`UsageReport.metered`, docs/federation.md).

    The bill line is the region's, to the fen, plus the region's declared service
    fee (`fee`, a fraction: its ``fee:P%`` tag) on that line's total, rounded once
    to the fen and billed as service, plus what moving the inputs into the region
    cost on this network's own links (its transfer lots, priced here, no fee).
    """
    m = MeteredCharge.model_validate(metered)
    return Charges(
        chip_hours=m.chip_hours,
        cu_hours=m.cu_hours,
        kwh=m.kwh,
        co2_kg=m.co2_kg,
        energy_cny=m.energy_cny,
        service_cny=m.service_cny + fee_cny(m.total_cny, fee),
        transfer_cny=m.transfer_cny + own_transfer_cny,
    )


def budget_left(plane: ControlPlane, row: JobRow, center_id: str, spec: JobSpec) -> Decimal | None:
    """What a region may spend of a leased job's budget (`LeasedJob.budget_left_cny`).

    The budget less what the job has cost so far, less the region's declared fee
    (its ``fee:P%`` tag), which this network adds on top of the region's bill
    line; None when the job has no budget (docs/federation.md).
    """
    if spec.budget_cny is None:
        return None
    left = max(Decimal(0), spec.budget_cny - (row.cost_cny or Decimal(0)))
    try:
        rate = fee_rate(plane.network.center(center_id))
    except (KeyError, ComputeNetError):
        rate = Decimal(0)
    return fen(left / (1 + rate))


def staged_lots(plane: ControlPlane, usage: dict[str, Any], center: str) -> list[TransferLot]:
    """The transfer lots of a usage report: one per source, each priced along its own path.

    Agents that report ``transfers`` (bytes per source) are billed lot by lot;
    older agents send only ``bytes_staged`` and ``staged_from``, billed as one lot.
    """
    scale = plane.network.data_scale
    per_source = usage.get("transfers")
    if per_source:
        return [
            TransferLot.of_bytes(
                int(t.get("bytes") or 0),
                str(t.get("source") or ""),
                transfer_price(plane, t.get("source"), center),
                scale,
            )
            for t in per_source
        ]
    n = int(usage.get("bytes_staged") or 0)
    if n <= 0:
        return []
    src = usage.get("staged_from")
    return [TransferLot.of_bytes(n, src or "", transfer_price(plane, src, center), scale)]


def period_of(t: datetime) -> str:
    """The billing period (YYYY-MM, CST) of an instant."""
    return t.astimezone(CST).strftime("%Y-%m")


def bill(plane: ControlPlane, who: Principal, tenant: str | None, period: str | None) -> BillView:
    """A tenant's bill for a month: one line per job, totals exact, by center."""
    if who.is_admin:
        tenant = tenant or who.tenant
        if not tenant:
            raise ValidationError("which tenant?", field="tenant", hint="admins pass ?tenant=NAME")
    else:
        if tenant and tenant != who.tenant:
            raise ForbiddenError(
                "only admins may read another tenant's bill",
                field="tenant",
                hint="leave tenant out to get your own bill",
            )
        tenant = who.tenant
        if not tenant:
            raise ForbiddenError("this token has no tenant", field="Authorization")
    period = period or period_of(plane.clock.now())
    m = _PERIOD.match(period)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise ValidationError(
            f"'{period}' is not a month", field="period", hint="use YYYY-MM, e.g. 2026-11"
        )
    with plane.db.read() as s:
        rows = charges(s, tenant, period)
        uses = uses_of(s, [r.job_id for r in rows])
        wallet = list_vouchers(s, tenant)
    issuers = {v.id: v.issuer for v in wallet}
    lines = [
        BillLine(
            job_id=r.job_id,
            job_name=r.job_name,
            center=r.center,
            chip=r.chip,
            chips=r.chips,
            started_at=r.started_at.astimezone(CST) if r.started_at else None,
            finished_at=r.finished_at.astimezone(CST) if r.finished_at else None,
            chip_hours=r.chip_hours,
            cu_hours=r.cu_hours,
            kwh=r.kwh,
            co2_kg=r.co2_kg,
            energy_cny=r.energy_cny,
            service_cny=r.service_cny,
            transfer_cny=r.transfer_cny,
            total_cny=r.total_cny,
            subsidies=[
                SubsidyLineView(
                    voucher_id=u.voucher_id,
                    issuer=issuers.get(u.voucher_id, ""),
                    amount_cny=u.amount_cny,
                )
                for u in uses.get(r.job_id, [])
            ],
            subsidy_cny=sum((u.amount_cny for u in uses.get(r.job_id, [])), Decimal("0.00")),
        )
        for r in rows
    ]
    by_center: dict[str, Decimal] = {}
    for line in lines:
        by_center[line.center] = by_center.get(line.center, Decimal(0)) + line.total_cny
    zero = Decimal("0.00")
    return BillView(
        tenant=tenant,
        period=period,
        lines=lines,
        by_center=dict(sorted(by_center.items())),
        energy_cny=sum((x.energy_cny for x in lines), zero),
        service_cny=sum((x.service_cny for x in lines), zero),
        transfer_cny=sum((x.transfer_cny for x in lines), zero),
        total_cny=sum((x.total_cny for x in lines), zero),
        kwh=math.fsum(x.kwh for x in lines),
        co2_kg=math.fsum(x.co2_kg for x in lines),
        cu_hours=math.fsum(x.cu_hours for x in lines),
        subsidy_cny=sum((x.subsidy_cny for x in lines), zero),
        vouchers=[voucher_view(v, plane.clock.now()) for v in wallet],
    )
