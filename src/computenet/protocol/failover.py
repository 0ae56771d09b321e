"""Reaching a control plane of several replicas: server URL lists and an httpx failover transport.

Shared by the agent (`agent.client`) and the SDK (`sdk.client`), which talk to
the server only over HTTP and may not import each other. Every replica serves
the whole API, so a client may send any request to any of them:
`FailoverTransport` sends each request to the replica that answered last and,
when that one fails, to the next one in the list, sticking to the first that
works. What counts as "the replica failed":

* it cannot be connected to (refused, connect timeout): the request never
  arrived, so it is sent to the next replica, whatever it is;
* it answers ``503`` (database unavailable, shutting down): the server did
  nothing, so the request is sent to the next replica as well;
* the connection breaks or times out *after* the request was sent: the next
  request goes to the next replica, but this one is re-sent only when doing
  it twice is harmless — an idempotent method, or a request marked
  `RETRY_SAFE` (e.g. a submit with an idempotency key). Otherwise the error
  is raised and the caller decides (an agent retries its loop; a lease whose
  reply was lost is the server's business, see docs/center-protocol.md).

A ``4xx`` is an answer, never a reason to try elsewhere. One request tries
each replica at most once, and all tries together stay within the request's
timeout: each replica still to try gets an equal share of the time left (so
with three replicas a hung one costs a third of it, not all), and a replica
that failed is tried after the others for `COOLDOWN_S` (so a hung one does
not cost every call its share, and the healthy ones get more time). Connect
timeouts should be short (a couple of seconds) so that a dead replica costs
little: see `client_timeout`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import httpx

from computenet.errors import ValidationError

log = logging.getLogger(__name__)

# Request extension: set it to True on a POST that may be sent twice without harm.
RETRY_SAFE = "computenet.retry_safe"
DEFAULT_CONNECT_TIMEOUT_S = 2.0
# A replica that failed is tried after the others for this long (seconds).
COOLDOWN_S = 10.0
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_UNAVAILABLE = 503


def parse_urls(value: str | Sequence[str], *, field: str = "url") -> tuple[str, ...]:
    """Server URLs from ``"URL1,URL2"`` or a list of them (each may hold commas too).

    Each must be http(s); trailing slashes are dropped, duplicates removed,
    order kept (the first is tried first). Raises `ValidationError` naming `field`.
    """
    items = [value] if isinstance(value, str) else list(value)
    urls: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(f"{item!r} is not a URL", field=field)
        for part in item.split(","):
            url = part.strip().rstrip("/")
            if not url:
                continue
            if not url.startswith(("http://", "https://")) or not _host(url):
                raise ValidationError(
                    f"'{url}' is not an http(s) URL",
                    field=field,
                    hint="e.g. http://127.0.0.1:8080, or several: http://a:8080,http://b:8080",
                )
            if url not in urls:
                urls.append(url)
    if not urls:
        raise ValidationError("no server URL given", field=field, hint="e.g. http://127.0.0.1:8080")
    return tuple(urls)


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host
    except httpx.InvalidURL:
        return ""


def client_timeout(
    timeout_s: float, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
) -> httpx.Timeout:
    """An httpx timeout: `timeout_s` per call, a short connect so a dead replica costs little."""
    return httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))


class FailoverTransport(httpx.BaseTransport):
    """Sends each request to the current replica; on its failure, to the next (module doc).

    `urls` are the replicas' base URLs; the httpx client's `base_url` must be
    the first of them. `inner` sends the requests (default: a plain
    `httpx.HTTPTransport`; tests pass their own). Thread-safe.
    """

    def __init__(self, urls: Sequence[str], inner: httpx.BaseTransport | None = None) -> None:
        if not urls:
            raise ValidationError("no server URL given", field="url")
        self.urls = [httpx.URL(u.rstrip("/") + "/") for u in urls]
        self._inner = inner if inner is not None else httpx.HTTPTransport()
        self._current = 0
        self._failed_at: dict[int, float] = {}  # replica → when it last failed (monotonic)
        self._lock = threading.Lock()

    @property
    def current_url(self) -> str:
        """The replica requests go to now."""
        return str(self.urls[self._current]).rstrip("/")

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request`, failing over across replicas as the module doc says."""
        request.read()  # the body must be replayable
        began = time.monotonic()
        budget = _budget(request)
        replayable = request.method in _IDEMPOTENT or bool(request.extensions.get(RETRY_SAFE))
        last_exc: Exception | None = None
        unavailable: httpx.Response | None = None
        order, fresh = self._order(began)
        n = len(order)
        for k, i in enumerate(order):
            left = None if budget is None else budget - (time.monotonic() - began)
            if k and left is not None and left <= 0:
                break
            # Each replica still to try that has not failed lately gets an equal share of
            # what is left (those that did come last, with what remains): one that takes
            # the connection but never answers cannot use up the whole call.
            share = None if left is None else left / (len(fresh & set(order[k:])) or n - k)
            try:
                resp = self._inner.handle_request(self._retarget(request, i, share))
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                last_exc = exc
                self._moved_from(i, exc)
                continue
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                self._moved_from(i, exc)
                if not replayable:
                    raise
                last_exc = exc
                continue
            if resp.status_code == _UNAVAILABLE and k < n - 1:
                body = resp.read()
                resp.close()
                unavailable = httpx.Response(_UNAVAILABLE, headers=resp.headers, content=body)
                self._moved_from(i, f"HTTP {_UNAVAILABLE}")
                continue
            self._current = i
            self._failed_at.pop(i, None)
            return resp
        if unavailable is not None:
            return unavailable
        assert last_exc is not None
        raise last_exc

    def _order(self, now: float) -> tuple[list[int], set[int]]:
        """Replicas in the order to try them (the current one first, those that failed
        within `COOLDOWN_S` last), and the set of those that did not."""
        n = len(self.urls)
        ring = [(self._current + k) % n for k in range(n)]
        fresh = {i for i in ring if now - self._failed_at.get(i, float("-inf")) >= COOLDOWN_S}
        return [i for i in ring if i in fresh] + [i for i in ring if i not in fresh], fresh

    def _moved_from(self, i: int, why: object) -> None:
        with self._lock:
            self._failed_at[i] = time.monotonic()
            if self._current != i:
                return
            order, _fresh = self._order(time.monotonic())
            self._current = next((j for j in order if j != i), i)
            if len(self.urls) > 1:
                # INFO: a replica down is routine (the agent logs it; the CLI stays quiet).
                log.info(
                    "control plane %s failed (%s); now trying %s",
                    str(self.urls[i]).rstrip("/"),
                    why if isinstance(why, str) else type(why).__name__,
                    self.current_url,
                )

    def _retarget(self, request: httpx.Request, i: int, left: float | None) -> httpx.Request:
        """`request` sent to replica `i` instead of the first, within `left` seconds."""
        base, target = self.urls[0], self.urls[i]
        raw = request.url.raw_path
        if raw.startswith(base.raw_path):
            raw = target.raw_path + raw[len(base.raw_path) :]
        url = request.url.copy_with(
            scheme=target.scheme, host=target.host, port=target.port, raw_path=raw
        )
        headers = request.headers.copy()
        headers["Host"] = url.netloc.decode("ascii")
        extensions = dict(request.extensions)
        if left is not None and "timeout" in extensions:
            extensions["timeout"] = {
                k: (None if v is None else max(0.001, min(float(v), left)))
                for k, v in dict(extensions["timeout"]).items()
            }
        return httpx.Request(
            request.method, url, headers=headers, content=request.content, extensions=extensions
        )

    def close(self) -> None:
        """Close the connections."""
        self._inner.close()


def _budget(request: httpx.Request) -> float | None:
    """The longest any one wait of this request may take: all tries together stay within it."""
    t = request.extensions.get("timeout") or {}
    values = [float(v) for v in dict(t).values() if v is not None]
    return max(values) if values else None
