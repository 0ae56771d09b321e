"""Staging: bring a leased job's input datasets to this center before it runs.

For each input the agent uses the local replica when there is one whose
sha256 matches the dataset's (checked once per file version, see
`DataRoot.verified`); otherwise it tries the sources in the order the control
plane gave (best first): it streams the file to a scratch file, throttled to
the link's scaled bandwidth, checks size and sha256, and on a mismatch or
error moves on to the next source. The verified file is moved to the place
the control plane chose (`StagingInput.dest_path`, in the tenant's area) and
reported as a new replica. Staging fails (and the job with it) only when
every source failed.

A fetch sends its ticket in the ``X-CNet-Ticket`` header and names this
center in ``X-CNet-Center`` (`computenet.protocol.tickets`); redirects are
never followed (a center could point others at anything). What another
center answered goes to this agent's log, not into the job's error: the job
sees the source, the HTTP status or the kind of failure.

The throttle makes moving data cost visible time in a scaled network:
``bytes/s = bandwidth_gbps × 1e9 / 8 × time_scale / data_scale``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from computenet.agent.data import DataRoot, Replica, dataset_sha256
from computenet.errors import ComputeNetError
from computenet.protocol import StagingInput, StagingSource
from computenet.protocol.tickets import CENTER_HEADER, TICKET_HEADER

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16
_BUSY_RETRIES = 5  # a source that answers 503 (not registered, key rotating) gets this many tries


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


def fetch(
    client: httpx.Client,
    source: StagingSource,
    item: StagingInput,
    dest: Path,
    *,
    rate_bytes_s: float | None,
    cancel: threading.Event | None = None,
    center: str | None = None,
) -> int:
    """Download `item` from `source` into `dest`, verified; the number of bytes.

    `center` is this (the fetching) center, sent in ``X-CNet-Center`` (default:
    the client's own header). A source busy with 503 is retried a few times.
    Raises StagingError with the reason (HTTP status, size or checksum mismatch,
    kind of connection error) and leaves no partial file behind.
    """
    for attempt in range(_BUSY_RETRIES):
        try:
            return _fetch_once(client, source, item, dest, rate_bytes_s, cancel, center)
        except _Busy as busy:
            if attempt == _BUSY_RETRIES - 1:
                raise StagingError(f"{source.center}: HTTP 503") from busy
            _sleep(busy.retry_after, cancel)
    raise AssertionError("unreachable")  # pragma: no cover


class _Busy(Exception):
    """The source answered 503: not ready yet (unregistered, or its data key is rotating)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _sleep(seconds: float, cancel: threading.Event | None) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise StagingCancelled("staging cancelled")


def _fetch_once(
    client: httpx.Client,
    source: StagingSource,
    item: StagingInput,
    dest: Path,
    rate_bytes_s: float | None,
    cancel: threading.Event | None,
    center: str | None,
) -> int:
    h = hashlib.sha256()
    got = 0
    t0 = time.monotonic()
    headers = {TICKET_HEADER: source.ticket}
    if center:
        headers[CENTER_HEADER] = center
    try:
        with (
            client.stream(
                "GET", source_url(source, item.dataset), headers=headers, follow_redirects=False
            ) as resp,
            open(dest, "wb") as f,
        ):
            if resp.status_code != 200:
                resp.read()
                # The other center's words go to our log only: they are not the user's business
                # and a hostile center could put anything there.
                logger.warning(
                    "staging %s from %s: HTTP %d %s",
                    item.dataset,
                    source.center,
                    resp.status_code,
                    _reason(resp),
                )
                if resp.status_code == 503:
                    raise _Busy(_retry_after(resp))
                raise StagingError(f"{source.center}: HTTP {resp.status_code}")
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
        logger.warning("staging %s from %s: %s", item.dataset, source.center, exc)
        raise StagingError(f"{source.center}: {type(exc).__name__}") from exc
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
        return repr(str(body.get("error", ""))[:200])
    except (ValueError, AttributeError):
        return repr(resp.text[:200])


def _retry_after(resp: httpx.Response) -> float:
    try:
        return min(max(float(resp.headers.get("Retry-After", "1")), 0.1), 5.0)
    except ValueError:
        return 1.0


@dataclass
class StagingResult:
    """What staging did: where each input is, and what moved from where."""

    paths: dict[str, str] = field(default_factory=dict)
    bytes_staged: int = 0
    staging_real_s: float = 0.0
    staged_from: str | None = None  # the source that sent the most (for older servers)
    bytes_from: dict[str, int] = field(default_factory=dict)  # source center → bytes it sent
    new_replicas: list[Replica] = field(default_factory=list)


def needs_fetch(item: StagingInput, root: DataRoot) -> bool:
    """True unless `item` is here and already known to have the right checksum.

    Never reads a file (it runs on the agent's loop thread): a local copy not
    hashed yet counts as needing staging, and staging hashes it off the loop.
    """
    return local_replica(item, root, cached_only=True) is None


def local_replica(
    item: StagingInput, root: DataRoot, *, warn: bool = False, cached_only: bool = False
) -> Path | None:
    """The local file for `item` when present with the right size and sha256.

    Candidates: the replica the control plane registered here, then where this
    agent put a fetched copy. A file whose checksum differs (corrupted, or not
    the tenant's file at all) is never used.
    """
    candidates: list[Path | None] = []
    if item.local_path:
        candidates.append(root.inside(item.local_path))
    if item.dest_path:
        candidates.append(root.inside(item.dest_path))
    candidates.append(root.resolve(item.dataset))
    for p in candidates:
        if p is None or not p.is_file() or p.stat().st_size != item.size_bytes:
            continue
        if root.verified(p, item.sha256, cached_only=cached_only):
            return p
        if warn:
            logger.warning(
                "%s: %s does not match the dataset's sha256; not using it", item.dataset, p
            )
    return None


def stage_inputs(
    inputs: list[StagingInput],
    root: DataRoot,
    client: httpx.Client,
    *,
    time_scale: float = 1.0,
    data_scale: float = 1.0,
    cancel: threading.Event | None = None,
    center: str | None = None,
) -> StagingResult:
    """Make every input present in `root` (see module doc); StagingError if one cannot be.

    `center` is this center's id, which fetch tickets are bound to (default:
    the ``X-CNet-Center`` header the client sends anyway).
    """
    result = StagingResult()
    t0 = time.monotonic()
    moved: dict[str, int] = {}
    for item in inputs:
        present = local_replica(item, root, warn=True)
        if present is not None:
            result.paths[item.dataset] = str(present)
            continue
        rel = item.dest_path or root.default_path(item.dataset)
        target = root.inside(rel)
        if target is None:
            logger.warning("%s: %r is not a usable place in the data root", item.dataset, rel)
            raise StagingError(
                f"input '{item.dataset}' is not at this center and cannot be placed here",
                field="inputs",
            )
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
                got = fetch(
                    client, source, item, tmp, rate_bytes_s=rate, cancel=cancel, center=center
                )
            except StagingError as exc:
                logger.warning("staging %s: %s", item.dataset, exc.message)
                failures.append(exc.message)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            root.remember(target, item.sha256)  # checked while streaming: no second read
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
        result.bytes_from = dict(moved)
    return result


def place_copy(src: Path, root: DataRoot, rel: str, sha256: str) -> int:
    """Put the bytes of the verified file `src` at `rel` under another data `root`; its size.

    For a network agent handing a staged input to a region center it can write
    to (backends/network.py, ``inbox``): a hard link when both are on one
    filesystem (the same bytes, nothing to check), else a copy through a
    scratch file in `root` that must hash to `sha256` before it takes its
    place, so the region never registers bytes other than those staged here.
    `rel` must be a usable place in `root` (StagingError naming ``inputs``).
    """
    target = root.inside(rel)
    if target is None:
        raise StagingError(f"'{rel}' is not a usable place in {root.root}", field="inputs")
    tmp = root.staging_dir() / f"{target.name}.import.{os.getpid()}.{threading.get_ident()}.part"
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # another filesystem (or links refused): copy, then check
            shutil.copyfile(src, tmp)
            if dataset_sha256(tmp) != sha256:
                raise StagingError(
                    f"the copy of {src.name} in {root.root} does not match its sha256",
                    field="inputs",
                ) from None
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    root.remember(target, sha256)
    return target.stat().st_size
