"""The network backend prices the parent's quote requests with the child's own scheduler."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx

from computenet.backends.network import NetworkBackend
from computenet.model import JobSpec
from computenet.protocol.center import QuoteRequest
from computenet.sdk import Client
from tests.unit.backends.test_network import Region, backend_for
from tests.unit.backends.test_network import region as region


def ask(job_id: str = "j1", types: tuple[str, ...] = ("H100",), **kw: object) -> QuoteRequest:
    spec = JobSpec.model_validate(
        {
            "name": "train",
            "class": "llm-train",
            "command": "echo hi",
            "chips": {"count": 1, "types": list(types)},
            "work": {"cu_hours": 1.0},
        }
    )
    return QuoteRequest(job_id=job_id, spec=spec, **kw)


def test_a_quote_is_the_childs_cheapest_feasible_option_and_its_real_finish(
    region: Region, tmp_path: Path
) -> None:
    backend = backend_for(region, tmp_path)
    before = time.time()
    got = backend.quote_jobs([ask()])
    assert len(got) == 1
    q = got[0]
    assert q.job_id == "j1" and q.chip == "H100" and q.reason is None
    # The child's own figures: its quote's cheapest feasible option (sz, the cheapest tariff).
    own = region_quote(region, backend)
    assert q.price_cny == own and q.energy_cny is not None and q.energy_cny <= own
    # 1 CU·h on one H100 takes some network time; at 600× it is seconds of real time.
    assert q.finish_real is not None and before < q.finish_real < before + 3600
    assert 0 < q.ttl_s <= 120


def region_quote(region: Region, backend: object) -> Decimal:
    client = Client("http://region", region.token, transport=region.transport())
    view = client.quote(
        {
            "name": "x",
            "class": "llm-train",
            "command": "true",
            "chips": {"count": 1, "types": ["H100"]},
            "work": {"cu_hours": 1.0},
        }
    )
    return Decimal(min(o.total_cny for o in view.options if o.feasible))


def test_a_job_the_child_cannot_run_gets_the_childs_reason(region: Region, tmp_path: Path) -> None:
    backend = backend_for(region, tmp_path)
    # A budget of one fen: no option of the child fits it.
    got = backend.quote_jobs([ask(budget_left_cny=Decimal("0.01"))])
    assert len(got) == 1 and got[0].price_cny is None
    assert got[0].reason and "budget" in got[0].reason


def test_a_child_that_does_not_answer_gives_no_quote(tmp_path: Path) -> None:
    def away(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = Client("http://region", "t", transport=httpx.MockTransport(away))
    backend = NetworkBackend(tmp_path / "state", {"H100": 8}, origin="cn", client=client)
    assert backend.quote_jobs([ask()]) == []


def test_an_input_the_child_lacks_is_priced_without_it(region: Region, tmp_path: Path) -> None:
    """The agent stages such an input into the child: the child prices the run, not a refusal."""
    backend = backend_for(region, tmp_path)
    a = ask()
    a = a.model_copy(update={"spec": a.spec.model_copy(update={"inputs": ("corpus",)})})
    got = backend.quote_jobs([a])
    assert len(got) == 1 and got[0].reason is None
    assert got[0].price_cny == region_quote(region, backend)
