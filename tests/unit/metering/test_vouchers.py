"""Compute vouchers: exact split of a charge, caps, expiry, eligibility, issue order."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from computenet.metering.vouchers import Voucher, apply_vouchers, paid_vec
from computenet.model.center import CST

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=CST)
DAY = timedelta(days=1)


def voucher(
    vid: int = 1,
    pct: str = "50",
    cap: str = "100",
    used: str = "0",
    centers: tuple[str, ...] = (),
    classes: tuple[str, ...] = (),
    start: datetime = T0,
    until: datetime = T0 + 30 * DAY,
) -> Voucher:
    return Voucher(
        id=vid,
        tenant="t",
        issuer=f"issuer-{vid}",
        pct=Decimal(pct),
        cap_cny=Decimal(cap),
        valid_from=start,
        valid_until=until,
        centers=centers,
        classes=classes,
        used_cny=Decimal(used),
    )


AT = T0 + DAY


def test_half_paid_then_the_cap_reached_exactly_to_the_fen() -> None:
    v = voucher(pct="50", cap="100.00")
    first = apply_vouchers(Decimal("123.45"), "a", "llm", AT, [v])
    # 50 % of 123.45 = 61.725 → 61.72 (half-even).
    assert [x.amount_cny for x in first.lines] == [Decimal("61.72")]
    assert first.paid_cny == Decimal("61.73")
    used = voucher(pct="50", cap="100.00", used="61.72")
    second = apply_vouchers(Decimal("200.00"), "a", "llm", AT, [used])
    assert [x.amount_cny for x in second.lines] == [Decimal("38.28")]
    assert second.paid_cny == Decimal("161.72")


def test_expired_or_not_yet_valid_voucher_pays_nothing() -> None:
    v = voucher(start=T0, until=T0 + DAY)
    assert apply_vouchers(Decimal(10), "a", "llm", T0 + DAY, [v]).lines == ()
    assert apply_vouchers(Decimal(10), "a", "llm", T0 - timedelta(seconds=1), [v]).lines == ()
    assert apply_vouchers(Decimal(10), "a", "llm", T0, [v]).paid_cny == Decimal("5.00")


def test_eligible_centers_and_classes() -> None:
    v = voucher(centers=("sh-1",), classes=("llm-train",))
    assert apply_vouchers(Decimal(10), "sz-1", "llm-train", AT, [v]).lines == ()
    assert apply_vouchers(Decimal(10), "sh-1", "cv", AT, [v]).lines == ()
    assert apply_vouchers(Decimal(10), "sh-1", "llm-train", AT, [v]).subsidy_cny == Decimal("5.00")


def test_stacked_vouchers_pay_their_share_of_what_is_still_owed_in_issue_order() -> None:
    first, second = voucher(1, pct="50", cap="1000"), voucher(2, pct="60", cap="1000")
    out = apply_vouchers(Decimal(100), "a", "llm", AT, [second, first])
    assert [(x.voucher_id, x.amount_cny) for x in out.lines] == [
        (1, Decimal("50.00")),
        (2, Decimal("30.00")),
    ]
    assert out.paid_cny == Decimal("20.00")


def test_a_full_voucher_pays_all_and_the_next_nothing() -> None:
    out = apply_vouchers(Decimal("9.99"), "a", "llm", AT, [voucher(1, pct="100"), voucher(2)])
    assert [x.voucher_id for x in out.lines] == [1]
    assert out.paid_cny == Decimal("0.00")


money = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False)
pcts = st.decimals(min_value=Decimal("0.01"), max_value=100, places=2, allow_nan=False)


@st.composite
def wallets(draw: st.DrawFn) -> list[Voucher]:
    n = draw(st.integers(0, 5))
    out = []
    for i in draw(st.permutations(list(range(1, n + 1)))):
        cap = draw(money)
        used = draw(st.decimals(min_value=0, max_value=cap, places=2, allow_nan=False))
        start = T0 + timedelta(hours=draw(st.integers(-48, 48)))
        out.append(
            voucher(
                i,
                pct=str(draw(pcts)),
                cap=str(cap),
                used=str(used),
                centers=tuple(draw(st.sets(st.sampled_from(["a", "b", "c"]), max_size=2))),
                classes=tuple(draw(st.sets(st.sampled_from(["llm", "cv"]), max_size=1))),
                start=start,
                until=start + timedelta(hours=draw(st.integers(1, 96))),
            )
        )
    return out


@settings(max_examples=400, deadline=None)
@given(
    charge=money,
    vs=wallets(),
    center=st.sampled_from(["a", "b", "c"]),
    cls=st.sampled_from(["llm", "cv"]),
    hours=st.integers(-72, 150),
)
def test_properties(charge: Decimal, vs: list[Voucher], center: str, cls: str, hours: int) -> None:
    at = T0 + timedelta(hours=hours)
    out = apply_vouchers(charge, center, cls, at, vs)
    by_id = {v.id: v for v in vs}
    # subsidy + paid == charge, exactly, and nobody pays a negative amount.
    assert out.subsidy_cny + out.paid_cny == charge
    assert out.paid_cny >= 0
    ids = [x.voucher_id for x in out.lines]
    # Issue order, one line per voucher.
    assert ids == sorted(set(ids))
    for line in out.lines:
        v = by_id[line.voucher_id]
        assert 0 < line.amount_cny <= v.remaining_cny  # never above the cap
        assert v.valid_at(at)  # never past expiry (nor before the start)
        assert v.covers(center, cls, at)
        assert line.amount_cny == line.amount_cny.quantize(Decimal("0.01"))
    # A voucher is skipped only when it cannot pay: ineligible, spent, or nothing owed.
    for v in sorted(vs, key=lambda x: x.id):
        if v.id not in ids and v.covers(center, cls, at) and v.remaining_cny > 0:
            before = [x for x in out.lines if x.voucher_id < v.id]
            owed = charge - sum((x.amount_cny for x in before), Decimal(0))
            assert (owed * v.pct / 100).quantize(Decimal("0.01")) == 0 or owed == 0


@settings(max_examples=200, deadline=None)
@given(
    charges=st.lists(money, min_size=1, max_size=8),
    vs=wallets(),
    centers=st.lists(st.integers(0, 2), min_size=8, max_size=8),
    hours=st.lists(st.integers(-72, 150), min_size=8, max_size=8),
    cls=st.sampled_from(["llm", "cv"]),
)
def test_vector_form_equals_the_exact_rule_within_half_a_fen_per_voucher(
    charges: list[Decimal], vs: list[Voucher], centers: list[int], hours: list[int], cls: str
) -> None:
    names = ["a", "b", "c"]
    k = len(charges)
    now = T0
    got = paid_vec(
        vs,
        np.array([float(c) for c in charges]),
        np.array(centers[:k], dtype=np.int64),
        names,
        cls,
        np.array(hours[:k], dtype=np.float64),
        now,
    )
    for i, c in enumerate(charges):
        exact = apply_vouchers(c, names[centers[i]], cls, now + timedelta(hours=hours[i]), vs)
        assert abs(got[i] - float(exact.paid_cny)) <= 0.005 * len(vs) + 1e-6 * float(c) + 1e-9
