"""The agent's side of the center protocol (``/center/v1``), over httpx.

Every call either returns the reply's schema or raises: `ServerUnavailable`
when the control plane cannot be reached or answers 5xx (retry later), or the
error-tree class matching a 4xx answer (AuthError 401, ForbiddenError 403,
NotFoundError 404, ConflictError 409, ValidationError 422), carrying the
server's ``ErrorBody`` message, field and hint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from computenet import __version__
from computenet.errors import (
    AuthError,
    ComputeNetError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from computenet.protocol import (
    PROTOCOL_VERSION,
    HeartbeatReply,
    HeartbeatRequest,
    LeaseReply,
    LeaseRequest,
    LogAppend,
    PoolCapacity,
    RegisterReply,
    RegisterRequest,
    ReplicaReport,
    StatusReport,
    UsageReport,
)
from computenet.protocol.api import MemberView
from computenet.protocol.center import MAX_LEASE_WAIT_S, JobProgress, JobQuote
from computenet.protocol.failover import (
    DEFAULT_CONNECT_TIMEOUT_S,
    FailoverTransport,
    client_timeout,
    parse_urls,
)

_BY_STATUS: dict[int, type[ComputeNetError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
}


class ServerUnavailable(ComputeNetError):
    """The control plane did not answer, or answered 5xx: try again later."""

    status_code = 503


class CenterClient:
    """Calls the control plane for one center with its token (see module doc).

    `deadline`, when set, returns the monotonic time by which every call must
    have returned (the agent's fence) or None: a call gets only the time left,
    and none at all once it has passed, so the agent's loop never blocks past it.
    """

    deadline: Callable[[], float | None] | None = None

    def __init__(
        self,
        server_url: str | Sequence[str],
        token: str,
        center_id: str,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`server_url`: one replica's URL, several (``"URL1,URL2"`` or a list) to fail over.

        `timeout_s` bounds each call (all replicas tried included),
        `connect_timeout_s` each connection attempt, so a dead replica costs
        little; `transport` is for tests.
        """
        self.center_id = center_id
        self.urls = parse_urls(server_url, field="server")
        # Several replicas: each call goes to the one that answered last, the next on failure.
        self._failover = FailoverTransport(self.urls, transport) if len(self.urls) > 1 else None
        self._http = httpx.Client(
            base_url=self.urls[0],
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"computenet-agent/{__version__}",
            },
            timeout=client_timeout(timeout_s, connect_timeout_s),
            transport=self._failover or transport,
        )
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s

    @property
    def server_url(self) -> str:
        """The control plane replica calls go to now."""
        return self._failover.current_url if self._failover is not None else self.urls[0]

    def _call_timeout(self, hold_s: float = 0.0) -> httpx.Timeout:
        """This call's timeout: the client's (plus `hold_s` the server may hold it), cut to the
        deadline if sooner."""
        at = self.deadline() if self.deadline is not None else None
        if at is None:
            return client_timeout(self._timeout_s + hold_s, self._connect_timeout_s)
        left = at - time.monotonic()
        if left <= 0:
            raise ServerUnavailable("no time left before the agent's fence deadline")
        return client_timeout(min(self._timeout_s + hold_s, left), self._connect_timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def set_token(self, token: str) -> None:
        """Call with `token` from now on (the operator replaced the center's token)."""
        self._http.headers["Authorization"] = f"Bearer {token}"

    def register(
        self,
        *,
        backend: str,
        data_url: str | None,
        capacity: list[PoolCapacity],
        preempt: bool | None = None,
    ) -> RegisterReply:
        """POST /center/v1/register (idempotent; `preempt`: jobs here may be preempted,
        their checkpoints kept — None leaves the field out)."""
        req = RegisterRequest(
            center_id=self.center_id,
            agent_version=__version__,
            backend=backend,
            data_url=data_url,
            capacity=capacity,
            preempt=preempt,
        )
        reply = RegisterReply.model_validate(self._post("/center/v1/register", req))
        if reply.protocol_version.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
            # Another major version means other rules: going on would break them unseen.
            raise ValidationError(
                f"the control plane speaks center protocol {reply.protocol_version},"
                f" this agent {PROTOCOL_VERSION}",
                field="protocol_version",
                hint="run an agent that speaks the control plane's protocol version",
            )
        return reply

    def heartbeat(
        self,
        capacity: list[PoolCapacity],
        running: list[str],
        progress: list[JobProgress] | None = None,
        quotes: list[JobQuote] | None = None,
        members: list[MemberView] | None = None,
    ) -> HeartbeatReply:
        """POST /center/v1/heartbeat (`progress`: a region's held jobs below it, else None;
        `quotes`: a region's answers to the control plane's quote requests, else None;
        `members`: a region's own centers, else None)."""
        listed = set(running)
        if progress is not None:  # only jobs this heartbeat holds
            progress = [p for p in progress if p.job_id in listed]
        req = HeartbeatRequest(
            center_id=self.center_id,
            capacity=capacity,
            running=running,
            progress=progress,
            quotes=quotes,
            members=members,
        )
        return HeartbeatReply.model_validate(self._post("/center/v1/heartbeat", req))

    def lease(self, max_jobs: int, wait_s: float = 0.0) -> LeaseReply:
        """POST /center/v1/lease; with `wait_s` the control plane may hold it that long (long poll).

        An older control plane ignores `wait_s` and answers at once.
        """
        wait_s = max(0.0, min(wait_s, MAX_LEASE_WAIT_S))
        req = LeaseRequest(
            center_id=self.center_id, max_jobs=max(1, min(max_jobs, 256)), wait_s=wait_s
        )
        return LeaseReply.model_validate(self._post("/center/v1/lease", req, hold_s=wait_s))

    def status(self, job_id: str, report: StatusReport) -> None:
        """POST /center/v1/jobs/{id}/status."""
        self._post(f"/center/v1/jobs/{_segment(job_id)}/status", report)

    def logs(self, job_id: str, append: LogAppend) -> None:
        """POST /center/v1/jobs/{id}/logs."""
        self._post(f"/center/v1/jobs/{_segment(job_id)}/logs", append)

    def usage(self, job_id: str, report: UsageReport) -> None:
        """POST /center/v1/jobs/{id}/usage."""
        self._post(f"/center/v1/jobs/{_segment(job_id)}/usage", report)

    def replica(self, dataset_id: str, report: ReplicaReport) -> None:
        """POST /center/v1/datasets/{id}/replicas."""
        self._post(f"/center/v1/datasets/{_segment(dataset_id)}/replicas", report)

    def get_json(self, path: str) -> Any:
        """GET a JSON document (used to discover this center's pools from the user API)."""
        try:
            resp = self._http.get(path, timeout=self._call_timeout())
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"cannot reach the control plane: {exc}") from exc
        _raise_for(resp)
        return resp.json()

    def _post(self, path: str, body: BaseModel, *, hold_s: float = 0.0) -> Any:
        """POST `body`; the reply's JSON (None when empty)."""
        try:
            resp = self._http.post(
                path,
                content=body.model_dump_json(),
                headers=_JSON,
                timeout=self._call_timeout(hold_s),
            )
        except httpx.HTTPError as exc:
            raise ServerUnavailable(
                f"cannot reach the control plane: {type(exc).__name__}: {exc}"
            ) from exc
        _raise_for(resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ServerUnavailable(f"{path}: unreadable reply: {exc}") from exc


_JSON = {"Content-Type": "application/json"}


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    if resp.status_code >= 500:
        raise ServerUnavailable(f"control plane error {resp.status_code}: {resp.text[:200]}")
    message, field, hint = resp.text[:300] or resp.reason_phrase, None, None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if "error" in body:
            message = str(body["error"])
            field, hint = body.get("field"), body.get("hint")
        elif "detail" in body:  # FastAPI's own errors
            message = str(body["detail"])
    cls = _BY_STATUS.get(resp.status_code, ComputeNetError)
    err = cls(f"{resp.request.method} {resp.request.url.path}: {message}", field=field, hint=hint)
    err.status_code = resp.status_code
    raise err


def _segment(value: str) -> str:
    """`value` as one URL path segment: every reserved character escaped, and a "." or
    ".." escaped too (a client would otherwise resolve it as a dot-segment), so an id
    never reaches another path than its own."""
    seg = quote(value, safe="")
    return seg.replace(".", "%2E") if seg in (".", "..") else seg
