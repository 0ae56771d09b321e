"""Dataset files at a center: checksums and the agent's data root.

A replica is one file whose path is relative to the agent's data root; a
tenant's replicas live in its area ``tenants/<tenant>/`` (see
`computenet.protocol.datapaths`). The data root keeps a small index
(``.cnet-index.json``: dataset id → path) of what this agent holds. Names
starting with ``.`` are the agent's own and never resolve as replicas.

A local replica is used only after its sha256 matches the dataset's; the
verdict is remembered by (path, size, mtime) so a big file is hashed once,
not before every job. Fetch tickets are defined in `computenet.protocol.tickets`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from computenet.protocol.datapaths import TENANTS_DIR, default_replica_path
from computenet.protocol.tickets import mint_ticket

__all__ = [
    "INDEX_FILE",
    "STAGING_DIR",
    "DataRoot",
    "Replica",
    "create_replica",
    "dataset_sha256",
    "env_name",
    "expires_in",
    "mint_ticket",
]

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
        # (path, size, mtime_ns) -> sha256 of files already hashed.
        self._digests: dict[tuple[str, int, int], str] = {}

    def inside(self, relpath: str) -> Path | None:
        """`relpath` under the root, or None when it would escape the root or is reserved.

        Absolute paths, ``..``, any part starting with ``.`` (the agent's own
        files) and symlinks that lead out of the root all give None; a path in
        a tenant's area (``tenants/<t>/...``) must also stay in that area after
        symlinks are followed.
        """
        if not relpath or "\\" in relpath or relpath.startswith("/"):
            return None
        parts = Path(relpath).parts
        if any(part.startswith(".") for part in parts):
            return None
        p = (self.root / relpath).resolve()
        fence = self.root
        if len(parts) > 2 and parts[0] == TENANTS_DIR:
            fence = (self.root / parts[0] / parts[1]).resolve()
        return p if p.is_relative_to(fence) and p != self.root else None

    def verified(self, path: Path, sha256: str, *, cached_only: bool = False) -> bool:
        """Whether the file at `path` has checksum `sha256` (hashed once per size and mtime).

        With `cached_only`, a file not hashed yet counts as unverified rather
        than being read (for callers that must not block on a big file).
        """
        try:
            st = path.stat()
        except OSError:
            return False
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._digests.get(key)
        if known is None:
            if cached_only:
                return False
            try:
                known = dataset_sha256(path)
            except OSError:
                return False
            with self._lock:
                if len(self._digests) > 10_000:
                    self._digests.clear()
                self._digests[key] = known
        return known == sha256

    def remember(self, path: Path, sha256: str) -> None:
        """Record that the file now at `path` has checksum `sha256` (it was just verified)."""
        try:
            st = path.stat()
        except OSError:
            return
        with self._lock:
            self._digests[(str(path), st.st_size, st.st_mtime_ns)] = sha256

    def default_path(self, dataset_id: str, tenant: str | None = None) -> str:
        """Where a replica of `dataset_id` goes: in `tenant`'s area, else at the root."""
        if tenant is not None:
            return default_replica_path(tenant, dataset_id)
        return dataset_id if not dataset_id.startswith(".") else f"_{dataset_id}"

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
            tmp.chmod(0o600)  # every tenant's dataset ids and paths: the agent's alone
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
    tenant: str | None = None,
    seed: int | str | None = None,
) -> Replica:
    """Write a file of `size_bytes` pseudo-random bytes as a replica of `dataset_id`.

    For demos and tests: the content is deterministic for a given seed (default:
    the dataset id). The file goes to `path`, else into `tenant`'s area (the
    place the control plane accepts for that tenant), else to the root.
    Returns the path (relative to the data root) and the sha256 to register
    the dataset with (``POST /api/v1/datasets``).
    """
    root = DataRoot(data_root)
    rel = path or root.default_path(dataset_id, tenant)
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
