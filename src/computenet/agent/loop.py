"""The center agent: joins one center to the network by calling out to the control plane.

One loop, one thread for everything that touches the backend and the control
plane (staging runs in a small thread pool):

1. register (idempotent; again whenever the control plane forgets us);
2. every ``heartbeat_interval_s`` real seconds: heartbeat with capacity and the
   job ids held; stop and forget the jobs the reply lists in ``cancel``;
3. lease jobs while chips are free — on a thread of its own, as a long poll
   (``lease_wait_s``): the control plane answers as soon as a job is placed
   here, and the main loop is woken to take it; stage their inputs (a job with
   nothing to fetch goes straight on, in the same tick); submit them to the
   backend with the idempotency key ``"{job_id}:{attempt}"`` (so a restarted
   agent re-attaches instead of starting twice);
4. poll the backend, queue status transitions, read logs, and on the end queue
   usage and the final state;
5. deliver the queued reports in order (logs before the final state).

The control plane being down never stops local work: calls back off
exponentially and the reports wait in each job's outbox. The fencing rule
(`computenet.protocol.fencing`) keeps a job from running at two centers: once
``fence_after_s`` (half the lease timeout) has passed since the agent *sent*
the last heartbeat the control plane acknowledged, it stops every job still
running (the backend's SIGTERM → SIGKILL grace is cut to ``stop_grace_s``)
and forgets it — well before the control plane requeues it, at 1.25 × the
lease timeout after it last heard of it. Jobs that already ended keep their
reports; the control plane takes them if it has not moved on. Every call to
the control plane is cut short at that fence, so no call can keep the loop
past it, and a shorter outage kills nothing. One bad job never stops the loop.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from computenet.agent import serving
from computenet.agent.checkpoints import Checkpoints, job_owner, supports_preempt
from computenet.agent.client import CenterClient, ServerUnavailable
from computenet.agent.config import AgentConfig, read_token_file, resolve_pools
from computenet.agent.data import DataRoot
from computenet.agent.endpoint import DataEndpoint
from computenet.agent.jobs import (
    HeldJob,
    dump_state,
    job_env,
    load_state,
    prepare_state_dir,
    seal_tenant_area,
    write_state,
)
from computenet.agent.reports import LOST, deliver
from computenet.agent.staging import StagingCancelled, StagingResult, needs_fetch, stage_inputs
from computenet.backends.base import Backend, BackendJob, BackendState, BackendStatus
from computenet.backends.base import stop_unheld as stop_unheld_jobs
from computenet.backends.registry import make_backend
from computenet.errors import (
    AuthError,
    BackendError,
    ComputeNetError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from computenet.model.limits import MAX_PROGRESS
from computenet.protocol import (
    HeartbeatReply,
    LeasedJob,
    PoolCapacity,
    RegisterReply,
)
from computenet.protocol.api import MemberView
from computenet.protocol.center import MAX_QUOTES, JobProgress, JobQuote, QuoteRequest
from computenet.protocol.fencing import DEFAULT_LEASE_TIMEOUT_S, lease_rule
from computenet.protocol.tickets import CENTER_HEADER

logger = logging.getLogger(__name__)

_LOG_BUFFER_MAX = 4 * 1024 * 1024
# The end report's message of a job stopped for preemption (what the backend said follows).
PREEMPTED = "stopped for preemption"
_SWEEP_EVERY_S = 3600.0  # checkpoints of jobs gone for good are looked for this often
_MAX_JOB_ERRORS = 3
# The local backend's message for a job stopped because the agent that started it died.
_AGENT_GONE = "agent process went away"
_REPLICAS_EVERY_S = 10.0  # a region's datasets (backend `replicas`) are reported this often
_LOG_FLUSH_S = 0.5  # running jobs' output is shipped at most this often (final output at once)
# A lease that could wait less than this asks not to wait (and is paced by lease_interval_s).
_MIN_LEASE_WAIT_S = 0.1
# Of the time the last acknowledged heartbeat stays fresh, what a lease call may wait: the
# rest covers the reply's way back, so no job arrives after the freshness window.
_LEASE_WAIT_SHARE = 0.8


class Agent:
    """A running center agent (see module doc). `run()` blocks until `stop_event` is set."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        backend: Backend | None = None,
        stop_event: threading.Event | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        assert config.state_dir is not None and config.data_root is not None
        self.config = config
        self.stop_event = stop_event or threading.Event()
        self.state_dir = config.state_dir
        prepare_state_dir(self.state_dir, config.data_root)  # modes that keep jobs out
        self.data_root = DataRoot(config.data_root)
        self.client = CenterClient(config.server, config.token, config.center, transport=transport)
        self.endpoint = DataEndpoint(
            self.data_root, config.data_host, config.data_port, config.data_url or ""
        )
        self.backend: Backend | None = backend
        self.jobs, self.meta = load_state(self.state_dir)
        self.reply: RegisterReply | None = None
        # Fetch tickets are bound to the fetching center, which names itself in this header.
        self._fetch_http = httpx.Client(
            timeout=httpx.Timeout(30.0, connect=5.0), headers={CENTER_HEADER: config.center}
        )
        self._pool = ThreadPoolExecutor(config.max_parallel_staging, thread_name_prefix="staging")
        self._staging: dict[str, tuple[Future[StagingResult], threading.Event]] = {}
        self._next_heartbeat = 0.0
        self._next_lease = 0.0
        self._next_log_flush = 0.0
        self._retry_at = 0.0
        self._backoff = 0.0
        # Monotonic send time of the last heartbeat the control plane acknowledged
        # (carried across restarts as wall time in the state file): the fence counts from it.
        self._acked_send: float | None = None
        acked_unix = self.meta.get("acked_unix")
        if isinstance(acked_unix, int | float):
            self._acked_send = time.monotonic() - max(0.0, time.time() - float(acked_unix))
        self.client.deadline = self._call_deadline
        self._saved = ""
        self._hb_thread: threading.Thread | None = None
        self._fatal: AgentFatal | None = None
        self._cancels: collections.deque[str] = collections.deque()
        # Jobs the control plane asked us to stop for preemption (heartbeat thread → main
        # loop, as `_cancels`): only ids of jobs held, so a reply adds no more than those.
        self._preempts: collections.deque[str] = collections.deque()
        # Where jobs keep checkpoints: None until the backend is known, False where they cannot.
        self._checkpoints: Checkpoints | bool | None = None
        self._next_sweep = 0.0
        self._capacity: list[PoolCapacity] = []
        # A region's held jobs as the plane below sees them (backend `paths`), for the heartbeat.
        self._progress: list[JobProgress] | None = None
        self._next_replicas = 0.0  # when to report a region's datasets again
        # The control plane refused our jobs' paths (422 progress): its network file does not
        # tag this center `region`, so nothing only a region may send is sent any more.
        self._not_region = False
        # A region's own centers (backend `members`), sent with each heartbeat for display.
        self._members: list[MemberView] | None = None
        self._members_off = False  # the control plane refused one: not sent again
        # The market (docs/federation.md): jobs the control plane asked this region to price
        # (from heartbeat replies) and the answers for the next heartbeat (backend `quote_jobs`).
        self._quote_asks: collections.deque[QuoteRequest] = collections.deque(maxlen=MAX_QUOTES)
        self._quotes_out: list[JobQuote] = []
        self._quotes_lock = threading.Lock()
        # The long-poll lease thread hands leased jobs to the main loop through the inbox
        # and wakes it; it asks again once `_capacity` counts them (batches handed/taken).
        self._lease_thread: threading.Thread | None = None
        self._inbox: collections.deque[list[LeasedJob]] = collections.deque()
        self._wake = threading.Event()
        self._handed = 0
        self._taken = 0
        self._capacity_taken = 0

    # ------------------------------------------------------------------ running

    def run(self) -> int:
        """Serve data, register, and loop until stopped; 0 on a clean stop."""
        self.endpoint.start()
        logger.info("center %s: data endpoint at %s", self.config.center, self.endpoint.url)
        try:
            if self.backend is None:
                self.backend = self._make_backend()
            self._reattach()
            self._refresh_capacity()
            self._hb_thread = threading.Thread(
                target=self._heartbeat_loop, name="heartbeat", daemon=True
            )
            self._hb_thread.start()
            if self.config.lease_wait_s > 0:
                self._lease_thread = threading.Thread(
                    target=self._lease_loop, name="lease", daemon=True
                )
                self._lease_thread.start()
            while not self.stop_event.is_set():
                self._wake.clear()
                self.tick()
                self._wake.wait(self.config.tick_s)  # a lease wakes it at once
        finally:
            self.stop_event.set()
            if self._hb_thread is not None:
                self._hb_thread.join(timeout=30)
            if self._lease_thread is not None:
                # A call held at the control plane ends by itself; a job it still brings
                # is kept in the state file (taken up on a --keep-jobs restart, else it
                # expires like a lost lease reply).
                self._lease_thread.join(timeout=1.0)
            self.shutdown()
        return 0

    def _heartbeat_loop(self) -> None:
        """Heartbeat on a thread of its own: a slow backend call never holds up the lease.

        (slurmctld away for a few seconds blocks squeue; the lease must not lapse
        for it.) The reply's cancels are handed to the main loop, which owns the
        backend; a refusal makes the main loop register again.
        """
        while not self.stop_event.is_set():
            if self.reply is not None and time.monotonic() >= self._next_heartbeat:
                try:
                    self._heartbeat()
                except ServerUnavailable as exc:
                    logger.debug("heartbeat failed: %s", exc.message)
                    self._next_heartbeat = time.monotonic() + self._heartbeat_interval()
                except AgentFatal as exc:
                    self._fatal = exc
                    return
                except Exception:
                    logger.exception("heartbeat failed")
                    self._next_heartbeat = time.monotonic() + self._heartbeat_interval()
            self.stop_event.wait(0.05)

    def _lease_loop(self) -> None:
        """Lease on a thread of its own, as a long poll: a job placed here arrives at once.

        The call waits at the control plane while the main loop goes on with local
        work; it is cut to the time the last acknowledged heartbeat stays fresh
        (`_lease_wait`), so jobs are still taken only within that window. Leased
        jobs go to the main loop, which owns the backend, and wake it. A control
        plane that answers at once (an older one ignores ``wait_s``) is polled
        every ``lease_interval_s``, as before.
        """
        pause = self.config.lease_interval_s
        while not self.stop_event.is_set():
            wait = self._lease_wait()
            free = sum(p.free for p in self._capacity)
            if wait is None or free <= 0 or self._inbox or self._capacity_taken != self._handed:
                self.stop_event.wait(0.02)  # not now: nothing sent, check again shortly
                continue
            started = time.monotonic()
            try:
                jobs = self._lease(free, wait)
            except ServerUnavailable as exc:
                logger.debug("lease failed: %s", exc.message)
                self.stop_event.wait(pause)
                continue
            except AgentFatal as exc:
                self._fatal = exc
                self._wake.set()
                return
            except Exception:
                logger.exception("lease failed")
                self.stop_event.wait(pause)
                continue
            if jobs:
                self._handed += 1
                self._inbox.append(jobs)
                self._wake.set()
            elif wait == 0.0 or time.monotonic() - started < wait / 2:
                self.stop_event.wait(pause)

    def _lease_wait(self) -> float | None:
        """How long the next lease call may wait at the control plane; None: take no job now."""
        acked = self._acked_send
        if self.reply is None or acked is None:
            return None
        fresh_left = acked + self._fence_after() / 2 - time.monotonic()
        if fresh_left <= 0:
            return None
        wait = min(self.config.lease_wait_s, _LEASE_WAIT_SHARE * fresh_left)
        return wait if wait >= _MIN_LEASE_WAIT_S else 0.0

    def _heartbeat_interval(self) -> float:
        """Several heartbeats per fence period, so that one lost reply costs nothing."""
        every = self.reply.heartbeat_interval_s if self.reply is not None else 1.0
        return min(every, self._fence_after() / 3)

    def _held(self) -> list[HeldJob]:
        """The held jobs now (safe from the heartbeat thread while the main loop changes them)."""
        while True:
            try:
                return list(self.jobs.values())
            except RuntimeError:  # changed size during the copy: copy again
                continue

    def _make_backend(self) -> Backend:
        def centers() -> Any:
            return self.client.get_json("/api/v1/centers")

        pools = resolve_pools(self.config, centers)
        assert self.config.state_dir is not None
        options = {
            "state_dir": self.config.state_dir / "backend",
            "pools": pools,
            "center": self.config.center,  # the label its jobs carry (list_jobs)
        }
        options.update(self.config.backend_options)
        backend = make_backend(self.config.backend, **options)
        logger.info("center %s: %s backend, pools %s", self.config.center, backend.kind, pools)
        return backend

    def _reattach(self) -> None:
        """After a restart: find the backend jobs of the jobs we still hold."""
        assert self.backend is not None
        for held in self.jobs.values():
            if held.phase in ("submitted", "ready", "staging"):
                handle = self.backend.find(held.key)
                if handle is not None:
                    logger.info("re-attached %s to %s", held.job_id, handle)
                    held.handle, held.phase = handle, "submitted"
                elif held.phase == "submitted":
                    held.phase = "ready"  # it never really started: start it now
            if held.phase == "staging":
                held.phase = "leased"
        # Before registering: stop what an earlier agent process left running that no
        # held job claims (a lost or stale state file), so it never runs unknown.
        stop_unheld = getattr(self.backend, "stop_unheld", None)
        if callable(stop_unheld):
            stop_unheld({held.key for held in self.jobs.values()})
        else:  # external schedulers: the jobs labelled for this center (backends.base)
            try:
                stop_unheld_jobs(self.backend, {held.key for held in self.jobs.values()})
            except ComputeNetError as exc:
                logger.warning("could not look for orphaned backend jobs: %s", exc.one_line())

    def tick(self) -> None:
        """One pass: local work first, then the control plane when it is due."""
        if self._fatal is not None:
            raise self._fatal
        while self._cancels:
            held = self.jobs.get(self._cancels.popleft())
            if held is not None:
                self._stop_cancelled(held)
        while self._preempts:  # after the cancels: a cancel wins
            held = self.jobs.get(self._preempts.popleft())
            if held is not None:
                self._stop_preempted(held)
        self._take_leased()
        self._advance_jobs()
        self._refresh_capacity()
        self._answer_quotes()
        now = time.monotonic()
        if now >= self._retry_at:
            try:
                self._talk(now)
                self._backoff = 0.0
            except ServerUnavailable as exc:
                if self._backoff == 0.0:
                    logger.warning("control plane unavailable, retrying: %s", exc.message)
                cap = self.config.max_backoff_s
                if self._fence_at() is not None:
                    # Jobs run: retry often enough to get a heartbeat through before the
                    # fence once the control plane is back.
                    cap = min(cap, self._fence_after() / 8)
                self._backoff = min(max(min(0.5, cap), self._backoff * 2), cap)
                self._retry_at = now + self._backoff * random.uniform(0.8, 1.2)
        self._fence(time.monotonic())
        self._sweep_checkpoints()
        self._save()

    def shutdown(self) -> None:
        """Stop staging, stop (or detach with keep_jobs) backend jobs, close everything."""
        for _, cancel in self._staging.values():
            cancel.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        keep = self.config.keep_jobs
        if self.reply is not None and self.backend is not None:
            try:  # deliver what already happened before going
                self._poll_backend()
                self._flush_all()
            except ComputeNetError as exc:
                logger.info("could not deliver the last reports: %s", exc.message)
        if self.backend is not None:
            fence = self._fence_at()
            if keep and fence is not None and hasattr(self.backend, "detach_until"):
                # Jobs left running stop by themselves at our fence unless taken back.
                left = 0.0 if fence == float("-inf") else fence - time.monotonic()
                self.backend.detach_until = time.time() + max(0.0, left)
            try:
                self.backend.close(keep_jobs=keep)
            except Exception:
                logger.exception("closing the backend failed")
            if not keep:
                for held in self.jobs.values():
                    if held.handle and held.phase == "submitted":
                        self._cancel_backend(held.handle)
        self._take_leased()  # kept in the state file with the rest (--keep-jobs)
        if not keep:
            # We abandon what we held: the control plane requeues it; tell it right away.
            self.jobs.clear()
            if self.reply is not None:
                with contextlib.suppress(ComputeNetError):
                    self.client.heartbeat(self.capacity(), [])
        self._save()
        serving.close_relays()
        self.endpoint.stop()
        self._fetch_http.close()
        self.client.close()
        logger.info("center %s: agent stopped", self.config.center)

    # ------------------------------------------------------------ control plane

    def _talk(self, now: float) -> None:
        if self.reply is None:
            self._register()
        self._flush_all()
        self._report_backend_replicas(now)
        if (
            self._lease_thread is None  # without it (tests driving tick()), poll from here
            and now >= self._next_lease
            and not self.stop_event.is_set()
        ):
            self._next_lease = now + self.config.lease_interval_s
            if self.reply is not None and self._lease_is_fresh():
                jobs = self._lease(sum(p.free for p in self.capacity()), 0.0)
                if jobs:
                    self._adopt(jobs)
                    self._advance_jobs()

    def _report_backend_replicas(self, now: float) -> None:
        """A region's datasets, as replicas of this center (backend `replicas`), every 30 s."""
        replicas = getattr(self.backend, "replicas", None)
        if not callable(replicas) or self.reply is None or now < self._next_replicas:
            return
        self._next_replicas = now + _REPLICAS_EVERY_S
        try:
            found = replicas()
        except Exception as exc:
            logger.warning("backend replicas unavailable: %s", exc)
            return
        for dataset_id, report in found:
            try:
                self.client.replica(dataset_id, report)
            except ServerUnavailable:
                raise
            except ComputeNetError as exc:  # no such dataset here, or other bytes: not ours
                logger.debug("replica of %s not taken: %s", dataset_id, exc.one_line())

    def _refresh_capacity(self) -> None:
        """Note the capacity for the heartbeat and lease threads (the last known one if the
        backend fails)."""
        taken = self._taken
        try:
            self._capacity = self.capacity()
            self._capacity_taken = taken  # it counts the chips of every job taken so far
        except Exception as exc:
            logger.warning("backend capacity unavailable: %s", exc)
        self._refresh_members()
        paths = getattr(self.backend, "paths", None)  # a region: where its jobs are below
        if callable(paths):
            held = {h.handle: h for h in self.jobs.values() if h.handle}
            try:
                got = paths(list(held))
            except Exception as exc:
                logger.warning("backend paths unavailable: %s", exc)
                return
            self._progress = [
                JobProgress(job_id=held[k].job_id, attempt=held[k].attempt, path=v)
                for k, v in got.items()
            ][:MAX_PROGRESS]

    def _refresh_members(self) -> None:
        """A region's own centers for the next heartbeats (backend `members`; the last list
        is kept while the backend cannot say)."""
        members = getattr(self.backend, "members", None)
        if not callable(members) or self._not_region or self._members_off:
            return
        try:
            self._members = members()
        except Exception as exc:
            logger.warning("backend members unavailable: %s", exc)

    def _lease_is_fresh(self) -> bool:
        """Whether a heartbeat was acknowledged recently enough to take on new jobs."""
        acked = self._acked_send
        return acked is not None and time.monotonic() - acked < self._fence_after() / 2

    def _register(self) -> None:
        assert self.backend is not None
        try:
            reply = self.client.register(
                backend=self.backend.kind,
                data_url=self.endpoint.url,
                capacity=self.capacity(),
                preempt=True if self.checkpoints() is not None else None,
            )
        except (AuthError, ForbiddenError) as exc:
            if isinstance(exc, AuthError) and self._token_replaced():
                return self._register()  # once more, with the new token
            raise AgentFatal(f"the control plane refused this agent: {exc.message}") from exc
        except ComputeNetError as exc:
            if isinstance(exc, ServerUnavailable):
                raise
            raise AgentFatal(f"registration failed: {exc.one_line()}") from exc
        self.reply = reply
        self.endpoint.data_key_version = reply.data_key_version
        self.endpoint.data_key = reply.data_key
        self._learn_rule(reply.lease_timeout_s, reply.fence_after_s, reply.stop_grace_s)
        logger.info(
            "center %s registered (heartbeat %.1fs, lease timeout %.1fs, fence after %.1fs,"
            " stop grace %.1fs, time x%g, data x%g)",
            reply.center_id,
            reply.heartbeat_interval_s,
            reply.lease_timeout_s,
            self._fence_after(),
            float(self.meta["stop_grace_s"]),
            reply.time_scale,
            reply.data_scale,
        )

    def _learn_rule(self, timeout: float, fence_after: float | None, grace: float | None) -> None:
        """Remember the fencing rule's numbers (older servers send only the lease timeout)."""
        rule = lease_rule(timeout)
        self.meta["lease_timeout_s"] = timeout
        self.meta["fence_after_s"] = fence_after if fence_after else rule.fence_after_s
        self.meta["stop_grace_s"] = grace if grace else rule.stop_grace_s
        # A backend with a SIGTERM → SIGKILL grace (local) kills fenced jobs within ours.
        backend_grace = getattr(self.backend, "grace_s", None)
        if isinstance(backend_grace, int | float) and backend_grace > self.meta["stop_grace_s"]:
            with contextlib.suppress(AttributeError):
                self.backend.grace_s = float(self.meta["stop_grace_s"])  # type: ignore[union-attr]

    def _fence_after(self) -> float:
        """Seconds after the last acknowledged heartbeat's send at which jobs are stopped."""
        fence = self.meta.get("fence_after_s")
        if isinstance(fence, int | float) and fence > 0:
            return float(fence)
        timeout = self.meta.get("lease_timeout_s")
        if isinstance(timeout, int | float) and timeout > 0:
            return lease_rule(float(timeout)).fence_after_s
        return lease_rule(DEFAULT_LEASE_TIMEOUT_S).fence_after_s

    def _fence_at(self) -> float | None:
        """Monotonic time at which running jobs must be stopped; None when none runs."""
        if not any(h.phase != "finished" for h in self._held()):
            return None
        if self._acked_send is None:
            return float("-inf")  # held from before, with no acknowledged heartbeat known
        return self._acked_send + self._fence_after()

    def _call_deadline(self) -> float | None:
        """The client's deadline hook: a control-plane call must return by the fence."""
        at = self._fence_at()
        if at is None:
            # Nothing runs: no fence, but a hung call must not stall leasing for long either.
            return time.monotonic() + self._fence_after()
        return max(at, time.monotonic() - 1.0) if at == float("-inf") else at

    def _token_replaced(self) -> bool:
        """After a 401: True when the token file now holds another token, which is now used.

        An operator replaces a center's token without stopping it: `cnet admin
        center-token` makes a new one, they write it to the agent's token file,
        then revoke the old one; the agent's next call gets 401 and lands here.
        """
        path = self.config.token_file
        if path is None:
            return False
        try:
            token = read_token_file(path)
        except ComputeNetError as exc:
            logger.warning("could not re-read the token file: %s", exc.one_line())
            return False
        if token == self.config.token:
            return False
        self.config.token = token
        self.client.set_token(token)
        logger.info("center token replaced: using the new one from %s", path)
        return True

    def _heartbeat(self) -> None:
        registered = self.reply  # the main loop may drop it meanwhile (a fence)
        if registered is None:
            return
        sent, sent_unix = time.monotonic(), time.time()
        try:
            # The capacity the main loop last saw: this thread never calls the backend.
            listed = sorted(h.job_id for h in self._held())
            reply = self._send_heartbeat(listed)
        except (AuthError, ForbiddenError) as exc:
            if isinstance(exc, AuthError) and self._token_replaced():
                return  # try again with the new token at the next tick
            raise AgentFatal(f"the control plane refused this agent: {exc.message}") from exc
        except (NotFoundError, ConflictError) as exc:
            logger.warning("heartbeat refused (%s): registering again", exc.message)
            self.reply = None
            return
        self._acked_send = sent
        self.meta["acked_unix"] = sent_unix
        self._learn_rule(reply.lease_timeout_s, reply.fence_after_s, reply.stop_grace_s)
        self._next_heartbeat = sent + self._heartbeat_interval()
        self._cancels.extend(reply.cancel)  # the main loop stops them
        if reply.preempt:
            self._queue_preempts(reply.preempt)
        if reply.quote_requests:
            self._quote_asks.extend(reply.quote_requests)  # the main loop asks the backend
            self._wake.set()
        if reply.data_key_version not in (None, registered.data_key_version):
            # `cnet admin rotate-data-key`: registering again (idempotent) brings the new key.
            logger.info("data key rotated to version %d: registering again", reply.data_key_version)
            self.reply = None  # the main loop registers again

    def _send_heartbeat(self, listed: list[str]) -> HeartbeatReply:
        """One heartbeat; with the held jobs' paths below this center while they are taken.

        A control plane that does not tag this center `region` refuses the paths (422
        `progress`): they, and the region's own bill line, are left out from then on,
        and the center runs as any other.
        """
        progress = None if self._not_region else self._progress
        quotes = self._quotes_to_send()
        members = None if self._not_region else self._members
        try:
            reply = self.client.heartbeat(
                self._capacity, listed, progress=progress, quotes=quotes, members=members
            )
            self._quotes_sent(quotes)
            return reply
        except ValidationError as exc:
            field = exc.field or ""
            if quotes and field.startswith("quotes["):
                # One answer the control plane will not take must not cost the lease: they
                # are dropped (it asks again) and the heartbeat goes without them.
                logger.warning("the control plane refused our quotes: %s", exc.one_line())
                self._quotes_sent(quotes)
                return self.client.heartbeat(
                    self._capacity, listed, progress=progress, quotes=[], members=members
                )
            if members is not None and field.startswith("members["):
                # A member the control plane will not take: the list is for display only,
                # so it is not sent again rather than costing a heartbeat.
                logger.warning("the control plane refused our members: %s", exc.one_line())
                self._members, self._members_off = None, True
                return self.client.heartbeat(
                    self._capacity, listed, progress=progress, quotes=quotes
                )
            sent = (progress, quotes, members)  # what only a region may send
            if all(x is None for x in sent) or field not in ("progress", "quotes", "members"):
                raise
            logger.warning("the control plane takes no job paths from us: %s", exc.one_line())
            self._not_region = True
            return self.client.heartbeat(self._capacity, listed)

    def _quotes_to_send(self) -> list[JobQuote] | None:
        """A region's answers to quote requests (an empty list: it answers them); None for
        a center whose backend does not quote or that the control plane holds no region."""
        if self._not_region or not callable(getattr(self.backend, "quote_jobs", None)):
            return None
        with self._quotes_lock:
            return list(self._quotes_out)

    def _quotes_sent(self, sent: list[JobQuote] | None) -> None:
        """The control plane took `sent`: they leave the queue."""
        if sent:
            with self._quotes_lock:
                self._quotes_out = self._quotes_out[len(sent) :]

    def _answer_quotes(self) -> None:
        """Price the jobs the control plane asked about with the backend's own scheduler (a
        region's `quote_jobs`) and send the answers with the next heartbeat, at once."""
        quote_jobs = getattr(self.backend, "quote_jobs", None)
        if not self._quote_asks or not callable(quote_jobs):
            return
        asks: list[QuoteRequest] = []
        while self._quote_asks:
            asks.append(self._quote_asks.popleft())
        try:
            got: list[JobQuote] = quote_jobs(asks)
        except Exception as exc:
            logger.warning("backend quotes unavailable: %s", exc)
            return
        with self._quotes_lock:
            self._quotes_out = (self._quotes_out + got)[-MAX_QUOTES:]
        self._next_heartbeat = 0.0  # the heartbeat thread sends them now

    def _lease(self, free: int, wait_s: float) -> list[LeasedJob]:
        """Ask for up to `free` (at most 8) jobs, waiting up to `wait_s` at the control plane.

        Touches neither the backend nor the held jobs: the lease thread calls it.
        """
        if free <= 0:
            return []
        try:
            reply = self.client.lease(min(free, 8), wait_s)
        except (AuthError, ForbiddenError) as exc:
            if isinstance(exc, AuthError) and self._token_replaced():
                return []  # try again with the new token
            raise AgentFatal(f"the control plane refused this agent: {exc.message}") from exc
        except (NotFoundError, ConflictError) as exc:
            logger.warning("lease refused (%s): registering again", exc.message)
            self.reply = None
            return []
        except ServerUnavailable:
            raise
        except ComputeNetError as exc:
            logger.warning("lease refused: %s", exc.one_line())
            return []
        return list(reply.jobs)

    def _take_leased(self) -> None:
        """Take the jobs the lease thread brought (main loop: it may stop an older attempt)."""
        while self._inbox:
            self._adopt(self._inbox.popleft())
            self._taken += 1

    def _adopt(self, jobs: list[LeasedJob]) -> None:
        """Hold newly leased jobs (a new attempt of a job held replaces the old one)."""
        for job in jobs:
            held = self.jobs.get(job.job_id)
            if held is not None and held.attempt == job.attempt:
                continue
            if held is not None:
                self._drop(job.job_id)
            logger.info(
                "leased %s attempt %d: %s × %d",
                job.job_id,
                job.attempt,
                job.placement.chip,
                job.placement.count,
            )
            self.jobs[job.job_id] = HeldJob.from_lease(job)

    def _flush_all(self) -> None:
        now = time.monotonic()
        for job_id in list(self.jobs):
            held = self.jobs.get(job_id)
            if held is None:
                continue
            try:
                deliver(self.client, held, logs_due=now >= self._next_log_flush)
            except ServerUnavailable:
                raise
            except LOST as exc:
                logger.warning("%s is no longer ours (%s): stopping it", job_id, exc.message)
                self._drop(job_id)
            except Exception:
                logger.exception("reporting %s failed", job_id)
                continue
            if held.done:
                logger.info("%s done and reported", job_id)
                del self.jobs[job_id]
                self._forget_checkpoint(held)
        if now >= self._next_log_flush:
            self._next_log_flush = now + _LOG_FLUSH_S

    def _fence(self, now: float) -> None:
        """Stop every running job once the fence passed (see module doc)."""
        at = self._fence_at()
        if at is None or now < at:
            return
        since = "ever" if self._acked_send is None else f"{now - self._acked_send:.1f}s"
        logger.warning(
            "no acknowledged heartbeat for %s (fence after %.1fs): the control plane will "
            "requeue our jobs, stopping them here",
            since,
            self._fence_after(),
        )
        for job_id, held in list(self.jobs.items()):
            if held.phase != "finished":
                self._drop(job_id)
        self.reply = None

    # --------------------------------------------------------------- local work

    def capacity(self) -> list[PoolCapacity]:
        """Backend capacity less the chips promised to jobs still staging or waiting."""
        assert self.backend is not None
        reserved: dict[str, int] = {}
        for held in self.jobs.values():
            if held.phase in ("leased", "staging", "ready"):
                placement = held.leased["placement"]
                reserved[placement["chip"]] = reserved.get(placement["chip"], 0) + int(
                    placement["count"]
                )
        out = []
        for p in self.backend.capacity():
            free = max(0, p.free - reserved.get(p.chip, 0))
            # A region's largest job shape (docs/federation.md) shrinks with what is promised.
            largest = None if p.largest_free is None else min(p.largest_free, free)
            out.append(p.model_copy(update={"free": free, "largest_free": largest}))
        return out

    def _advance_jobs(self) -> None:
        assert self.backend is not None
        for held in list(self.jobs.values()):
            if held.phase == "submitted":
                continue
            try:
                if held.phase == "leased" and self.reply is not None:
                    self._start_staging(held)
                if held.phase == "staging":
                    self._check_staging(held)
                if held.phase == "ready":
                    self._submit(held)
            except Exception as exc:
                self._job_error(held, exc)
        self._poll_backend()

    def _start_staging(self, held: HeldJob) -> None:
        job = held.lease()
        inputs = list(job.inputs)
        choose = getattr(self.backend, "inputs_to_stage", None)  # a region: what it lacks
        if callable(choose):
            inputs = choose(inputs)
        if not any(needs_fetch(i, self.data_root) for i in inputs):
            # Everything is here: resolve the local paths now rather than waiting
            # a tick for a pool thread (this saved ~0.2 s per job in
            # bench/dispatch_latency.py).
            done: Future[StagingResult] = Future()
            try:
                done.set_result(stage_inputs(inputs, self.data_root, self._fetch_http))
            except Exception as exc:
                done.set_exception(exc)
            self._staging[held.job_id] = (done, threading.Event())
            held.phase = "staging"
            self._check_staging(held)
            return
        held.queue_status("STAGING", at=_now())
        cancel = threading.Event()
        scale = self.reply.time_scale if self.reply else 1.0
        dscale = self.reply.data_scale if self.reply else 1.0
        fut = self._pool.submit(
            stage_inputs,
            inputs,
            self.data_root,
            self._fetch_http,
            time_scale=scale,
            data_scale=dscale,
            cancel=cancel,
        )
        self._staging[held.job_id] = (fut, cancel)
        held.phase = "staging"

    def _check_staging(self, held: HeldJob) -> None:
        entry = self._staging.get(held.job_id)
        if entry is None:
            held.phase = "leased"
            return
        fut, _ = entry
        if not fut.done():
            return
        del self._staging[held.job_id]
        try:
            result = fut.result()
        except StagingCancelled:
            return
        except ComputeNetError as exc:
            self._finish(held, "FAILED", message=f"staging failed: {exc.message}")
            return
        held.input_paths = result.paths
        held.bytes_staged = result.bytes_staged
        held.staging_real_s = result.staging_real_s
        held.staged_from = result.staged_from
        held.bytes_from = result.bytes_from
        for rep in result.new_replicas:
            held.outbox.append(
                {"kind": "replica", "dataset": rep.dataset, "path": rep.path, "sha256": rep.sha256}
            )
        held.phase = "ready"

    def _submit(self, held: HeldJob) -> None:
        assert self.backend is not None
        job = held.lease()
        chip, count = job.placement.chip, job.placement.count
        handle = self.backend.find(held.key)
        if handle is None:
            pool = next((p for p in self.backend.capacity() if p.chip == chip), None)
            if pool is None or count > pool.total:
                have = ", ".join(f"{p.chip}={p.total}" for p in self.backend.capacity())
                self._finish(
                    held,
                    "FAILED",
                    message=f"this center cannot run {count} × {chip} (it has {have})",
                )
                return
            if count > pool.free:
                return  # wait for chips to free up
            scale = self.reply.time_scale if self.reply else 1.0
            store = self.checkpoints()
            try:
                checkpoint = None if store is None else store.prepare(job.job_id)
            except ValidationError as exc:  # a job id unsafe as a path, or a symlink there
                self._finish(held, "FAILED", message=f"agent could not run it: {exc.message}")
                return
            env = job_env(
                job,
                self.config.center,
                self.data_root.root,
                held.input_paths,
                scale,
                checkpoint,
            )
            serving.give_port(held, job, env)  # a service replica: its $PORT
            seal_tenant_area(self.data_root.root, job.tenant, self.backend)  # its data: its own
            handle = self.backend.submit(
                BackendJob(
                    job_id=job.job_id,
                    attempt=job.attempt,
                    command=job.spec.command,
                    chip=chip,
                    count=count,
                    env=env,
                    planned_run_s=job.planned_run_s,
                    tenant=job.tenant,
                    spec=job.spec,
                    deadline_real=job.deadline_real,
                    budget_cny=job.budget_left_cny,
                    checkpoint_dir=None if checkpoint is None else str(checkpoint),
                ),
                held.key,
            )
            logger.info(
                "%s submitted to the %s backend as %s", job.job_id, self.backend.kind, handle
            )
        held.handle = handle
        held.phase = "submitted"
        held.submitted_unix = time.time()
        held.errors = 0

    def _poll_backend(self) -> None:
        assert self.backend is not None
        running = {h.handle: h for h in self.jobs.values() if h.phase == "submitted" and h.handle}
        if not running:
            return
        try:
            statuses = self.backend.poll(list(running))
        except Exception as exc:
            logger.warning("backend poll failed: %s", exc)
            return
        for handle, held in running.items():
            try:
                self._observe(held, statuses.get(handle))
            except Exception as exc:
                self._job_error(held, exc)

    def _observe(self, held: HeldJob, status: BackendStatus | None) -> None:
        assert self.backend is not None and held.handle is not None
        state = status.state if status is not None else BackendState.UNKNOWN
        if state in (
            BackendState.RUNNING,
            BackendState.SUCCEEDED,
            BackendState.FAILED,
            BackendState.CANCELLED,
        ):
            if held.started_unix is None:
                started = status.started_at if status is not None else None
                held.started_unix = started.timestamp() if started else time.time()
            endpoint = None
            # A service replica is RUNNING for the network once it answers its probe;
            # once that is reported it is not probed again (a probe blocks this loop).
            waiting = (
                held.service_port is not None
                and state is BackendState.RUNNING
                and "RUNNING" not in held.queued_states
            )
            if waiting:
                endpoint = serving.ready_endpoint(held, self.config.data_host, self.backend)
            if endpoint is not None or not waiting:
                held.queue_status("RUNNING", at=_iso(held.started_unix), endpoint=endpoint)
        self._read_logs(held)
        if state in (BackendState.PENDING, BackendState.RUNNING):
            return
        while self._read_logs(held):  # drain what the job wrote before it ended
            pass
        ended = status.ended_at if status is not None else None
        held.ended_unix = ended.timestamp() if ended else time.time()
        if state is BackendState.UNKNOWN or (
            status is not None and not held.cancel_sent and _AGENT_GONE in status.message
        ):
            # The center lost the job (its agent died, or the backend forgot it): that is
            # no failure of the job. Report nothing; unlisted, its lease expires and the
            # control plane runs it again.
            why = "the backend no longer knows it" if status is None else status.message
            logger.warning("%s was lost here (%s): leaving it to be requeued", held.job_id, why)
            self._drop(held.job_id)
        else:
            assert status is not None
            self._finish(held, state.value, exit_code=status.exit_code, message=status.message)

    def _read_logs(self, held: HeldJob) -> bool:
        """Move new backend output into the job's log buffer; True when there was some."""
        assert self.backend is not None and held.handle is not None
        if len(held.log_buffer) >= _LOG_BUFFER_MAX:
            return False
        text, offset = self.backend.logs(held.handle, held.log_offset)
        if not text and offset == held.log_offset:
            return False
        held.log_buffer += text
        held.log_offset = offset
        return bool(text)

    def _finish(
        self, held: HeldJob, state: str, *, exit_code: int | None = None, message: str = ""
    ) -> None:
        """Queue usage and the final state (RUNNING first when the job ran)."""
        if held.final_queued:
            return
        run_s = 0.0
        if held.started_unix is not None:
            run_s = max(0.0, (held.ended_unix or time.time()) - held.started_unix)
        usage: dict[str, Any] = {
            "run_real_s": round(run_s, 3),
            "staging_real_s": round(held.staging_real_s, 3),
            "bytes_staged": held.bytes_staged,
            "staged_from": held.staged_from,
            "transfers": [{"source": c, "bytes": n} for c, n in sorted(held.bytes_from.items())],
        }
        metered = getattr(self.backend, "metered", None)  # a region bills its own runs
        if callable(metered) and held.handle and not self._not_region:
            try:
                charge = metered(held.handle)
            except Exception as exc:
                logger.warning("%s: metered usage unavailable: %s", held.job_id, exc)
                charge = None
            if charge is not None:
                usage["metered"] = charge.model_dump(mode="json")
        # The center scheduler's own record (Slurm's sacct): informational, not billed.
        accounting = getattr(self.backend, "accounting", None)
        if callable(accounting) and held.handle:
            try:
                record = accounting(held.handle)
            except Exception as exc:
                logger.warning("%s: scheduler accounting unavailable: %s", held.job_id, exc)
                record = None
            if record is not None:
                usage["scheduler"] = record.model_dump(mode="json")
        paths = getattr(self.backend, "paths", None)  # a region: where the job ended below
        if callable(paths) and held.handle and not self._not_region:
            path = paths([held.handle]).get(held.handle)
            if path:
                usage["path"] = [hop.model_dump(mode="json") for hop in path]
        held.outbox.append({"kind": "usage", "usage": usage})
        if held.preempted and state != "SUCCEEDED" and not message.startswith(PREEMPTED):
            # The control plane requeues it here, to resume from its checkpoint (one that
            # finished meanwhile just succeeded).
            message = f"{PREEMPTED}; backend: {message}" if message else PREEMPTED
        held.queue_status(state, exit_code=exit_code, message=message, at=_now())
        held.phase = "finished"
        serving.forget(held.key)  # a replica's relay closes with it
        level = logging.INFO if state == "SUCCEEDED" else logging.WARNING
        logger.log(level, "%s %s%s", held.job_id, state, f": {message}" if message else "")

    def _job_error(self, held: HeldJob, exc: Exception) -> None:
        held.errors += 1
        if isinstance(exc, BackendError) or held.errors >= _MAX_JOB_ERRORS:
            logger.warning("%s failed here: %s", held.job_id, exc)
            self._finish(held, "FAILED", message=f"agent could not run it: {exc}")
        else:
            logger.exception(
                "%s: error (%d of %d tolerated)", held.job_id, held.errors, _MAX_JOB_ERRORS
            )

    def _stop_cancelled(self, held: HeldJob) -> None:
        """The control plane wants this job stopped: stop it and report how it ended.

        If the job was cancelled by its user the report completes the cancel; if the
        lease was lost instead, the report is refused (409) and the job is forgotten.
        """
        if held.phase == "finished":
            return
        held.preempted = False  # a cancel wins over a preemption: nothing resumes, no checkpoint
        if held.phase != "submitted" or not held.handle:
            logger.info("control plane cancelled %s before it started", held.job_id)
        elif not held.cancel_sent:
            logger.info("control plane cancelled %s: stopping it", held.job_id)
        self._stop(held, "cancelled before it started")

    # ------------------------------------------------------------- preemption

    def checkpoints(self) -> Checkpoints | None:
        """Where jobs keep checkpoints, or None where they could not reach them
        (agent/checkpoints.py): decided once the backend is known."""
        if self._checkpoints is None and self.backend is not None:
            root = self.config.checkpoint_dir
            assert root is not None
            if supports_preempt(self.backend, self.config.checkpoint_dir_set):
                self._checkpoints = Checkpoints(root, job_owner(self.backend))
                logger.info("jobs keep checkpoints under %s: they may be preempted", root)
            else:
                self._checkpoints = False
                logger.info(
                    "no checkpoint_dir its jobs share for the %s backend: jobs here are never"
                    " preempted",
                    self.backend.kind,
                )
        return self._checkpoints if isinstance(self._checkpoints, Checkpoints) else None

    def _queue_preempts(self, job_ids: list[str]) -> None:
        """Hand the jobs a heartbeat reply lists in `preempt` to the main loop (heartbeat
        thread): held ones only — a stale or unknown id is ignored; one listed again
        before it stopped is stopped once (`_stop_preempted`).

        Checked, not believed: only where this agent registered `preempt` (its jobs keep
        checkpoints) and only jobs whose spec agreed to it (``preemptible``); any other
        stop would lose a job's work, so it is ignored.
        """
        if self.checkpoints() is None:
            logger.warning("preempt ignored: jobs here keep no checkpoints (not registered)")
            return
        stoppable = {
            h.job_id
            for h in self._held()
            if not h.preempted and h.phase != "finished" and _preemptible(h)
        }
        for job_id in job_ids:
            if job_id in stoppable:
                self._preempts.append(job_id)  # deque: safe across the two threads
            else:
                logger.debug("preempt %s ignored: not a preemptible job here", job_id[:80])
        self._wake.set()

    def _stop_preempted(self, held: HeldJob) -> None:
        """Stop a job for preemption: like a cancel (SIGTERM, the backend's grace, SIGKILL),
        but its checkpoint directory stays for its next attempt here, and its end report
        says why it stopped."""
        if held.phase == "finished" or held.preempted or held.cancel_sent:
            return  # ended, stopping already, or cancelled (a cancel wins)
        held.preempted = True
        logger.info("preempting %s for a shorter job", held.job_id)
        self._stop(held, f"{PREEMPTED} before it started")

    def _stop(self, held: HeldJob, unstarted: str) -> None:
        """Stop `held` for a cancel or a preemption: a submitted job through its backend
        (SIGTERM, the backend's grace, SIGKILL; the next poll sees it end), one not started
        yet (waiting, staging) at once, reported CANCELLED with the message `unstarted`."""
        if held.phase == "submitted" and held.handle:
            held.cancel_sent = True
            self._cancel_backend(held.handle)
            return
        self._stop_staging(held.job_id)
        self._finish(held, "CANCELLED", message=unstarted)

    def _stop_staging(self, job_id: str) -> None:
        """Tell the staging of `job_id`'s inputs, if any runs, to stop."""
        entry = self._staging.pop(job_id, None)
        if entry is not None:
            entry[1].set()

    def _forget_checkpoint(self, held: HeldJob) -> None:
        """A job reported its end here: its checkpoint goes, unless it was preempted (it
        resumes here from it) without having succeeded all the same."""
        store = self.checkpoints()
        if store is None or (held.preempted and "SUCCEEDED" not in held.queued_states):
            return
        store.remove(held.job_id, background=True)  # not on this loop: it may be large

    def _sweep_checkpoints(self) -> None:
        """Now and then: remove the checkpoints of jobs not held here for long (cancelled
        while waiting, requeued elsewhere) — `checkpoints.KEEP_S`."""
        now = time.monotonic()
        store = self.checkpoints()
        if store is None or now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_EVERY_S
        gone = store.sweep({h.job_id for h in self.jobs.values()})
        if gone:
            logger.info("removed %d old checkpoint directories", len(gone))

    def _drop(self, job_id: str) -> None:
        """Stop a job here and forget it, reporting nothing more."""
        held = self.jobs.pop(job_id, None)
        if held is None:
            return
        serving.forget(held.key)
        self._stop_staging(job_id)
        if held.handle and held.phase in ("submitted", "finished"):
            self._cancel_backend(held.handle)

    def _cancel_backend(self, handle: str) -> None:
        assert self.backend is not None
        try:
            self.backend.cancel(handle)
        except Exception:
            logger.exception("cancelling %s failed", handle)

    def _save(self) -> None:
        # A copy: the heartbeat thread writes meta (acked_unix) meanwhile.
        text = dump_state(self.jobs, dict(self.meta))
        if text != self._saved:
            write_state(self.state_dir, text)
            self._saved = text


class AgentFatal(ComputeNetError):
    """The agent cannot go on (refused credentials, unknown center): it exits."""

    status_code = 2


def _preemptible(held: HeldJob) -> bool:
    """Whether the job's spec agreed to be stopped for preemption (``preemptible``)."""
    return bool(held.leased.get("spec", {}).get("preemptible"))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat() if ts is not None else None
