"""`computenet.Client`: the user API over HTTP (httpx), returning the protocol models.

Every 4xx/5xx answer is raised as the matching `computenet.errors` class, built
from the server's `ErrorBody` so it keeps the field and the hint::

    import computenet
    cn = computenet.Client("http://127.0.0.1:8080", token)
    job = cn.submit("train.yaml", wait=True)
    print(job.state, job.center, job.cost_cny)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from computenet.errors import (
    AuthError,
    BackendError,
    ComputeNetError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from computenet.model import TERMINAL_STATES, JobSpec, JobState
from computenet.model.limits import MAX_PAGE
from computenet.model.service import ServiceSpec, parse_service, parse_service_text
from computenet.protocol import (
    BillView,
    CenterView,
    DatasetCreate,
    DatasetView,
    ErrorBody,
    JobDetail,
    JobView,
    LogChunk,
    QuoteView,
    TokenView,
    WhoAmI,
)
from computenet.protocol.api import ResolveView
from computenet.protocol.failover import (
    DEFAULT_CONNECT_TIMEOUT_S,
    RETRY_SAFE,
    FailoverTransport,
    client_timeout,
    parse_urls,
)
from computenet.protocol.service_stats import ServiceMetrics
from computenet.protocol.services import ServiceView
from computenet.protocol.tenancy import TenancyView
from computenet.sdk.specfile import load_job_file, parse_job_spec

T = TypeVar("T", bound=pydantic.BaseModel)

SpecLike = JobSpec | Mapping[str, Any] | str | Path

_BY_STATUS: dict[int, type[ComputeNetError]] = {
    400: ValidationError,
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    502: BackendError,
}


def error_from_response(resp: httpx.Response) -> ComputeNetError:
    """The `ComputeNetError` subclass for an error answer, with the body's field and hint."""
    cls = _BY_STATUS.get(resp.status_code, ComputeNetError)
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        body = ErrorBody.model_validate(data)
        exc = cls(body.error, field=body.field, hint=body.hint)
    elif isinstance(data, dict) and isinstance(data.get("detail"), list) and data["detail"]:
        # FastAPI's own request-validation shape, in case a route slips past the server's handler.
        first = data["detail"][0]
        loc = [str(p) for p in first.get("loc", []) if p not in ("body",)]
        exc = cls(str(first.get("msg", "invalid request")), field=".".join(loc) or None)
    elif isinstance(data, dict) and "detail" in data:
        exc = cls(str(data["detail"]))
    else:
        text = resp.text.strip().splitlines()[0] if resp.text.strip() else resp.reason_phrase
        exc = cls(f"HTTP {resp.status_code}: {text}")
    if cls is ComputeNetError:
        exc.status_code = resp.status_code
    return exc


def spec_of(spec: SpecLike) -> JobSpec:
    """A `JobSpec` from a spec, a mapping, or the path of a job file."""
    if isinstance(spec, JobSpec):
        return spec
    if isinstance(spec, str | Path):
        return load_job_file(spec)
    return parse_job_spec(spec)


def spec_json(spec: JobSpec) -> dict[str, Any]:
    """A spec as the wire carries it (field `class`, ISO times, Decimal as strings)."""
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


class Client:
    """A ComputeNet user (or admin) talking to one control plane.

    Parameters: `url` of the server (e.g. ``http://127.0.0.1:8080``) — or of
    several replicas of one control plane (``"URL1,URL2"`` or a list), tried in
    turn when one is down (`computenet.protocol.failover`) — a bearer `token`,
    a request `timeout` and a `connect_timeout` in seconds and, for tests, an
    httpx `transport`. Raises `ComputeNetError` subclasses; a server that
    cannot be reached raises `ComputeNetError` with field ``url``.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: str | None = None,
        *,
        timeout: float = 30.0,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.urls = parse_urls(url)
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._failover = FailoverTransport(self.urls, transport) if len(self.urls) > 1 else None
        self._http = httpx.Client(
            base_url=self.urls[0],
            headers=headers,
            timeout=client_timeout(timeout, connect_timeout),
            transport=self._failover or transport,
        )

    @property
    def url(self) -> str:
        """The server (replica) requests go to now."""
        return self._failover.current_url if self._failover is not None else self.urls[0]

    @classmethod
    def from_config(cls, url: str | None = None, token: str | None = None) -> Client:
        """A client set up from options, CNET_URL/CNET_TOKEN, or the config file `cnet up` wrote."""
        from computenet.sdk.config import resolve

        cfg = resolve(url, token)
        return cls(cfg.urls, cfg.token)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        retry_safe: bool = False,
        headers_out: dict[str, str] | None = None,
        **kw: Any,
    ) -> Any:
        if retry_safe:
            # Sending it twice is harmless: another replica may get it after a lost reply.
            kw["extensions"] = {RETRY_SAFE: True}
        # A replica that accepts connections but never answers (paused, overloaded) uses up
        # a call's whole timeout; a call safe to repeat then gets another try at the next one.
        tries = len(self.urls) if retry_safe or method in ("GET", "HEAD") else 1
        for attempt in range(tries):
            asked = self.url
            try:
                resp = self._http.request(method, path, **kw)
                break
            except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
                if attempt + 1 < tries:
                    continue
                raise ComputeNetError(
                    f"the server at {asked} did not answer in time",
                    field="url",
                    hint="check that it is running and not overloaded",
                ) from exc
            except httpx.TimeoutException as exc:
                raise ComputeNetError(
                    f"the server at {asked} did not answer in time",
                    field="url",
                    hint="check that it is running and not overloaded",
                ) from exc
            except httpx.TransportError as exc:
                where = asked if len(self.urls) == 1 else "any of " + ", ".join(self.urls)
                raise ComputeNetError(
                    f"cannot reach the server at {where} ({type(exc).__name__})",
                    field="url",
                    hint="start one with `cnet up demo`, or pass --url / set CNET_URL",
                ) from exc
        if resp.status_code >= 400:
            raise error_from_response(resp)
        if headers_out is not None:
            headers_out.update(resp.headers)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def _get(self, path: str, model: type[T], **params: Any) -> T:
        clean = {k: v for k, v in params.items() if v is not None}
        return model.model_validate(self._request("GET", path, params=clean))

    def _get_list(self, path: str, model: type[T], **params: Any) -> list[T]:
        """Every item of a paged list, following X-Next-Cursor; at most `limit` when given."""
        clean = {k: v for k, v in params.items() if v is not None}
        want = clean.get("limit")
        out: list[T] = []
        while True:
            if want is not None:
                clean["limit"] = min(MAX_PAGE, int(want) - len(out))
            got: dict[str, str] = {}
            page = self._request("GET", path, params=clean, headers_out=got)
            out.extend(model.model_validate(x) for x in page)
            nxt = got.get("x-next-cursor")
            if not nxt or not page or (want is not None and len(out) >= int(want)):
                return out
            clean["cursor"] = nxt

    def _post(self, path: str, model: type[T], body: Any = None, *, retry_safe: bool = False) -> T:
        return model.model_validate(self._request("POST", path, json=body, retry_safe=retry_safe))

    # -- jobs -----------------------------------------------------------------------

    def submit(
        self,
        spec: SpecLike,
        idempotency_key: str | None = None,
        wait: bool = False,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_update: Callable[[JobDetail], None] | None = None,
    ) -> JobView:
        """Submit a job (a spec, a mapping, or a job file path).

        Returns the `JobView`; with ``wait=True`` polls until the job is final
        and returns its `JobDetail` (a `JobView` subclass). The same
        `idempotency_key` twice gives back the first job; without one, a
        random key is sent, so that a submit whose reply was lost can be sent
        again (to another replica) without making a second job.
        """
        body: dict[str, Any] = {"spec": spec_json(spec_of(spec))}
        body["idempotency_key"] = idempotency_key or f"sdk-{uuid.uuid4().hex}"
        try:
            view = self._post("/api/v1/jobs", JobView, body, retry_safe=True)
        except ComputeNetError as exc:
            # Name the field as the job file spells it ("deadline", not "spec.deadline").
            if exc.field and exc.field.startswith("spec."):
                exc.field = exc.field.removeprefix("spec.")
            raise
        if not wait:
            return view
        return self.wait(view.id, poll_s=poll_s, timeout_s=timeout_s, on_update=on_update)

    def wait(
        self,
        job_id: str,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_update: Callable[[JobDetail], None] | None = None,
    ) -> JobDetail:
        """Poll a job until it is SUCCEEDED, FAILED or CANCELLED; return its detail.

        Raises `ComputeNetError` (field ``timeout``) when `timeout_s` real seconds pass first.
        """
        give_up = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            detail = self.job(job_id)
            if on_update is not None:
                on_update(detail)
            if detail.state in TERMINAL_STATES:
                return detail
            if give_up is not None and time.monotonic() > give_up:
                raise ComputeNetError(
                    f"job {job_id} is still {detail.state.value} after {timeout_s:g}s",
                    field="timeout",
                    hint=f"see why with `cnet status {job_id}`",
                )
            time.sleep(poll_s)

    def jobs(self, state: JobState | str | None = None, limit: int | None = None) -> list[JobView]:
        """The caller's jobs, newest first, optionally only those in `state`."""
        st = state.value if isinstance(state, JobState) else state
        return self._get_list("/api/v1/jobs", JobView, state=st, limit=limit)

    def job(self, job_id: str) -> JobDetail:
        """One job with its spec, placement, reasons and timeline."""
        return self._get(f"/api/v1/jobs/{job_id}", JobDetail)

    def cancel(self, job_id: str) -> JobView:
        """Cancel a job (again: the same cancelled job); a finished one raises `ConflictError`."""
        return self._post(f"/api/v1/jobs/{job_id}/cancel", JobView)

    def logs(self, job_id: str, offset: int = 0) -> LogChunk:
        """The job's output from byte `offset` on."""
        return self._get(f"/api/v1/jobs/{job_id}/logs", LogChunk, offset=offset)

    def follow_logs(self, job_id: str, offset: int = 0, *, poll_s: float = 0.5) -> Iterator[str]:
        """Yield the job's output as it arrives, until the job is final and all is read."""
        while True:
            chunk = self.logs(job_id, offset)
            if chunk.text:
                yield chunk.text
            offset = chunk.next_offset
            if chunk.complete:
                return
            if not chunk.text:
                time.sleep(poll_s)

    def quote(self, spec: SpecLike) -> QuoteView:
        """Options (center, chips, start, finish, ¥, kWh, CO2) for a job; nothing is submitted."""
        return self._post("/api/v1/quote", QuoteView, spec_json(spec_of(spec)))

    # -- network, data, money ---------------------------------------------------------

    def centers(self) -> list[CenterView]:
        """Every center: pools, online, tariff now, queue."""
        return self._get_list("/api/v1/centers", CenterView)

    def network(self) -> dict[str, Any]:
        """The network: name, time_scale, data_scale, centers, sites, links, network time now."""
        data = self._request("GET", "/api/v1/network")
        return dict(data)

    def datasets(self) -> list[DatasetView]:
        """The caller's datasets and their replicas."""
        return self._get_list("/api/v1/datasets", DatasetView)

    def resolve(self, identifier: str) -> ResolveView:
        """What a compute identifier (e.g. ``cn.gba.shenzhen-1.pool.H100``) names, where to
        reach it, or (`delegate`) which region's plane to ask."""
        return self._get(f"/api/v1/resolve/{quote(identifier, safe='')}", ResolveView)

    def add_dataset(
        self,
        id: str,
        center: str,
        path: str,
        size_bytes: int,
        sha256: str,
        residency: str | None = None,
    ) -> DatasetView:
        """Register a dataset already at `center` (`path` is under its agent's data root)."""
        try:
            body = DatasetCreate(
                id=id,
                center=center,
                path=path,
                size_bytes=size_bytes,
                sha256=sha256,
                residency=residency,
            )
        except pydantic.ValidationError as exc:
            from computenet.catalog.loader import pydantic_field_error

            raise pydantic_field_error(exc) from exc
        return self._post("/api/v1/datasets", DatasetView, body.model_dump(mode="json"))

    def bill(self, tenant: str | None = None, period: str | None = None) -> BillView:
        """The bill of the caller's tenant (admins may name a `tenant`) for `period` YYYY-MM."""
        return self._get("/api/v1/bill", BillView, tenant=tenant, period=period)

    def tenancy(self, tenant: str | None = None) -> TenancyView:
        """The caller's tenant's quotas with their use, priority ceiling and fair-share standing
        (admins may name a `tenant`)."""
        return self._get("/api/v1/tenancy", TenancyView, tenant=tenant)

    def whoami(self) -> WhoAmI:
        """Who this token is: subject, role, tenant or center."""
        return self._get("/api/v1/whoami", WhoAmI)

    # -- admin ----------------------------------------------------------------------

    def create_tenant(self, name: str) -> dict[str, Any]:
        """Admin: create a tenant."""
        return dict(self._request("POST", "/api/v1/admin/tenants", json={"name": name}) or {})

    def create_user(self, name: str, tenant: str, role: str = "user") -> TokenView:
        """Admin: create a user of `tenant` (or an admin) and return its token, shown once."""
        body = {"name": name, "tenant": tenant, "role": role}
        return self._post("/api/v1/admin/users", TokenView, body)

    def center_token(self, center: str) -> TokenView:
        """Admin: a fresh token for `center`'s agent, shown once."""
        return self._post(f"/api/v1/admin/centers/{center}/token", TokenView)

    # -- inference services (docs/services.md) ----------------------------------------

    def deploy_service(self, spec: ServiceSpec | Mapping[str, Any] | str | Path) -> ServiceView:
        """Deploy a service: a `ServiceSpec`, its mapping, or the path of a service file."""
        if isinstance(spec, (str, Path)):
            spec = parse_service_text(Path(spec).read_text("utf-8"), where=Path(spec).name)
        body = parse_service(spec).model_dump(mode="json")
        return self._post("/api/v1/services", ServiceView, body)

    def services(self) -> list[ServiceView]:
        """Your services with their replicas."""
        raw = self._request("GET", "/api/v1/services")
        return [ServiceView.model_validate(x) for x in raw]

    def service(self, name: str) -> ServiceView:
        """One service: replicas, their state and endpoints."""
        return self._get(f"/api/v1/services/{quote(name, safe='')}", ServiceView)

    def scale_service(self, name: str, replicas: int) -> ServiceView:
        """Keep `replicas` replicas of `name` (within its file's min..max)."""
        path = f"/api/v1/services/{quote(name, safe='')}/scale"
        return self._post(path, ServiceView, {"replicas": replicas}, retry_safe=True)

    def service_metrics(self, name: str, minutes: int = 60) -> ServiceMetrics:
        """Requests, errors, latency percentiles and cost of `name`: per minute and totals."""
        path = f"/api/v1/services/{quote(name, safe='')}/metrics"
        return self._get(path, ServiceMetrics, minutes=minutes)

    def delete_service(self, name: str) -> ServiceView:
        """Stop every replica of `name` and remove it."""
        raw = self._request("DELETE", f"/api/v1/services/{quote(name, safe='')}")
        return ServiceView.model_validate(raw)

    def health(self) -> bool:
        """Whether the server answers at all (any HTTP answer counts)."""
        try:
            self._http.get("/api/v1/whoami", timeout=2.0)
        except httpx.HTTPError:
            return False
        return True
