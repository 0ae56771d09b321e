"""`FakeAPI`: an in-memory stand-in for the user API, as an httpx transport, for tests.

It speaks the same schemas as the real server and checks jobs against a real
network with the scheduler's own `job_request` (so unknown chips, unknown
datasets and past deadlines are 422 with the field), but it places nothing:
jobs stay PENDING unless a test moves them (`finish`). Use it like::

    fake = FakeAPI()
    cn = Client("http://fake", fake.token, transport=fake.transport())
    other = Client("http://fake", fake.add_tenant("other"), transport=fake.transport())

It answers as the server does — one contract suite runs the same calls against
both (tests/contract/test_sdk_fake_contract.py): idempotency keys are per
tenant, a tenant sees only its own jobs, cancelling a cancelled job returns it
unchanged and cancelling a finished one is 409 on ``state``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pydantic

from computenet.catalog import load_network
from computenet.catalog.loader import pydantic_field_error
from computenet.errors import ComputeNetError, ConflictError, NotFoundError
from computenet.model import TERMINAL_STATES, Dataset, JobSpec, JobState, Network
from computenet.model.center import CST
from computenet.model.job import parse_states
from computenet.model.limits import MAX_PAGE
from computenet.protocol import (
    BillView,
    CenterView,
    DatasetCreate,
    DatasetView,
    JobDetail,
    JobEvent,
    JobView,
    LogChunk,
    QuoteView,
    SubmitRequest,
    WhoAmI,
)
from computenet.scheduler import build_snapshot, job_request, quote


@dataclass
class FakeAPI:
    """In-memory user API over one network; `requests` records every call made."""

    network: Network = field(default_factory=lambda: load_network("demo"))
    token: str = "fake-token"
    tenant: str = "acme"
    now: datetime = datetime(2026, 12, 1, 21, 30, tzinfo=CST)
    jobs: dict[str, JobDetail] = field(default_factory=dict)
    # (tenant, idempotency key) -> job id: a key is one tenant's, as on the server.
    keys: dict[tuple[str, str], str] = field(default_factory=dict)
    # More tokens, each a user of another tenant: token -> tenant (see `add_tenant`).
    tenants: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, DatasetView] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def add_tenant(self, tenant: str, token: str | None = None) -> str:
        """A user token of another `tenant` (made up unless given), to test tenant scopes."""
        tok = token or f"fake-token-{tenant}"
        self.tenants[tok] = tenant
        return tok

    def finish(self, job_id: str, state: JobState = JobState.SUCCEEDED, output: str = "") -> None:
        """Move a job to a final `state` with `output` as its log, as if a center ran it."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"{state.value} is not a final state")
        job = self.jobs[job_id]
        self.jobs[job_id] = job.model_copy(
            update={
                "state": state,
                "exit_code": 0 if state is JobState.SUCCEEDED else job.exit_code,
                "events": [*job.events, JobEvent(at=self.now, state=state, message="finished")],
            }
        )
        self.logs[job_id] = output

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers from this fake."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request, errors as `ErrorBody`."""
        self.requests.append(request)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        tenant = self.tenant if token == self.token else self.tenants.get(token or "")
        if tenant is None:
            return _error(401, "missing or unknown token", "token", "pass --token")
        try:
            status, body = self._route(request, tenant)
        except ComputeNetError as exc:
            return _error(exc.status_code, exc.message, exc.field, exc.hint)
        except pydantic.ValidationError as exc:
            err = pydantic_field_error(exc)
            return _error(422, err.message, err.field, err.hint)
        return httpx.Response(status, json=_plain(body))

    def _route(self, r: httpx.Request, tenant: str) -> tuple[int, Any]:
        path, method = r.url.path, r.method
        parts = path.strip("/").split("/")[2:]  # drop api/v1
        body = json.loads(r.content) if r.content else None
        if method == "POST" and parts == ["jobs"]:
            return self._submit(SubmitRequest.model_validate(body), tenant)
        if method == "GET" and parts == ["jobs"]:
            states = parse_states(r.url.params.get("state"))
            limit = int(r.url.params.get("limit", str(MAX_PAGE)))
            views = [
                JobView.model_validate(j.model_dump())
                for j in reversed(self.jobs.values())
                if j.tenant == tenant and (states is None or j.state in states)
            ]
            return 200, views[:limit]
        if parts[:1] == ["jobs"] and len(parts) >= 2:
            job = self.jobs.get(parts[1])
            if job is None or job.tenant != tenant:  # another tenant's job is not there at all
                raise NotFoundError(
                    f"no job '{parts[1]}'", field="job_id", hint="cnet jobs lists yours"
                )
            if len(parts) == 2:
                return 200, job
            if parts[2] == "cancel" and method == "POST":
                return 200, self._cancel(job)
            if parts[2] == "logs":
                text = self.logs.get(job.id, "")
                off = int(r.url.params.get("offset", "0"))
                data = text.encode()[off:].decode()
                return 200, LogChunk(
                    text=data,
                    offset=off,
                    next_offset=len(text.encode()),
                    complete=job.state in TERMINAL_STATES,
                )
        if method == "POST" and parts == ["quote"]:
            return 200, self._quote(body, tenant)
        if parts == ["centers"]:
            return 200, [self._center(c.id) for c in self.network.centers]
        if parts == ["network"]:
            return 200, {
                "name": self.network.name,
                "time_scale": self.network.time_scale,
                "data_scale": self.network.data_scale,
                "now": self.now,
                "centers": [c.id for c in self.network.centers],
                "sites": [s.id for s in self.network.sites],
                "links": [link.model_dump(mode="json") for link in self.network.links],
            }
        if parts == ["datasets"]:
            if method == "POST":
                d = DatasetCreate.model_validate(body)
                view = DatasetView(
                    id=d.id,
                    tenant=tenant,
                    size_bytes=d.size_bytes,
                    sha256=d.sha256,
                    residency=d.residency,
                    # As the server does: no path means the tenant's area, by id.
                    replicas=[{"center": d.center, "path": d.path or f"tenants/{tenant}/{d.id}"}],
                )
                self.datasets[d.id] = view
                return 201, view
            return 200, [v for v in self.datasets.values() if v.tenant == tenant]
        if parts == ["bill"]:
            bill = self._bill(r.url.params.get("period") or self.now.strftime("%Y-%m"))
            return 200, bill.model_copy(update={"tenant": tenant})
        if parts == ["whoami"]:
            return 200, WhoAmI(subject="alice", role="user", tenant=tenant)
        raise NotFoundError(f"no route {method} {path}")

    def _submit(self, req: SubmitRequest, tenant: str) -> tuple[int, JobDetail]:
        # As on the server, a key is the tenant's, and a key seen gets its first job
        # back even when this request's spec would not pass validation now.
        seen = self.keys.get((tenant, req.idempotency_key)) if req.idempotency_key else None
        if seen is not None:
            return 200, self.jobs[seen]
        ds = self._dataset_models(tenant)
        jid = f"j-{len(self.jobs) + 1:04d}"
        jr = job_request(jid, req.spec, self.network, self.now, ds)
        job = JobDetail(
            id=jid,
            name=req.spec.name,
            tenant=tenant,
            workload_class=req.spec.workload_class,
            state=JobState.PENDING,
            submitted_at=self.now,
            deadline=jr.deadline,
            spec=req.spec,
            reasons=["waiting for the next scheduling cycle"],
            events=[JobEvent(at=self.now, state=JobState.PENDING, message="submitted")],
        )
        self.jobs[jid] = job
        if req.idempotency_key:
            self.keys[(tenant, req.idempotency_key)] = jid
        return 201, job

    def _cancel(self, job: JobDetail) -> JobView:
        if job.state is JobState.CANCELLED:  # cancelling twice is no error: same job back
            return JobView.model_validate(job.model_dump())
        if job.state in TERMINAL_STATES:
            raise ConflictError(
                f"job '{job.id}' already {job.state.value}", field="state", hint="nothing to cancel"
            )
        event = JobEvent(at=self.now, state=JobState.CANCELLED, message="cancelled by alice")
        new = job.model_copy(
            update={
                "state": JobState.CANCELLED,
                "reasons": ["cancelled by alice"],
                "events": [*job.events, event],
            }
        )
        self.jobs[job.id] = new
        return JobView.model_validate(new.model_dump())

    def _quote(self, body: Any, tenant: str) -> QuoteView:
        spec = JobSpec.model_validate(body)
        ds = self._dataset_models(tenant)
        jr = job_request("quote", spec, self.network, self.now, ds)
        res = quote(build_snapshot(self.network, self.now, datasets=ds), jr)
        return QuoteView(
            options=res.options,
            infeasible_reasons=res.infeasible_reasons,
            now=self.now,
            notes=res.notes,
        )

    def _dataset_models(self, tenant: str) -> dict[str, Dataset]:
        return {
            k: Dataset(
                id=v.id,
                size_bytes=v.size_bytes,
                sha256=v.sha256,
                residency=v.residency,
                replicas=tuple(r["center"] for r in v.replicas),
            )
            for k, v in self.datasets.items()
            if v.tenant == tenant
        }

    def _center(self, cid: str) -> CenterView:
        c = self.network.center(cid)
        return CenterView(
            id=c.id,
            name=c.name,
            hub=c.hub,
            region=c.region,
            lat=c.lat,
            lon=c.lon,
            backend=c.backend,
            online=True,
            pools=[{"chip": p.chip, "total": p.count, "free": p.count} for p in c.pools],
            pue=c.pue,
            tariff_now=c.tariff.price_at(self.now),
            tariff_hourly=list(c.tariff.hourly),
            carbon_kg_per_kwh=c.carbon_kg_per_kwh,
            service_price_per_cuh=c.service_price_per_cuh,
        )

    def _bill(self, period: str) -> BillView:
        zero = Decimal("0.00")
        return BillView(
            tenant=self.tenant,
            period=period,
            lines=[],
            energy_cny=zero,
            service_cny=zero,
            transfer_cny=zero,
            total_cny=zero,
            kwh=0.0,
            co2_kg=0.0,
            cu_hours=0.0,
        )


def _error(status: int, error: str, fld: str | None, hint: str | None) -> httpx.Response:
    return httpx.Response(status, json={"error": error, "field": fld, "hint": hint})


def _plain(body: Any) -> Any:
    if isinstance(body, pydantic.BaseModel):
        return body.model_dump(mode="json", by_alias=True)
    if isinstance(body, list):
        return [_plain(b) for b in body]
    if isinstance(body, dict):
        return {k: _plain(v) for k, v in body.items()}
    if isinstance(body, datetime):
        return body.isoformat()
    return body
