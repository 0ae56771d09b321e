"""The control plane's quote book (server/quotes.py): what it keeps, for how long, and for whom."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from computenet.catalog import network_from_dict
from computenet.errors import ValidationError
from computenet.protocol.center import JobQuote
from computenet.server.quotes import QuoteBook, check_quotes, snapshot_quotes

T0 = 1_800_000_000.0


def center(cid: str, tags: list[str]) -> dict[str, Any]:
    return {
        "id": cid,
        "region": cid,
        "lat": 22.5,
        "lon": 114.1,
        "pools": [{"chip": "H100", "count": 2}],
        "pue": 1.2,
        "tariff": {"flat": 0.5, "peak": 1, "valley": 1},
        "carbon_kg_per_kwh": 0.5,
        "service_price_per_cuh": 1,
        "tags": tags,
    }


NET = network_from_dict(
    {
        "name": "cn",
        "centers": [center("gba", ["region", "fee:5%"]), center("plain", [])],
        "links": [],
    }
)


def price(job_id: str, cny: str = "10.00", ttl_s: float = 30.0, **kw: Any) -> JobQuote:
    return JobQuote(job_id=job_id, price_cny=Decimal(cny), finish_real=T0 + 3600, ttl_s=ttl_s, **kw)


def test_only_answers_to_what_was_asked_are_kept_and_a_stale_quote_is_ignored() -> None:
    book = QuoteBook()
    assert book.hold("j1", ["gba"], T0, wait_s=5.0, may_wait=True) == ["gba"]
    assert book.take("gba", T0) == ["j1"]
    assert book.take("gba", T0 + 1) == []  # handed out: not again at once
    book.received("gba", [price("j1", ttl_s=2.0), price("never-asked")], T0 + 1)
    assert book.fresh("j1", "gba", T0 + 2)
    assert set(book.quotes(T0 + 2)) == {"j1"}  # the unasked one was not kept
    # Past its ttl (received at T0+1, good for 2 s) the quote is gone: stale, ignored.
    assert not book.fresh("j1", "gba", T0 + 3.5)
    assert book.quotes(T0 + 3.5) == {}


def test_a_job_waits_once_at_most_the_wait_and_an_interactive_one_never() -> None:
    book = QuoteBook()
    assert book.hold("j1", ["gba"], T0, wait_s=5.0, may_wait=True) == ["gba"]
    assert book.hold("j1", ["gba"], T0 + 4.9, wait_s=5.0, may_wait=True) == ["gba"]
    assert book.hold("j1", ["gba"], T0 + 5.1, wait_s=5.0, may_wait=True) == []
    assert book.hold("j2", ["gba"], T0, wait_s=5.0, may_wait=False) == []
    assert book.take("gba", T0) == ["j1", "j2"]  # both asked all the same
    # A quote in: nothing to wait for.
    book.received("gba", [price("j3")], T0)
    assert book.hold("j3", ["gba"], T0, wait_s=5.0, may_wait=True) == ["gba"]
    book.received("gba", [price("j3")], T0 + 0.5)
    assert book.hold("j3", ["gba"], T0 + 0.6, wait_s=5.0, may_wait=True) == []


def test_a_region_says_it_answers_quotes_by_sending_the_field_even_empty() -> None:
    book = QuoteBook()
    book.received("gba", None, T0)
    assert not book.answering("gba", T0, within_s=20)
    book.received("gba", [], T0)
    assert book.answering("gba", T0 + 10, within_s=20)
    assert not book.answering("gba", T0 + 30, within_s=20)


def test_forget_drops_what_was_asked_of_jobs_no_longer_pending() -> None:
    book = QuoteBook()
    book.hold("j1", ["gba"], T0, wait_s=5.0, may_wait=True)
    book.hold("j2", ["gba"], T0, wait_s=5.0, may_wait=True)
    book.forget({"j2": "[]"})
    assert book.take("gba", T0) == ["j2"]


def test_quotes_only_from_a_region_and_only_for_its_chips() -> None:
    check_quotes(NET.center("gba"), [price("j1", chip="H100")])
    check_quotes(NET.center("plain"), None)
    with pytest.raises(ValidationError) as got:
        check_quotes(NET.center("plain"), [])
    assert got.value.field == "quotes"
    with pytest.raises(ValidationError) as got:
        check_quotes(NET.center("gba"), [price("j1"), price("j2", chip="A100")])
    assert got.value.field == "quotes[1].chip"


def test_the_snapshot_carries_the_regions_price_its_declared_fee_and_finish_here() -> None:
    book = QuoteBook()
    book.hold("j1", ["gba"], T0, wait_s=5.0, may_wait=True)
    book.take("gba", T0)
    book.received(
        "gba",
        [
            price("j1", "10.01", chip="H100", energy_cny=Decimal("2.00")),
            JobQuote(job_id="j1", chip="A100", reason="no A100 free", ttl_s=30),
        ],
        T0,
    )
    epoch = datetime(2026, 12, 1, tzinfo=UTC)
    plane = SimpleNamespace(
        network=NET,
        quotes=book,
        clock=SimpleNamespace(to_network=lambda real: epoch + timedelta(seconds=real - T0)),
    )
    got = {q.chip: q for q in snapshot_quotes(plane, T0 + 1)["j1"]}
    h100 = got["H100"]
    assert h100.own_cny == Decimal("10.01") and h100.fee_cny == Decimal("0.50")
    assert h100.total_cny == Decimal("10.51") and h100.energy_cny == Decimal("2.00")
    assert h100.finish == epoch + timedelta(hours=1)
    assert got["A100"].reason == "no A100 free" and got["A100"].own_cny is None


def test_the_quote_fields_are_off_the_wire_while_unset() -> None:
    """The protocol's version rule: an ordinary center's messages are what they were."""
    from computenet.protocol.center import HeartbeatReply, HeartbeatRequest

    assert "quote_requests" not in HeartbeatReply(lease_timeout_s=30).model_dump(mode="json")
    assert "quotes" not in HeartbeatRequest(center_id="east").model_dump(mode="json")
    # An empty list is sent: it says the region answers quotes.
    assert HeartbeatRequest(center_id="gba", quotes=[]).model_dump(mode="json")["quotes"] == []
    no = JobQuote(job_id="j1", reason="no H100", ttl_s=30).model_dump(mode="json")
    assert set(no) == {"job_id", "reason", "ttl_s"}


@pytest.mark.parametrize(
    "body",
    [
        {"job_id": "j1", "ttl_s": 30},  # neither price nor reason
        {"job_id": "j1", "price_cny": "1.00", "ttl_s": 30},  # a price without a finish
        {"job_id": "j1", "price_cny": "1.00", "finish_real": 1e9, "reason": "x", "ttl_s": 30},
        {"job_id": "j1", "price_cny": "1.00", "energy_cny": "2.00", "finish_real": 1e9, "ttl_s": 3},
        {"job_id": "j1", "price_cny": "1.001", "finish_real": 1e9, "ttl_s": 30},  # not to the fen
        {"job_id": "j1", "reason": "x", "ttl_s": 121},
        {"job_id": "j1", "reason": "x", "ttl_s": 0},
    ],
)
def test_a_malformed_quote_is_refused(body: dict[str, Any]) -> None:
    from pydantic import ValidationError as Invalid

    with pytest.raises(Invalid):
        JobQuote.model_validate(body)
