"""Group commit for job submissions: one writer thread stores every waiting job in one transaction.

A submission is acknowledged only after the transaction that stored it has
committed (the caller waits on a future the writer settles after commit).
While the writer commits one batch, the next submissions queue up and go
into the next transaction together, so under load the cost of a write
transaction (taking the write lock, BEGIN, COMMIT, the thread hand-off) is
shared by every job of the batch instead of being paid per job. With one
client, a batch is one job and nothing waits for company: there is no timer.

Idempotency keys are settled inside the writer's transaction
(`computenet.store.jobs.insert_jobs`): the same key twice, in one batch or
in two, gives the same job.

The per-tenant cap on pending jobs is checked in the same transaction
(`computenet.server.limits.Admission.admit_pending`): a refused submission
is answered with its `RateLimitedError` and stores nothing, its neighbours
in the batch are stored as usual.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import defaultdict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import OperationalError

from computenet.errors import RateLimitedError
from computenet.store import Database
from computenet.store import jobs as job_store
from computenet.store.schema import JobRow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from computenet.server.limits import Admission

log = logging.getLogger(__name__)

# Most jobs stored in one transaction (a batch never waits to fill up).
MAX_BATCH = 256

# What a submission resolves to: None when stored as new, else the job that already had its key.
Outcome = JobRow | None


@dataclass
class _Item:
    values: dict[str, Any]
    message: str
    done: asyncio.Future[Outcome] | Future[Outcome]
    loop: asyncio.AbstractEventLoop | None


class Submitter:
    """Stores jobs through one writer thread, batching whatever is waiting (see module notes).

    From an event loop, the submissions of one loop iteration are handed to
    the writer together: one thread wake-up per batch, not per job (waking a
    thread is a system call, and on a virtual machine an interrupt).
    """

    def __init__(
        self, db: Database, *, max_batch: int = MAX_BATCH, admission: Admission | None = None
    ) -> None:
        self._db = db
        self._max_batch = max_batch
        self._admission = admission
        # The running writer and its queue (a new pair after `close`, started on demand).
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Per event loop, the submissions of its current iteration (touched only by that loop).
        self._gathering: dict[asyncio.AbstractEventLoop, list[_Item]] = {}

    def store(self, values: dict[str, Any], message: str) -> Outcome:
        """Store one job and wait for the commit (for threads)."""
        fut: Future[Outcome] = Future()
        self._put([_Item(values, message, fut, None)])
        return fut.result()

    async def store_async(self, values: dict[str, Any], message: str) -> Outcome:
        """Store one job and wait for the commit without blocking the event loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        item = _Item(values, message, fut, loop)
        gathering = self._gathering.get(loop)
        if gathering is None:
            self._gathering[loop] = [item]
            loop.call_soon(self._hand_over, loop)
        else:
            gathering.append(item)
        return await fut

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        self._put(self._gathering.pop(loop, []))

    def close(self) -> None:
        """Store every submission already handed over, then stop the writer thread.

        A submission after this starts a new writer (as a thread pool would).
        """
        with self._lock:
            thread, old = self._thread, self._queue
            self._thread, self._queue = None, queue.SimpleQueue()
        if thread is not None:
            old.put(None)  # after everything queued before it: the writer drains, then stops
            thread.join(timeout=30)

    def _put(self, items: list[_Item]) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="computenet-submit", daemon=True
                )
                self._thread.start()
            self._queue.put(items)

    def _run(self, q: queue.SimpleQueue[list[_Item] | None]) -> None:
        stop = False
        while not stop:
            first = q.get()
            if first is None:
                break
            batch = list(first)
            while len(batch) < self._max_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.extend(nxt)
            for start in range(0, len(batch), self._max_batch):
                self._write(batch[start : start + self._max_batch])

    def _write(self, batch: list[_Item]) -> None:
        results: list[tuple[_Item, Outcome, BaseException | None]]
        try:
            with self._db.write() as s:
                results = self._store(s, batch)
        except Exception as exc:
            self._forget(batch)
            if len(batch) == 1 or isinstance(exc, OperationalError):
                # A busy or unreachable database fails everyone alike (503, retry).
                results = [(item, None, exc) for item in batch]
            else:
                # One bad job must not fail its neighbours: store each on its own.
                log.warning("%d submissions failed together (%s); one by one", len(batch), exc)
                results = []
                for item in batch:
                    try:
                        with self._db.write() as s:
                            results.extend(self._store(s, [item]))
                    except Exception as one:
                        self._forget([item])
                        results.append((item, None, one))
        _settle(results)

    def _store(
        self, s: Session, batch: list[_Item]
    ) -> list[tuple[_Item, Outcome, BaseException | None]]:
        """Admit (pending cap) and insert `batch` in the transaction `s`."""
        if self._admission is None:
            outcomes = job_store.insert_jobs(s, [(i.values, i.message) for i in batch])
            return [(item, out, None) for item, out in zip(batch, outcomes, strict=True)]
        refusals = self._admission.admit_pending(s, [str(i.values["tenant_id"]) for i in batch])
        admitted = [item for item, no in zip(batch, refusals, strict=True) if no is None]
        outcomes = job_store.insert_jobs(s, [(i.values, i.message) for i in admitted])
        results: list[tuple[_Item, Outcome, BaseException | None]] = [
            (item, out, None) for item, out in zip(admitted, outcomes, strict=True)
        ]
        for item, no in zip(batch, refusals, strict=True):
            if no is not None:
                results.append((item, *_seen_or(s, item, no)))
        return results

    def _forget(self, batch: list[_Item]) -> None:
        if self._admission is not None:
            self._admission.forget([str(i.values["tenant_id"]) for i in batch])


def _seen_or(
    s: Session, item: _Item, refusal: RateLimitedError
) -> tuple[Outcome, BaseException | None]:
    """A refused submission whose idempotency key was seen still gets its first job."""
    key = item.values.get("idempotency_key")
    if key:
        seen = job_store.find_by_key(s, str(item.values["tenant_id"]), str(key))
        if seen is not None:
            return seen, None
    return None, refusal


def _settle(results: list[tuple[_Item, Outcome, BaseException | None]]) -> None:
    """Wake every waiter: one call into each event loop, whatever the batch size."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Outcome, BaseException | None]]]
    by_loop = defaultdict(list)
    for item, out, exc in results:
        if item.loop is None:
            cf = item.done
            assert isinstance(cf, Future)
            if exc is None:
                cf.set_result(out)
            else:
                cf.set_exception(exc)
        else:
            by_loop[item.loop].append((item.done, out, exc))
    for loop, waiters in by_loop.items():
        try:
            loop.call_soon_threadsafe(_wake, waiters)
        except RuntimeError:
            log.debug("event loop closed before %d submissions were answered", len(waiters))


def _wake(waiters: list[tuple[asyncio.Future[Outcome], Outcome, BaseException | None]]) -> None:
    for fut, out, exc in waiters:
        if fut.done():  # the request was cancelled (client gone); the job is stored anyway
            continue
        if exc is None:
            fut.set_result(out)
        else:
            fut.set_exception(exc)
