"""Dataset files at a center: checksums, fetch tickets, and the agent's data root.

A replica is one file whose path is relative to the agent's data root. The
data root keeps a small index (``.cnet-index.json``: dataset id → path) so the
data endpoint can find a replica by dataset id; a dataset not in the index is
looked for at ``DATA_ROOT/<dataset id>``.

A fetch ticket is ``"{expires_unix}.{hmac_sha256(data_key, f'{dataset_id}:{expires_unix}')}"``:
the control plane mints it with the *source* center's data key when it leases a
job that needs the data, and the source agent's endpoint checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

INDEX_FILE = ".cnet-index.json"
STAGING_DIR = ".cnet-staging"
_CHUNK = 1 << 20


def dataset_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (a dataset's checksum)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def mint_ticket(data_key: str, dataset_id: str, expires_unix: int) -> str:
    """A ticket for fetching `dataset_id` until `expires_unix` from a center with `data_key`."""
    mac = hmac.new(data_key.encode(), f"{dataset_id}:{expires_unix}".encode(), hashlib.sha256)
    return f"{expires_unix}.{mac.hexdigest()}"


def ticket_problem(data_key: str, dataset_id: str, ticket: str, now: float) -> str | None:
    """Why `ticket` does not open `dataset_id` now, or None when it does."""
    expires_s, dot, digest = ticket.partition(".")
    if not dot or not expires_s.isdigit() or not digest:
        return "malformed ticket (expected EXPIRES.HEXDIGEST)"
    if int(expires_s) < now:
        return "ticket expired"
    expected = mint_ticket(data_key, dataset_id, int(expires_s)).partition(".")[2]
    if not hmac.compare_digest(expected, digest.lower()):
        return "ticket signature does not match this dataset and center"
    return None


def env_name(dataset_id: str) -> str:
    """The environment variable that tells a job where input `dataset_id` is."""
    return "CNET_INPUT_" + "".join(c if c.isalnum() else "_" for c in dataset_id.upper())


@dataclass(frozen=True)
class Replica:
    """A dataset file at a center: its path relative to the data root, checksum and size."""

    dataset: str
    path: str
    sha256: str
    size_bytes: int


class DataRoot:
    """The directory of a center's dataset replicas, with its id → path index."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def inside(self, relpath: str) -> Path | None:
        """`relpath` under the root, or None when it would escape the root."""
        p = (self.root / relpath).resolve()
        return p if p.is_relative_to(self.root) and p != self.root else None

    def default_path(self, dataset_id: str) -> str:
        """Where a replica of `dataset_id` goes when the agent fetches it."""
        return dataset_id if dataset_id not in (".", "..") else f"_{dataset_id}"

    def _index(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / INDEX_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def record(self, dataset_id: str, relpath: str) -> None:
        """Remember that `dataset_id` is at `relpath` (so the endpoint can serve it)."""
        with self._lock:
            index = self._index()
            index[dataset_id] = relpath
            tmp = self.root / f"{INDEX_FILE}.tmp"
            tmp.write_text(json.dumps(index, indent=1, sort_keys=True), "utf-8")
            os.replace(tmp, self.root / INDEX_FILE)

    def resolve(self, dataset_id: str, registered: str | None = None) -> Path | None:
        """The replica file of `dataset_id` here, if there is one.

        `registered` is the path the control plane has on record (from a
        signed fetch URL); it is used when this agent never indexed the file.
        """
        rel = self._index().get(dataset_id) or registered or self.default_path(dataset_id)
        p = self.inside(rel)
        return p if p is not None and p.is_file() else None

    def staging_dir(self) -> Path:
        """A scratch directory for partial downloads (same filesystem, so moves are atomic)."""
        d = self.root / STAGING_DIR
        d.mkdir(exist_ok=True)
        return d


def create_replica(
    data_root: str | Path,
    dataset_id: str,
    size_bytes: int,
    *,
    path: str | None = None,
    seed: int | str | None = None,
) -> Replica:
    """Write a file of `size_bytes` pseudo-random bytes as a replica of `dataset_id`.

    For demos and tests: the content is deterministic for a given seed (default:
    the dataset id). Returns the path (relative to the data root) and the sha256
    to register the dataset with (``POST /api/v1/datasets``).
    """
    root = DataRoot(data_root)
    rel = path or root.default_path(dataset_id)
    target = root.inside(rel)
    if target is None:
        raise ValueError(f"path '{rel}' is outside the data root")
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed if seed is not None else dataset_id)
    h = hashlib.sha256()
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "wb") as f:
        left = size_bytes
        while left > 0:
            chunk = rng.randbytes(min(_CHUNK, left))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    os.replace(tmp, target)
    root.record(dataset_id, rel)
    return Replica(dataset=dataset_id, path=rel, sha256=h.hexdigest(), size_bytes=size_bytes)


def expires_in(seconds: float, now: float | None = None) -> int:
    """A ticket expiry `seconds` from now (unix seconds)."""
    return int((time.time() if now is None else now) + seconds)
