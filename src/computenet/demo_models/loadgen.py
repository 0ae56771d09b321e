"""A load generator for OpenAI-compatible completions: open-loop trace replay and closed loops.

Each worker thread keeps one keep-alive connection per target (the standard
library's `http.client`: light on a shared machine). A streamed answer is read
event by event: time to first byte is until the first token event, latency until
``data: [DONE]``; an answer without it (a replica lost mid-stream) is an error.
"""

from __future__ import annotations

import http.client
import json
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

from computenet.demo_models.trace import Request

REPLICA_HEADER = "X-CNet-Replica"
TIMEOUT_S = 60.0


@dataclass
class Outcome:
    """One request's result."""

    target: str  # which target (site) sent it
    start_s: float  # when it was sent, seconds from the replay's start
    ok: bool
    status: int  # HTTP status; 0: no answer
    ttfb_s: float | None
    latency_s: float
    tokens: int
    replica: str | None  # the gateway's X-CNet-Replica
    error: str | None = None


@dataclass(frozen=True)
class Shape:
    """How a trace request becomes a completion: tokens divided and capped (a demo's scale)."""

    generated_div: int = 4
    generated_max: int = 128
    prompt_div: int = 4
    prompt_max: int = 512

    def body(self, req: Request, *, stream: bool = True) -> bytes:
        """The ``/v1/completions`` body for `req`."""
        n = max(1, min(self.generated_max, req.generated_tokens // self.generated_div))
        words = max(1, min(self.prompt_max, req.context_tokens // self.prompt_div))
        prompt = " ".join(("the network", "a replica", "power")[i % 3] for i in range(words))
        return json.dumps(
            {"model": "tinygen", "prompt": prompt, "max_tokens": n, "stream": stream}
        ).encode()


class Caller:
    """Per-thread keep-alive connections; `post` sends one completion and reads it all."""

    def __init__(self) -> None:
        self._local = threading.local()

    def _conn(self, base: str) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        if base not in conns:
            u = urlsplit(base)
            conns[base] = http.client.HTTPConnection(u.hostname or "", u.port, timeout=TIMEOUT_S)
        return conns[base]

    def _drop(self, base: str) -> None:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault("c", {})
        conn = conns.pop(base, None)
        if conn is not None:
            conn.close()

    def post(
        self,
        base: str,
        path: str,
        body: bytes,
        *,
        stream: bool,
        target: str = "",
        start_s: float = 0,
    ) -> Outcome:
        """POST `body` to `base` + `path`; the outcome, never an exception."""
        t0 = time.perf_counter()
        ttfb = None
        tokens = 0
        replica = None
        status = 0
        try:
            resp = self._send(base, path, body)
            status = resp.status
            replica = resp.getheader(REPLICA_HEADER)
            if status != 200:
                resp.read()
                return Outcome(target, start_s, False, status, None, _since(t0), 0, replica,
                               f"HTTP {status}")  # fmt: skip
            if not stream:
                got = json.loads(resp.read())
                ttfb = _since(t0)
                tokens = int(got["usage"]["completion_tokens"])
                return Outcome(target, start_s, True, status, ttfb, ttfb, tokens, replica)
            done = False
            while True:
                line = resp.readline()
                if not line:
                    break
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                choice = (event.get("choices") or [{}])[0]
                if choice.get("text") or (choice.get("delta") or {}).get("content"):
                    tokens += 1
                    if ttfb is None:
                        ttfb = _since(t0)
            if not done:
                self._drop(base)
                return Outcome(target, start_s, False, status, ttfb, _since(t0), tokens, replica,
                               "stream ended before [DONE]")  # fmt: skip
            return Outcome(target, start_s, True, status, ttfb, _since(t0), tokens, replica)
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            self._drop(base)
            return Outcome(target, start_s, False, status, ttfb, _since(t0), tokens, replica,
                           f"{type(exc).__name__}: {exc}")  # fmt: skip

    def _send(self, base: str, path: str, body: bytes) -> http.client.HTTPResponse:
        """Send and read the status line. A kept-alive connection the server closed while
        idle fails before any answer: that one is retried once on a fresh connection (as
        urllib3 does), since the request never reached the server."""
        fresh = base not in self._local.__dict__.setdefault("c", {})
        conn = self._conn(base)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            return conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            if fresh:
                raise
            self._drop(base)
            conn = self._conn(base)
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            return conn.getresponse()


def _since(t0: float) -> float:
    return time.perf_counter() - t0


def replay(
    requests: Sequence[Request],
    targets: Sequence[tuple[str, str]],
    *,
    path: str,
    shape: Shape,
    pick: Callable[[int], int] | None = None,
    workers: int = 128,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Send each request at its `at_s` (open loop) to a target (`(name, base_url)`).

    `pick(i)` chooses the target of the i-th request (default: round robin). Returns
    when every request has its outcome; `on_outcome` sees each as it comes.
    """
    pick = pick or (lambda i: i % len(targets))
    caller = Caller()
    out: list[Outcome] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def one(i: int, req: Request) -> None:
        name, base = targets[pick(i)]
        o = caller.post(
            base, path, shape.body(req), stream=True, target=name, start_s=time.monotonic() - t0
        )
        with lock:
            out.append(o)
        if on_outcome is not None:
            on_outcome(o)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loadgen") as pool:
        for i, req in enumerate(requests):
            delay = t0 + req.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i, req)
    return out


def pct(xs: Sequence[float], p: float) -> float | None:
    """The p-th percentile (nearest rank), or None for no values."""
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))]


def summary_ms(xs: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and mean of seconds `xs`, in ms (None when empty)."""

    def ms(v: float | None) -> float | None:
        return None if v is None else round(1000.0 * v, 1)

    return {
        "p50": ms(pct(xs, 50)),
        "p99": ms(pct(xs, 99)),
        "mean": ms(statistics.fmean(xs)) if xs else None,
    }
