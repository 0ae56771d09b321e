"""Helpers shared by the backends that drive an external scheduler (Slurm, Ray, Kubernetes).

Each of them names the job it starts after the idempotency key, so that a
restarted agent finds it again by asking the scheduler, and each reads logs
by byte offset. The rules for both live here, once.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import re
import socket
from collections.abc import Mapping
from datetime import UTC, datetime

from computenet.backends.base import BackendJob
from computenet.errors import ValidationError

_SAFE_KEY = re.compile(r"[A-Za-z0-9_.:=+-]{1,100}")


def key_name(prefix: str, key: str) -> str:
    """A scheduler-safe job name carrying `key`: ``PREFIX-KEY``, or ``PREFIX-h<sha256>``.

    Keys made of letters, digits and ``_.:=+-`` (the agent's ``"{job_id}:{attempt}"`` is)
    stay readable; anything else is hashed so names never hold commas, spaces or slashes.
    """
    if _SAFE_KEY.fullmatch(key):
        return f"{prefix}-{key}"
    return f"{prefix}-h{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def slice_log(data: bytes, offset: int) -> tuple[str, int]:
    """Decode `data` (read from byte `offset`) up to its last whole UTF-8 character."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=False)
    pending = decoder.getstate()[0]
    return text, offset + len(data) - len(pending)


def job_env(job: BackendJob) -> dict[str, str]:
    """The job's environment plus the ``CNET_*`` variables every backend sets."""
    env = dict(job.env)
    env.setdefault("CNET_JOB_ID", job.job_id)
    env.setdefault("CNET_ATTEMPT", str(job.attempt))
    env.setdefault("CNET_PLANNED_RUN_S", f"{job.planned_run_s:g}")
    env["CNET_CHIP"] = job.chip
    env["CNET_CHIP_COUNT"] = str(job.count)
    return env


def parse_mapping(value: Mapping[str, str] | str | None, field: str) -> dict[str, str]:
    """``"A=x,B=y"`` or a mapping → dict; ValidationError naming `field` on a malformed item."""
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, item = part.partition("=")
        if not sep or not name.strip() or not item.strip():
            raise ValidationError(f"'{part}' is not CHIP=VALUE", field=field, hint="e.g. A100=gpu")
        out[name.strip()] = item.strip()
    return out


def utc_from_ms(ms: int | float | None) -> datetime | None:
    """A UTC datetime from epoch milliseconds (None stays None)."""
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def catalog_stack(chip: str) -> str | None:
    """The software stack of `chip` in the built-in catalog, or None when unknown.

    Backends use it only as a hint for a default resource name; a missing or
    unreadable catalog is never a reason to fail.
    """
    try:
        from computenet.catalog import load_chips

        spec = load_chips().get(chip)
    except Exception:
        return None
    return str(spec.stack) if spec is not None else None


def is_local_host(host: str) -> bool:
    """Whether `host` (a name or an address a scheduler reports for a node) is this machine.

    A service replica must run where the agent can probe it and advertise its port
    (agent/serving.py): the external backends pin replicas to the node that is this host.
    """
    if not host:
        return False
    names = _local_names()
    if host in names or host.startswith("127."):
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, addr in infos:
        if addr[0] in names:
            return True
        # An address of one of this machine's interfaces is one a socket can bind to.
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((addr[0], 0))
            return True
    return False


@functools.cache
def _local_names() -> frozenset[str]:
    """This machine's names and addresses, looked up once: `is_local_host` runs once per
    node a scheduler lists, and ``getfqdn`` is a reverse DNS lookup (slow where DNS is)."""
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError):
        names.update(socket.gethostbyname_ex(socket.gethostname())[2])
    return frozenset(names)
