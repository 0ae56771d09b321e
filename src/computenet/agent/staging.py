"""Staging: bring a leased job's input datasets to this center before it runs.

For each input the agent uses the local replica when there is one; otherwise
it tries the sources in the order the control plane gave (best first): it
streams the file to a scratch file, throttled to the link's scaled bandwidth,
checks size and sha256, and on a mismatch or error moves on to the next
source. The verified file is moved into the data root and reported as a new
replica. Staging fails (and the job with it) only when every source failed.

The throttle makes moving data cost visible time in a scaled network:
``bytes/s = bandwidth_gbps × 1e9 / 8 × time_scale / data_scale``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from computenet.agent.data import DataRoot, Replica, dataset_sha256
from computenet.errors import ComputeNetError
from computenet.protocol import StagingInput, StagingSource

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


class StagingError(ComputeNetError):
    """An input could not be brought to this center from any source."""

    status_code = 502


class StagingCancelled(ComputeNetError):
    """Staging was stopped because the job was cancelled or the agent is stopping."""


def link_rate_bytes_s(bandwidth_gbps: float, time_scale: float, data_scale: float) -> float | None:
    """Real bytes per second a fetch may use on a link; None means unthrottled."""
    if bandwidth_gbps <= 0 or time_scale <= 0 or data_scale <= 0:
        return None
    return bandwidth_gbps * 1e9 / 8 * time_scale / data_scale


def source_url(source: StagingSource, dataset_id: str) -> str:
    """The fetch URL of a source: its `url`, with ``/data/{id}`` added when it is a base URL."""
    url = source.url.rstrip("/")
    if "/data/" in urlsplit(url).path:
        return url
    return f"{url}/data/{dataset_id}"


def _with_ticket(url: str, ticket: str) -> str:
    """`url` with ``ticket=`` added to its query (httpx's `params` would replace the query)."""
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode({'ticket': ticket})}"


def fetch(
    client: httpx.Client,
    source: StagingSource,
    item: StagingInput,
    dest: Path,
    *,
    rate_bytes_s: float | None,
    cancel: threading.Event | None = None,
) -> int:
    """Download `item` from `source` into `dest`, verified; the number of bytes.

    Raises StagingError with the reason (HTTP status, size or checksum mismatch,
    connection error) and leaves no partial file behind.
    """
    h = hashlib.sha256()
    got = 0
    t0 = time.monotonic()
    try:
        with (
            client.stream(
                "GET", _with_ticket(source_url(source, item.dataset), source.ticket)
            ) as resp,
            open(dest, "wb") as f,
        ):
            if resp.status_code != 200:
                resp.read()
                raise StagingError(f"{source.center}: HTTP {resp.status_code} {_reason(resp)}")
            for chunk in resp.iter_bytes(_CHUNK):
                if cancel is not None and cancel.is_set():
                    raise StagingCancelled("staging cancelled")
                f.write(chunk)
                h.update(chunk)
                got += len(chunk)
                if got > item.size_bytes:
                    raise StagingError(
                        f"{source.center}: sent more than the dataset's {item.size_bytes} bytes"
                    )
                if rate_bytes_s:
                    _throttle(t0, got, rate_bytes_s, cancel)
    except httpx.HTTPError as exc:
        dest.unlink(missing_ok=True)
        raise StagingError(f"{source.center}: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    problem = None
    if got != item.size_bytes:
        problem = f"got {got} bytes, expected {item.size_bytes}"
    elif h.hexdigest() != item.sha256:
        problem = f"sha256 {h.hexdigest()[:12]}… does not match {item.sha256[:12]}…"
    if problem:
        dest.unlink(missing_ok=True)
        raise StagingError(f"{source.center}: {problem}")
    return got


def _throttle(t0: float, got: int, rate: float, cancel: threading.Event | None) -> None:
    ahead = got / rate - (time.monotonic() - t0)
    while ahead > 0:
        if cancel is not None and cancel.is_set():
            raise StagingCancelled("staging cancelled")
        time.sleep(min(ahead, 0.2))
        ahead = got / rate - (time.monotonic() - t0)


def _reason(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("error", ""))
    except ValueError:
        return resp.text[:200]


@dataclass
class StagingResult:
    """What staging did: where each input is, and what moved from where."""

    paths: dict[str, str] = field(default_factory=dict)
    bytes_staged: int = 0
    staging_real_s: float = 0.0
    staged_from: str | None = None
    new_replicas: list[Replica] = field(default_factory=list)


def needs_fetch(item: StagingInput, root: DataRoot) -> bool:
    """True when `item` is not already present (right size) at this center."""
    return local_replica(item, root) is None


def local_replica(item: StagingInput, root: DataRoot) -> Path | None:
    """The local file for `item` when present with the right size."""
    candidates: list[Path | None] = []
    if item.local_path:
        candidates.append(root.inside(item.local_path))
    candidates.append(root.resolve(item.dataset))
    for p in candidates:
        if p is not None and p.is_file() and p.stat().st_size == item.size_bytes:
            return p
    return None


def stage_inputs(
    inputs: list[StagingInput],
    root: DataRoot,
    client: httpx.Client,
    *,
    time_scale: float = 1.0,
    data_scale: float = 1.0,
    cancel: threading.Event | None = None,
) -> StagingResult:
    """Make every input present in `root` (see module doc); StagingError if one cannot be."""
    result = StagingResult()
    t0 = time.monotonic()
    moved: dict[str, int] = {}
    for item in inputs:
        present = local_replica(item, root)
        if present is not None:
            if item.local_path and root.resolve(item.dataset) is None:
                root.record(item.dataset, item.local_path)
            result.paths[item.dataset] = str(present)
            continue
        rel = root.default_path(item.dataset)
        target = root.inside(rel)
        if target is None:
            raise StagingError(f"dataset id '{item.dataset}' cannot be a file name here")
        # A copy from an earlier staging whose index entry was lost: reuse it if it verifies.
        if target.is_file() and dataset_sha256(target) == item.sha256:
            root.record(item.dataset, rel)
            result.paths[item.dataset] = str(target)
            continue
        if not item.sources:
            raise StagingError(
                f"input '{item.dataset}' is not at this center and no source was given",
                field="inputs",
            )
        failures: list[str] = []
        for source in item.sources:
            tmp = root.staging_dir() / f"{item.dataset}.{os.getpid()}.{threading.get_ident()}.part"
            rate = link_rate_bytes_s(source.bandwidth_gbps, time_scale, data_scale)
            try:
                got = fetch(client, source, item, tmp, rate_bytes_s=rate, cancel=cancel)
            except StagingError as exc:
                logger.warning("staging %s: %s", item.dataset, exc.message)
                failures.append(exc.message)
                continue
            os.replace(tmp, target)
            root.record(item.dataset, rel)
            result.paths[item.dataset] = str(target)
            result.bytes_staged += got
            moved[source.center] = moved.get(source.center, 0) + got
            result.new_replicas.append(Replica(item.dataset, rel, item.sha256, got))
            logger.info("staged %s (%d bytes) from %s", item.dataset, got, source.center)
            break
        else:
            raise StagingError(
                f"could not stage '{item.dataset}' from any source: " + "; ".join(failures),
                field="inputs",
            )
    result.staging_real_s = time.monotonic() - t0
    if moved:
        result.staged_from = max(moved, key=lambda c: moved[c])
    return result
