"""The network backend: a whole ComputeNet network joins its parent as one center.

A region's control plane ("the child") joins a national one ("the parent") by
running ``cnet agent --backend network`` for the region's center id at the
parent. The agent speaks center protocol v1 to the parent, unchanged; this
backend drives the child through its *user API*, with the SDK, as one user
account of the child (docs/federation.md):

- **Capacity.** Per chip type, over the child's *online* centers: the total,
  the free chips (sums) and `PoolCapacity.largest_free`, the most free chips
  in any one center — the largest job that fits now (kueue#9988: free chips
  spread over centers do not make one big job fit). A child center that is
  itself a region reports its own `largest_free`, so levels nest. A child
  that cannot be reached offers nothing (free 0), so the parent places
  nothing new here while it is away. The child's uplink centers (its own
  parent, Overflow up) are left out: their chips are not the child's.
- **Identity.** The child job's name and idempotency key are the
  origin-qualified key ``ORIGIN/JOB_ID:ATTEMPT`` (the parent's job id and
  attempt); its environment carries ``CNET_ORIGIN_JOB`` and
  ``CNET_ORIGIN_ATTEMPT``, kept as they are when the job came from further up,
  so the top's identity reaches the chips through every level.
- **Idempotency.** The child keeps idempotency keys per account for good: the
  same key submits one job, whatever happened to this agent. `find` asks the
  backend's own record first, then the child's job list by name.
- **States.** PENDING, SCHEDULED, STAGING → PENDING; RUNNING; SUCCEEDED,
  FAILED (with the child's exit code), CANCELLED; a job the child does not
  know is UNKNOWN (the agent then leaves it to be requeued).
- **Cancel, logs.** The child's cancel; the child's log by byte offset.
- **Money.** `metered(handle)` is the child's bill line for the job, which the
  agent sends as `UsageReport.metered`; the parent bills exactly that (plus the
  region's declared fee, at the parent).
- **Roll-up.** Each poll keeps the child's detail of the job; `paths(handles)`
  hands the agent the child's `JobDetail.path` (its placement, then the levels
  below it) with no call of its own, and the agent reports it upward. The
  capacity carries the child's queue and used chips per chip type.
- **Data.** `replicas()` lists the datasets the child holds for the parent's
  account (same id, same checksum: the same bytes), which the agent reports
  as replicas of this center. A job's input the child holds is staged inside
  the child; one it lacks the agent stages here first (`inputs_to_stage`,
  checksum checked as at any center) and `submit` registers it in the child
  at its ``inbox`` center, whose data root the agent writes (`_import_inputs`).
- **Deadline, budget.** A delegated job keeps the parent's absolute deadline
  (real seconds, turned into the child's network time) and what is left of its
  budget (`BackendJob.deadline_real`, `BackendJob.budget_cny`).
- **Fencing.** Nothing here: the agent's lease rules stop (cancel in the
  child) what it holds when the parent is away too long, as for any center.
- **Quotes.** `quote_jobs(asks)` prices the jobs the parent asks about with the
  child's own scheduler (its `POST /api/v1/quote`): per chip type asked, the
  child's cheapest feasible option (not through its own uplink) as the price
  and the real second it would finish, or the child's reason it cannot run
  the job; the agent sends them in its next heartbeat (docs/federation.md).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx

from computenet.agent.data import DataRoot, dataset_sha256, env_name
from computenet.agent.staging import place_copy
from computenet.backends.base import BackendJob, BackendState, BackendStatus, Capability
from computenet.backends.registry import parse_pools
from computenet.errors import (
    BackendError,
    ComputeNetError,
    ConflictError,
    NotFoundError,
    ValidationError,
)
from computenet.model import JobState, limits
from computenet.model.center import CST
from computenet.model.job import ORIGIN_HOP_ENV
from computenet.protocol import CenterView, JobDetail, PoolCapacity
from computenet.protocol.api import MemberPool, MemberView, PathHop
from computenet.protocol.capacity import aggregate_capacity
from computenet.protocol.center import (
    MAX_MEMBERS,
    REGION_PATH_PREFIX,
    JobQuote,
    MeteredCharge,
    QuoteRequest,
    ReplicaReport,
    StagingInput,
)
from computenet.protocol.datapaths import default_replica_path
from computenet.sdk.client import Client, spec_json

logger = logging.getLogger(__name__)

URL_ENV = "CNET_CHILD_URL"
TOKEN_FILE_ENV = "CNET_CHILD_TOKEN_FILE"
ORIGIN_JOB_ENV = "CNET_ORIGIN_JOB"
ORIGIN_ATTEMPT_ENV = "CNET_ORIGIN_ATTEMPT"
_RECORDS = "network-jobs.json"
# The rate card (docs/federation.md): the child's quote for a reference job of 1 CU·h of
# this class on one chip of each type, asked at most this often.
QUOTE_CLASS = "llm-train"
# The backend kind of a child center that is the child's own parent (backends/uplink.py).
UPLINK_KIND = "uplink"
QUOTE_TTL_S = 30.0
# How long the parent may hold the child's quote for one job good (real seconds): the
# child's queue moves; the parent asks again for a job still pending after it.
JOB_QUOTE_TTL_S = 30.0
_LOCK = "network-agent.lock"

_STATES = {
    JobState.PENDING: BackendState.PENDING,
    JobState.SCHEDULED: BackendState.PENDING,
    JobState.STAGING: BackendState.PENDING,
    JobState.RUNNING: BackendState.RUNNING,
    JobState.SUCCEEDED: BackendState.SUCCEEDED,
    JobState.FAILED: BackendState.FAILED,
    JobState.CANCELLED: BackendState.CANCELLED,
}


def _unreachable(exc: ComputeNetError) -> bool:
    """The child did not answer (down, partitioned, overloaded, 429): worth another try."""
    return exc.field == "url" or exc.status_code >= 500 or exc.status_code == 429


class NetworkBackend:
    """Runs jobs on a child ComputeNet network through its user API (see module doc).

    Parameters: `url` of the child's control plane (``URL1,URL2`` for replicas;
    default ``$CNET_CHILD_URL``); `token_file`, a file (0600, the agent's user)
    holding the token of the child user account the jobs run as (default
    ``$CNET_CHILD_TOKEN_FILE``); `origin`, the parent network's name, the first
    part of every delegated job's identity (default ``parent``); `pools` (chip
    type → count the parent declares for this center: the chips reported);
    `state_dir` (where the key → child job record is kept); `center` (this
    center's id at the parent); `timeout_s` (per call to the child);
    `submit_retry_s` (how long a submit is retried while the child does not
    answer); `capacity_ttl_s` (how long one read of the child's centers serves:
    the agent asks for capacity every tick). `client` and `transport` are for tests.
    """

    kind = "network"
    # Which network the backend drives, and where its URL and token file come from.
    peer = "child"
    hop = "down"  # `ORIGIN_HOP_ENV` of every job handed over: a delegated job never goes up
    url_env = URL_ENV
    token_env = TOKEN_FILE_ENV
    example_url = "https://region.example.org"
    capabilities = Capability.CANCEL | Capability.LOGS | Capability.REATTACH | Capability.ACCOUNTING

    def __init__(
        self,
        state_dir: str | Path | None = None,
        pools: Mapping[str, int] | str | None = None,
        *,
        url: str | None = None,
        token_file: str | Path | None = None,
        origin: str = "parent",
        center: str = "",
        timeout_s: float | str = 30.0,
        submit_retry_s: float | str = 10.0,
        capacity_ttl_s: float | str = 1.0,
        watchdog: bool | str = True,
        inbox: str | None = None,
        inbox_root: str | Path | None = None,
        client: Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not origin or "/" in origin or len(origin) > 48:
            raise ValidationError(
                f"origin '{origin}' must be 1-48 characters without '/'",
                field="origin",
                hint="the parent network's name, e.g. origin=cn",
            )
        self.origin = origin
        self.center = center
        self.pools = parse_pools(pools)
        self.timeout_s = float(timeout_s)
        self.submit_retry_s = float(submit_retry_s)
        self.capacity_ttl_s = float(capacity_ttl_s)
        self._centers_at = -float("inf")
        self._centers_seen: list[CenterView] = []
        self._details: dict[str, JobDetail] = {}  # handle → the child's detail at the last poll
        self._clock: tuple[float, datetime, float] | None = None  # (real, child now, scale)
        self._clock_at = -float("inf")
        self._rates: dict[str, tuple[Decimal, float]] = {}  # chip → (¥/CU·h, wait s)
        self._rates_at = -float("inf")
        self.state_dir = Path(state_dir) if state_dir else None
        self._lock = threading.RLock()
        self.inbox, self.inbox_root = _inbox(inbox, inbox_root)
        self._staged_sha: dict[str, str] = {}  # dataset → sha256 the agent was asked to stage
        self._child_tenant: str | None = None
        self._records: dict[str, str] = self._load_records()
        self._scanned = False  # the child's job list read into the record (find)
        self._lock_fd: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        if client is not None:
            self.client = client
            return
        url = url or os.environ.get(self.url_env)
        if not url:
            raise ValidationError(
                f"the {self.kind} backend needs the {self.peer} control plane's URL",
                field="url",
                hint=f"--backend-opt url={self.example_url}, or set {self.url_env}",
            )
        token_file = token_file or os.environ.get(self.token_env)
        if not token_file:
            raise ValidationError(
                f"the {self.kind} backend needs a token of a user account of the {self.peer}",
                field="token_file",
                hint=f"--backend-opt token_file=FILE (mode 600), or set {self.token_env}",
            )
        self.client = self._connect(url, _read_token(token_file), transport)
        if _truthy(watchdog) and self.state_dir is not None:
            self._start_watchdog(url, Path(token_file))

    def _connect(self, url: str, token: str, transport: httpx.BaseTransport | None) -> Client:
        """The other network's user API, as the account the jobs run as."""
        return Client(url, token, timeout=self.timeout_s, transport=transport)

    # ------------------------------------------------------------------ identity

    def child_name(self, idempotency_key: str) -> str:
        """The origin-qualified name (and idempotency key) of the child job for `key`."""
        return f"{self.origin}/{idempotency_key}"

    def _key_of(self, name: str) -> str | None:
        prefix = f"{self.origin}/"
        return name[len(prefix) :] if name.startswith(prefix) else None

    # ---------------------------------------------------------------- contract

    def capacity(self) -> list[PoolCapacity]:
        """Per chip: the child's chips, the free ones in online centers, and the largest shape.

        The total counts every child center (an offline one comes back), so a job
        leased here is never refused for a moment's outage; free chips and the
        largest shape count online centers only. A child that does not answer
        keeps the declared totals and offers nothing free.
        """
        try:
            centers = self._centers()
        except ComputeNetError as exc:
            if not _unreachable(exc):
                raise BackendError(
                    f"the child network refused its centers: {exc.one_line()}"
                ) from exc
            logger.warning("child network unreachable, offering nothing: %s", exc.message)
            return [
                PoolCapacity(chip=c, total=n, free=0, largest_free=0) for c, n in self.pools.items()
            ]
        used: dict[str, int] = {}
        queued: dict[str, int] = {}
        for c in centers:
            for pool in c.pools:
                chip = str(pool.get("chip", ""))
                n_total = int(pool.get("total", 0))
                # The child's queue: jobs placed at its centers and not started (any
                # tenant's); a child that is a region reports its own queue per chip.
                queued[chip] = queued.get(chip, 0) + int(pool.get("queued", c.queued))
                if c.online:
                    n_free = int(pool.get("free", 0))
                    used[chip] = used.get(chip, 0) + int(pool.get("used", n_total - n_free))
        rolled = {
            p.chip: p
            for p in aggregate_capacity(
                (c.online, [_pool_tuple(pool) for pool in c.pools]) for c in centers
            )
        }
        chips = list(self.pools) or sorted(rolled)
        rates = self._rate_card(chips)
        out = []
        for chip in chips:
            got = rolled.get(chip, PoolCapacity(chip=chip, total=0, free=0, largest_free=0))
            # The parent checks totals against what it declares: never offer more.
            t = min(got.total, self.pools.get(chip, got.total))
            f = min(got.free, t)
            out.append(
                PoolCapacity(
                    chip=chip,
                    total=t,
                    free=f,
                    largest_free=min(got.largest_free or 0, f),
                    used=max(0, min(used.get(chip, 0), t)),
                    queued=min(queued.get(chip, 0), limits.MAX_RUNNING),
                    quote_cny_per_cuh=rates[chip][0] if chip in rates else None,
                    quote_wait_s=rates[chip][1] if chip in rates else None,
                )
            )
        return out

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Submit `job` to the child under its origin-qualified key (idempotent there too)."""
        if job.spec is None:
            raise BackendError(
                "the network backend needs the job's spec",
                hint="run an agent that passes BackendJob.spec (this version's)",
            )
        if job.spec.inputs:
            self._import_inputs(job)
        name = self.child_name(idempotency_key)
        if len(name) > limits.MAX_NAME_CHARS:
            raise BackendError(f"the child job name '{name[:60]}…' is too long")
        self._check_shape(job)
        env = dict(job.spec.env)
        # Kept when set further up: the top's identity travels down every level.
        env.setdefault(ORIGIN_JOB_ENV, f"{self.origin}/{job.job_id}")
        env.setdefault(ORIGIN_ATTEMPT_ENV, str(job.attempt))
        env[ORIGIN_HOP_ENV] = self.hop  # which way it crossed last (model.job.no_spill_reason)
        # The parent chose the chip type and count: the child picks only the center.
        spec = job.spec.model_copy(
            update={
                "name": name,
                "chips": job.spec.chips.model_copy(
                    update={"types": (job.chip,), "count": job.count, "stack": None}
                ),
                "env": env,
                # The parent's absolute deadline in the child's clock, and what is left of
                # the budget: the child's scheduler holds the job to both.
                "deadline": self._child_deadline(job),
                "budget_cny": _budget(job),
                "center": None,
            }
        )
        give_up = time.monotonic() + self.submit_retry_s
        while True:
            try:
                view = self.client.submit(spec_json(spec), idempotency_key=name)
                break
            except ComputeNetError as exc:
                if _unreachable(exc) and time.monotonic() < give_up:
                    time.sleep(0.5)  # the same key again: one job, however many tries
                    continue
                raise BackendError(
                    f"the child network did not take {job.job_id}: {exc.one_line()}"
                ) from exc
        with self._lock:
            self._records[idempotency_key] = view.id
            self._save_records()
        logger.info("delegated %s to the child network as %s (%s)", job.job_id, view.id, name)
        return view.id

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """Each child job's state mapped to a backend state; unknown jobs are UNKNOWN.

        The agent polls every job it runs in one call, so a detail kept for a
        handle not asked for belongs to a job it has finished: dropped here.
        """
        with self._lock:
            for gone in set(self._details) - set(handles):
                del self._details[gone]
        out: dict[str, BackendStatus] = {}
        for handle in handles:
            try:
                detail = self.client.job(handle)
            except NotFoundError:
                out[handle] = BackendStatus(handle, BackendState.UNKNOWN, message="no such job")
                continue
            except ComputeNetError as exc:
                raise BackendError(f"the child network did not answer for {handle}: {exc}") from exc
            with self._lock:
                self._details[handle] = detail
            state = _STATES[detail.state]
            message = ""
            if state in (BackendState.FAILED, BackendState.CANCELLED) and detail.reasons:
                message = detail.reasons[0]
            # Times stay None: the child's are in its own network clock; the agent
            # stamps the real moment it sees each state.
            out[handle] = BackendStatus(
                handle,
                state,
                detail.exit_code
                if state in (BackendState.SUCCEEDED, BackendState.FAILED)
                else None,
                message=message,
            )
        return out

    def paths(self, handles: list[str]) -> dict[str, list[PathHop]]:
        """Each child job's path as the last poll saw it (no call to the child).

        The child's own `JobDetail.path` (its placement first, then the levels
        below it), cut to what the parent may add its own hop to; a child too old
        to send a path gets one hop made from its detail. Handles not polled yet
        are left out. A read only: the heartbeat asks for the held jobs while a
        job that just ended still has its final path to send (`poll` forgets).
        """
        with self._lock:
            details = {h: self._details[h] for h in handles if h in self._details}
        return {
            h: _child_path(d, self.center)[: limits.MAX_PATH_HOPS - 1] for h, d in details.items()
        }

    def replicas(self) -> list[tuple[str, ReplicaReport]]:
        """The datasets with a copy inside the child, as replicas of this center at the parent.

        Every dataset of the child account the parent's jobs run as, reported under
        its own id with its checksum and the path ``region:ID``: the parent takes it
        as a copy of its dataset of that id only when the checksums agree, so the
        child's copy holds the same bytes (docs/federation.md).
        """
        try:
            views = self.client.datasets()
        except ComputeNetError as exc:
            raise BackendError(f"the child network did not list its datasets: {exc}") from exc
        return [
            (v.id, ReplicaReport(path=f"{REGION_PATH_PREFIX}{v.id}", sha256=v.sha256))
            for v in views
        ]

    def members(self) -> list[MemberView]:
        """The child's own centers, for the parent's dashboard (`HeartbeatRequest.members`).

        Where each is, whether it is online and its chips, from the read `capacity`
        shares (`_centers`: the child's uplinks left out), at most `MAX_MEMBERS`.
        """
        try:
            centers = self._centers()
            return [
                MemberView(
                    id=c.id,
                    name=c.name[:128],
                    lat=c.lat,
                    lon=c.lon,
                    online=c.online,
                    pools=[
                        MemberPool(
                            chip=str(p.get("chip", "")),
                            total=int(p.get("total", 0)),
                            free=min(int(p.get("free", 0)), int(p.get("total", 0))),
                        )
                        for p in c.pools[: limits.MAX_POOLS]
                    ],
                )
                for c in centers[:MAX_MEMBERS]
            ]
        except (ComputeNetError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            raise BackendError(f"the child network's centers are not listable: {exc}") from exc

    def cancel(self, handle: str) -> None:
        """Cancel the child job; one already final or unknown is left alone."""
        try:
            self.client.cancel(handle)
        except (ConflictError, NotFoundError):
            return
        except ComputeNetError as exc:
            raise BackendError(f"the child network did not cancel {handle}: {exc}") from exc

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """The child job's output from byte `offset` on, and the next offset."""
        try:
            chunk = self.client.logs(handle, offset)
        except NotFoundError:
            return "", offset
        except ComputeNetError as exc:
            raise BackendError(f"the child network did not send {handle}'s log: {exc}") from exc
        return chunk.text, chunk.next_offset

    def find(self, idempotency_key: str) -> str | None:
        """The child job made under this key: from the record, else by name in the child.

        The agent asks before every submit, so the child's job list (every page)
        is read at most once per process — after that the record knows every job
        this process made. A miss costs nothing: the child's idempotency key
        makes a submit after it return the job that exists.
        """
        with self._lock:
            handle = self._records.get(idempotency_key)
            if handle is not None or self._scanned:
                return handle
        self.list_jobs()
        with self._lock:
            return self._records.get(idempotency_key)

    def list_jobs(self) -> dict[str, str]:
        """Key → child job id of every child job named with this backend's origin."""
        listed = self._listed()
        with self._lock:
            for key, handle in listed.items():
                self._records.setdefault(key, handle)
            self._scanned = True
            self._save_records()
        return listed

    def metered(self, handle: str) -> MeteredCharge | None:
        """What the child billed for the job (its bill line), once it is final; else None."""
        try:
            detail = self.client.job(handle)
            if detail.finished_at is None or detail.cost_cny is None:
                return None
            period = _period(detail)
            lines = self.client.bill(period=period).lines
        except ComputeNetError as exc:
            raise BackendError(f"the child network did not bill {handle}: {exc}") from exc
        line = next((x for x in lines if x.job_id == handle), None)
        if line is None:
            return None
        return MeteredCharge(
            energy_cny=line.energy_cny,
            service_cny=line.service_cny,
            transfer_cny=line.transfer_cny,
            kwh=line.kwh,
            co2_kg=line.co2_kg,
            chip_hours=line.chip_hours,
            cu_hours=line.cu_hours,
        )

    def close(self, keep_jobs: bool = False) -> None:
        """Stop the watchdog unless the jobs are kept (it then stops them at the fence).

        The connection stays open: an agent stopping without ``--keep-jobs``
        cancels what it held after closing its backend.
        """
        watchdog = self._watchdog
        if watchdog is not None and not keep_jobs and watchdog.poll() is None:
            watchdog.terminate()
            watchdog.wait(timeout=10)

    # ------------------------------------------------------------------ quotes

    def quote_jobs(self, asks: list[QuoteRequest]) -> list[JobQuote]:
        """The child's own price and finish for each job the parent asks about (module doc).

        A job the child does not answer for (away) gets no quote: the parent then
        prices it by its rate card.
        """
        out: list[JobQuote] = []
        try:  # the child's price, not its parent's through its uplink
            uplinks = {c.id for c in self._all_centers() if c.backend == UPLINK_KIND}
            self._child_clock()  # read once a minute: each quote's finish is turned by it
        except (ComputeNetError, BackendError) as exc:
            logger.info("the child network is away, no quotes: %s", exc.one_line())
            return out
        for ask in asks:
            try:
                out.extend(self._quote_one(ask, uplinks))
            except BackendError as exc:
                logger.info("the child network did not quote %s: %s", ask.job_id, exc.one_line())
        return out

    def _quote_one(self, ask: QuoteRequest, uplinks: set[str]) -> list[JobQuote]:
        """The child's quotes for one asked job: one per chip type, a price or a reason."""
        job = BackendJob(
            job_id=ask.job_id,
            attempt=0,
            command=ask.spec.command,
            chip=ask.spec.chips.types[0] if ask.spec.chips.types else "",
            count=ask.spec.chips.count,
            spec=ask.spec,
            deadline_real=ask.deadline_real,
            budget_cny=ask.budget_left_cny,
        )
        spec = ask.spec.model_copy(
            update={
                "name": self.child_name(f"quote/{ask.job_id}")[: limits.MAX_NAME_CHARS],
                "env": {},
                "center": None,
                "deadline": self._child_deadline(job),
                "budget_cny": _budget(job),
            }
        )
        try:
            try:
                view = self.client.quote(spec_json(spec))
            except ComputeNetError as exc:
                if not (exc.field or "").startswith("inputs") or _unreachable(exc):
                    raise
                # An input the child lacks is staged into it by the agent (`inputs_to_stage`):
                # the child prices the run, the parent the transfer.
                view = self.client.quote(spec_json(spec.model_copy(update={"inputs": ()})))
        except ComputeNetError as exc:
            if _unreachable(exc):
                raise BackendError(f"the child network did not answer: {exc.one_line()}") from exc
            # The child refuses the job itself (a chip or class it has not, a bad spec).
            why = exc.one_line()[: limits.MAX_TEXT_CHARS]
            return [JobQuote(job_id=ask.job_id, reason=why, ttl_s=JOB_QUOTE_TTL_S)]
        at, _, scale = self._child_clock()
        out = []
        for chip in spec.chips.types or sorted({o.chip for o in view.options}):
            mine = [o for o in view.options if o.chip == chip and o.center not in uplinks]
            ok = [o for o in mine if o.feasible]
            if not ok:
                reasons = [r for o in mine for r in o.reasons] or list(view.infeasible_reasons)
                why = reasons[0] if reasons else f"no center of the child network has {chip}"
                out.append(
                    JobQuote(
                        job_id=ask.job_id,
                        chip=chip,
                        reason=why[: limits.MAX_TEXT_CHARS],
                        ttl_s=JOB_QUOTE_TTL_S,
                    )
                )
                continue
            best = min(ok, key=lambda o: (o.total_cny, o.finish))
            # The child's finish in its own clock, as a real second (clocks differ, real time not).
            finish_real = at + (best.finish - view.now).total_seconds() / scale
            out.append(
                JobQuote(
                    job_id=ask.job_id,
                    chip=chip,
                    price_cny=best.total_cny,
                    energy_cny=min(best.energy_cny, best.total_cny),
                    finish_real=max(finish_real, at),
                    ttl_s=JOB_QUOTE_TTL_S,
                )
            )
        return out

    # ------------------------------------------------------------------ helpers

    def _start_watchdog(self, url: str, token_file: Path) -> None:
        """Hold this state dir's lock and start the process that fences for a dead agent.

        An agent SIGKILLed cannot stop its delegated jobs, and the region would run
        them on while the parent leases them again. The watchdog (`watch`) outlives
        it and, at the dead agent's own fence, cancels in the child what it held —
        unless a new agent took the state dir over (this lock) and its jobs with it.
        """
        assert self.state_dir is not None
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.state_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ValidationError(
                f"another agent is using {self.state_dir}",
                field="state_dir",
                hint="give every network agent a state dir of its own",
            ) from None
        self._lock_fd = fd  # not inherited: the watchdog must not hold it
        cmd = [
            sys.executable, "-m", "computenet.backends.network",
            "--agent-pid", str(os.getpid()), "--state-dir", str(self.state_dir),
            "--url", url, "--token-file", str(token_file), "--origin", self.origin,
        ]  # fmt: skip
        log = os.open(
            self.state_dir / "watchdog.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
        )
        try:
            # A session of its own: a signal to the agent's process group spares it.
            self._watchdog = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        finally:
            os.close(log)

    # ------------------------------------------------------------ inputs (staging)

    def inputs_to_stage(self, inputs: list[StagingInput]) -> list[StagingInput]:
        """The leased job's inputs the agent must stage here first: those the child lacks.

        An input the child already holds under the account (same id, same sha256:
        the same bytes) stays there and is staged inside the child by its own
        agents. Every other one the agent fetches from the parent's sources as any
        center does (`agent.staging.stage_inputs`: ticket, size, sha256 checked)
        and `submit` hands it to the child through the ``inbox`` center
        (`_import_inputs`). A child that does not answer now: every input with a
        source is staged (the safe side; nothing is lost but a transfer).
        """
        try:
            held = self._child_datasets()
        except ComputeNetError as exc:
            if not _unreachable(exc):
                raise BackendError(
                    f"the child network did not list its datasets: {exc.one_line()}"
                ) from exc
            held = {}
            inputs = [i for i in inputs if i.sources]
        clash = [i.dataset for i in inputs if i.dataset in held and held[i.dataset] != i.sha256]
        if clash:
            raise BackendError(
                f"input {', '.join(clash)} is another file in the child network (its sha256"
                " differs from the parent's)",
                hint="give the dataset another id at the parent, or remove the child's copy",
            )
        wanted = [i for i in inputs if i.dataset not in held]
        if wanted and self.inbox is None:
            raise BackendError(
                f"input {', '.join(i.dataset for i in wanted)} has no copy in the child network",
                hint="run the network agent with --backend-opt inbox=CENTER --backend-opt"
                " inbox_root=DIR (a child center whose data root it can write), or register"
                " the dataset in the child under the parent's account with the same id and"
                " checksum (docs/federation.md)",
            )
        with self._lock:
            self._staged_sha.update((i.dataset, i.sha256) for i in wanted)
        return wanted

    def _import_inputs(self, job: BackendJob) -> None:
        """Register in the child every input it lacks, from the copy the agent staged here.

        The staged file (its path is the job's ``CNET_INPUT_<ID>``, `agent.data.env_name`)
        is placed in the inbox center's data root, in the child account's area
        (`agent.staging.place_copy`: a hard link, or a copy checked against its
        sha256), and registered there as a dataset of the same id
        (``POST /api/v1/datasets``); the child's scheduler then sees the copy at the
        inbox and runs the job there or moves it to another of its centers. An
        input the child lacks that was not staged here is refused, naming it.
        """
        assert job.spec is not None
        try:
            held = self._child_datasets()
        except ComputeNetError as exc:
            if _unreachable(exc):
                return  # the submit retries, and the child names what it lacks
            raise BackendError(f"the child network did not list its datasets: {exc}") from exc
        missing = [d for d in job.spec.inputs if d not in held]
        for dataset in missing:
            staged = job.env.get(env_name(dataset))
            if self.inbox is None or self.inbox_root is None or not staged:
                raise BackendError(
                    f"input {dataset} has no copy in the child network",
                    hint="register the dataset there under the parent's account, with the same"
                    " id and checksum, or run the agent with an inbox (docs/federation.md)",
                )
            self._import_one(dataset, Path(staged), self.inbox, self.inbox_root)

    def _import_one(self, dataset: str, staged: Path, inbox: str, root: DataRoot) -> None:
        """Place `staged` at the inbox center and register it in the child as `dataset`."""
        with self._lock:
            sha = self._staged_sha.get(dataset)
        if sha is None:  # staged by an earlier agent process: read the bytes once more
            sha = dataset_sha256(staged)
        rel = default_replica_path(self._tenant(), dataset)
        try:
            size = place_copy(staged, root, rel, sha)
        except (OSError, ComputeNetError) as exc:
            raise BackendError(
                f"could not hand input {dataset} to the child's center {inbox}: {exc}",
                hint=f"inbox_root must be {inbox}'s data root, writable by this agent",
            ) from exc
        try:
            self.client.add_dataset(dataset, inbox, rel, size, sha)
        except ConflictError:
            if self._child_datasets().get(dataset) != sha:  # a race with a twin job is fine
                raise BackendError(
                    f"input {dataset}: the id is taken in the child network",
                    hint="give the dataset another id at the parent",
                ) from None
        except ComputeNetError as exc:
            raise BackendError(
                f"the child network did not take input {dataset}: {exc.one_line()}"
            ) from exc
        logger.info("input %s (%d bytes) handed to the child at %s (%s)", dataset, size, inbox, rel)

    def _child_datasets(self) -> dict[str, str]:
        """Dataset id → sha256 of every dataset of the child account (one call)."""
        return {v.id: v.sha256 for v in self.client.datasets()}

    def _tenant(self) -> str:
        """The child account's tenant (its area in a child center's data root), asked once."""
        if self._child_tenant is None:
            try:
                tenant = self.client.whoami().tenant
            except ComputeNetError as exc:
                raise BackendError(f"the child network did not say who we are: {exc}") from exc
            if not tenant:
                raise BackendError(
                    "the child account has no tenant", hint="use a user's token, not an admin's"
                )
            self._child_tenant = tenant
        return self._child_tenant

    def _check_shape(self, job: BackendJob) -> None:
        """A job larger than any one child center's pool can never run there: say so now."""
        try:
            centers = self._centers()
        except ComputeNetError:
            return  # the child decides; its answer comes through poll
        biggest = max(
            (
                int(p.get("total", 0))
                for c in centers
                for p in c.pools
                if str(p.get("chip")) == job.chip
            ),
            default=0,
        )
        if job.count > biggest:
            raise BackendError(
                f"no center of the child network has {job.count} × {job.chip}"
                f" (the most in one is {biggest})"
            )

    def _rate_card(self, chips: list[str]) -> dict[str, tuple[Decimal, float]]:
        """Per chip: the child's own price for 1 CU·h on one chip, and its wait, now.

        The child's cheapest feasible quote for a reference job (`QUOTE_CLASS`,
        one chip, 1 CU·h: its total is the price of one CU·h, to the fen as the
        child's money code rounds it), asked at most every `QUOTE_TTL_S`; a chip
        the child cannot quote is left out, the last card is kept while it is away.
        """
        with self._lock:
            if time.monotonic() - self._rates_at < QUOTE_TTL_S:
                return dict(self._rates)
            self._rates_at = time.monotonic()
        rates: dict[str, tuple[Decimal, float]] = {}
        try:  # the child's price, not its parent's through its uplink
            uplinks = {c.id for c in self._all_centers() if c.backend == UPLINK_KIND}
        except ComputeNetError:
            return dict(self._rates)
        for chip in chips:
            ref = {
                "name": "rate-card",
                "class": QUOTE_CLASS,
                "command": "true",
                "chips": {"count": 1, "types": [chip]},
                "work": {"cu_hours": 1},
            }
            try:
                view = self.client.quote(ref)
            except ComputeNetError as exc:
                logger.info("the child network did not quote %s: %s", chip, exc.one_line())
                continue
            ok = [o for o in view.options if o.feasible and o.center not in uplinks]
            if ok:
                best = min(ok, key=lambda o: (o.total_cny, o.finish))
                wait = max(0.0, (best.planned_start - view.now).total_seconds())
                rates[chip] = (best.total_cny, min(wait, limits.MAX_DURATION_S))
        with self._lock:
            self._rates.update(rates)
            return dict(self._rates)

    def _child_deadline(self, job: BackendJob) -> datetime | None:
        """The parent's absolute deadline (`job.deadline_real`) as an instant of the child's clock.

        Two networks' clocks differ (epoch, time scale), real time does not: the
        real seconds left are scaled into the child's network time from its now.
        """
        real = getattr(job, "deadline_real", None)
        if real is None:
            return None
        at, child_now, scale = self._child_clock()
        left_real = float(real) - at
        return child_now + timedelta(seconds=left_real * scale)

    def _child_clock(self) -> tuple[float, datetime, float]:
        """(real unix seconds, the child's network now then, its time scale); read each minute."""
        with self._lock:
            clock = self._clock
            if clock is not None and time.monotonic() - self._clock_at < 60.0:
                at, now, scale = clock
                real = time.time()
                return real, now + timedelta(seconds=(real - at) * scale), scale
        try:
            net = self.client.network()
        except ComputeNetError as exc:
            raise BackendError(f"the child network did not tell its clock: {exc}") from exc
        real = time.time()
        clock = (real, datetime.fromisoformat(str(net["now"])), float(net["time_scale"]))
        with self._lock:
            self._clock, self._clock_at = clock, time.monotonic()
        return clock

    def _centers(self) -> list[CenterView]:
        """The child's own centers: all but its uplinks (`_all_centers`).

        A child center run by ``--backend uplink`` is the child's own parent
        (Overflow up, docs/federation.md), often this very network: its chips are
        the parent's, so counting them would show the parent its own chips through
        the child, and nothing delegated down may go back up through it anyway.
        """
        return [c for c in self._all_centers() if c.backend != UPLINK_KIND]

    def _all_centers(self) -> list[CenterView]:
        """The child's centers, read at most once per `capacity_ttl_s`."""
        with self._lock:
            if time.monotonic() - self._centers_at < self.capacity_ttl_s:
                return self._centers_seen
        centers = self.client.centers()
        with self._lock:
            self._centers_seen, self._centers_at = centers, time.monotonic()
        return centers

    def _listed(self) -> dict[str, str]:
        """Key → child job id, from the child's job list (every page)."""
        try:
            views = self.client.jobs()
        except ComputeNetError as exc:
            raise BackendError(f"the child network did not list its jobs: {exc}") from exc
        out: dict[str, str] = {}
        for view in reversed(views):  # oldest first: the first job under a name wins
            key = self._key_of(view.name)
            if key is not None:
                out.setdefault(key, view.id)
        return out

    def _load_records(self) -> dict[str, str]:
        if self.state_dir is None:
            return {}
        try:
            data = json.loads((self.state_dir / _RECORDS).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save_records(self) -> None:
        """Key → child job id, written atomically (0600: it names other tenants' jobs)."""
        if self.state_dir is None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state_dir / f"{_RECORDS}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._records, f)
        os.replace(tmp, self.state_dir / _RECORDS)


def _pool_tuple(pool: Mapping[str, object]) -> tuple[str, int, int, int | None]:
    """A child center's pool as `aggregate_capacity` takes it (a region's has largest_free)."""
    one = pool.get("largest_free")
    return (
        str(pool.get("chip", "")),
        int(str(pool.get("total", 0))),
        int(str(pool.get("free", 0))),
        None if one is None else int(str(one)),
    )


def _read_token(path: str | Path) -> str:
    """The child account's token, from a file only the agent's user can read."""
    from computenet.agent.config import read_token_file  # the one check for token files

    try:
        return read_token_file(path)
    except ValidationError as exc:
        exc.field = "token_file"
        raise


def _inbox(center: str | None, root: str | Path | None) -> tuple[str | None, DataRoot | None]:
    """The ``inbox`` options: a child center and its agent's data root, both or neither."""
    if not center and not root:
        return None, None
    if not center or not root:
        missing = "inbox" if not center else "inbox_root"
        raise ValidationError(
            f"the network backend's inbox needs both inbox and inbox_root; {missing} is missing",
            field=missing,
            hint="--backend-opt inbox=CENTER --backend-opt inbox_root=DIR (that center's"
            " agent's data root)",
        )
    if not Path(root).is_dir():
        raise ValidationError(
            f"inbox_root '{root}' is not a directory",
            field="inbox_root",
            hint=f"the data root of the agent of child center {center}",
        )
    return center, DataRoot(root)


def _period(detail: JobDetail) -> str:
    """The child's billing period of a finished job: its month in CST, as the child's
    `server.metering.period_of` (a backend does not import the server)."""
    finished: datetime | None = detail.finished_at
    assert finished is not None
    return finished.astimezone(CST).strftime("%Y-%m")


def _budget(job: BackendJob) -> Decimal | None:
    """What is left of the job's budget (`BackendJob.budget_cny`, set by the parent), if any."""
    left = getattr(job, "budget_cny", None)
    if left is None:
        return None
    # The child refuses a budget of 0 (must be > 0): a spent budget is one fen.
    return max(Decimal(left), Decimal("0.01"))


def _child_path(detail: JobDetail, center: str) -> list[PathHop]:
    """The child's path for its job; made from the detail when the child sends none."""
    if detail.path:
        return list(detail.path)
    reason = detail.reasons[0][: limits.MAX_REASON_CHARS] if detail.reasons else None
    return [
        PathHop(
            network=center or "child",
            center=detail.center,
            chip=detail.chip,
            count=detail.chips or None,
            job_id=detail.id,
            state=detail.state.value,
            reason=reason,
        )
    ]


def _truthy(value: bool | str) -> bool:
    return value if isinstance(value, bool) else value.strip().lower() not in ("0", "false", "no")


def _taken_over(state_dir: Path) -> bool:
    """Whether a live agent holds the state dir's lock (it then owns the jobs)."""
    try:
        fd = os.open(state_dir / _LOCK, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this call took
    return False


def watch(agent_pid: int, state_dir: Path, url: str, token_file: Path, origin: str) -> int:
    """The watchdog: once the agent is gone, cancel what it held at its fence, unless taken over.

    The deadline is the dead agent's own: its last acknowledged heartbeat plus its
    fence (``acked_unix`` and ``fence_after_s`` in its state file), which is before
    the parent may lease the job again (protocol/fencing.py).
    """
    from computenet.agent.jobs import load_state  # the agent's state file, read as it writes it

    while os.getppid() == agent_pid:  # reparented: the agent is gone
        time.sleep(0.2)
    held, meta = load_state(state_dir.parent)
    acked, fence = meta.get("acked_unix"), meta.get("fence_after_s")
    deadline = time.time()
    if isinstance(acked, int | float) and isinstance(fence, int | float):
        deadline = float(acked) + float(fence)
    logger.warning(
        "agent %d gone: its delegated jobs stop at %.1f unless taken over", agent_pid, deadline
    )
    while time.time() < deadline:
        if _taken_over(state_dir):
            return 0
        time.sleep(0.1)
    if _taken_over(state_dir):
        return 0
    backend = NetworkBackend(
        state_dir, url=url, token_file=token_file, origin=origin, watchdog=False
    )
    for job in held.values():
        handle = job.handle or backend._records.get(job.key)
        if handle and job.phase != "finished":
            logger.warning("fenced for the dead agent: cancelling %s (%s)", job.job_id, handle)
            try:
                backend.cancel(handle)
            except BackendError as exc:
                logger.error("could not cancel %s: %s", handle, exc.one_line())
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m computenet.backends.network --agent-pid PID ...``: the watchdog (see `watch`)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m computenet.backends.network")
    p.add_argument("--agent-pid", type=int, required=True)
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--token-file", type=Path, required=True)
    p.add_argument("--origin", required=True)
    args = p.parse_args(argv)
    logging.basicConfig(
        level="INFO", format="%(asctime)s network-watchdog %(levelname)s %(message)s"
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return watch(args.agent_pid, args.state_dir, args.url, args.token_file, args.origin)


if __name__ == "__main__":
    sys.exit(main())
