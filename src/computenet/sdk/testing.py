"""`FakeAPI`: an in-memory stand-in for the user API, as an httpx transport, for tests.

It speaks the same schemas as the real server and checks jobs against a real
network with the scheduler's own `job_request` (so unknown chips, unknown
datasets and past deadlines are 422 with the field), but it places nothing:
jobs stay PENDING unless a test moves them. Use it like::

    fake = FakeAPI()
    cn = Client("http://fake", fake.token, transport=fake.transport())
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
    keys: dict[str, str] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, DatasetView] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers from this fake."""
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request, errors as `ErrorBody`."""
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return _error(401, "missing or unknown token", "token", "pass --token")
        try:
            status, body = self._route(request)
        except ComputeNetError as exc:
            return _error(exc.status_code, exc.message, exc.field, exc.hint)
        except pydantic.ValidationError as exc:
            err = pydantic_field_error(exc)
            return _error(422, err.message, err.field, err.hint)
        return httpx.Response(status, json=_plain(body))

    def _route(self, r: httpx.Request) -> tuple[int, Any]:
        path, method = r.url.path, r.method
        parts = path.strip("/").split("/")[2:]  # drop api/v1
        body = json.loads(r.content) if r.content else None
        if method == "POST" and parts == ["jobs"]:
            return self._submit(SubmitRequest.model_validate(body))
        if method == "GET" and parts == ["jobs"]:
            state = r.url.params.get("state")
            views = [
                JobView.model_validate(j.model_dump())
                for j in reversed(self.jobs.values())
                if state is None or j.state.value == state
            ]
            return 200, views
        if parts[:1] == ["jobs"] and len(parts) >= 2:
            job = self.jobs.get(parts[1])
            if job is None:
                raise NotFoundError(f"no job '{parts[1]}'", field="id", hint="see `cnet jobs`")
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
            return 200, self._quote(body)
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
                    tenant=self.tenant,
                    size_bytes=d.size_bytes,
                    sha256=d.sha256,
                    residency=d.residency,
                    # As the server does: no path means the tenant's area, by id.
                    replicas=[
                        {"center": d.center, "path": d.path or f"tenants/{self.tenant}/{d.id}"}
                    ],
                )
                self.datasets[d.id] = view
                return 201, view
            return 200, list(self.datasets.values())
        if parts == ["bill"]:
            return 200, self._bill(r.url.params.get("period") or self.now.strftime("%Y-%m"))
        if parts == ["whoami"]:
            return 200, WhoAmI(subject="alice", role="user", tenant=self.tenant)
        raise NotFoundError(f"no route {method} {path}")

    def _submit(self, req: SubmitRequest) -> tuple[int, JobDetail]:
        if req.idempotency_key and req.idempotency_key in self.keys:
            return 200, self.jobs[self.keys[req.idempotency_key]]
        ds = self._dataset_models()
        jid = f"j-{len(self.jobs) + 1:04d}"
        jr = job_request(jid, req.spec, self.network, self.now, ds)
        job = JobDetail(
            id=jid,
            name=req.spec.name,
            tenant=self.tenant,
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
            self.keys[req.idempotency_key] = jid
        return 201, job

    def _cancel(self, job: JobDetail) -> JobView:
        if job.state in TERMINAL_STATES:
            raise ConflictError(
                f"job {job.id} is already {job.state.value}",
                field="state",
                hint="only a job that has not finished can be cancelled",
            )
        new = job.model_copy(update={"state": JobState.CANCELLED})
        self.jobs[job.id] = new
        return JobView.model_validate(new.model_dump())

    def _quote(self, body: Any) -> QuoteView:
        spec = JobSpec.model_validate(body)
        ds = self._dataset_models()
        jr = job_request("quote", spec, self.network, self.now, ds)
        res = quote(build_snapshot(self.network, self.now, datasets=ds), jr)
        return QuoteView(
            options=res.options,
            infeasible_reasons=res.infeasible_reasons,
            now=self.now,
            notes=res.notes,
        )

    def _dataset_models(self) -> dict[str, Dataset]:
        return {
            k: Dataset(
                id=v.id,
                size_bytes=v.size_bytes,
                sha256=v.sha256,
                residency=v.residency,
                replicas=tuple(r["center"] for r in v.replicas),
            )
            for k, v in self.datasets.items()
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
