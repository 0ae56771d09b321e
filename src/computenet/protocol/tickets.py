"""Fetch tickets: the one definition, used by the control plane (mint) and the agents (verify).

A ticket lets one center fetch one replica file from another center's data
endpoint, for a short time. The control plane mints it when it leases a job
that needs the data, with the *source* center's data key; the source agent
checks it. The format::

    v1.{key_version}.{expires_unix}.{hex}

where ``hex`` is HMAC-SHA256(data_key, M) and M is the compact JSON array
``["cnet-ticket-v1", dataset_id, path, fetching_center, expires_unix, key_version]``
(JSON, so no field can be forged by putting a separator in another). The MAC
therefore covers the dataset, the replica's path at the source, the center
that may fetch it, the expiry (real unix seconds) and the data key's version.

The ticket travels in the ``X-CNet-Ticket`` request header, never in the URL
(URLs end up in logs and proxies); the fetching agent names itself in
``X-CNet-Center``. A ticket found in the URL is ignored. The fetching center's
name is a claim the source cannot prove (there is no client certificate): it
stops a ticket handed to another center from being used as is, and shows in
the source's log; put TLS with client certificates in front for proof.
"""

from __future__ import annotations

import hashlib
import hmac
import json

TICKET_HEADER = "X-CNet-Ticket"
"""The request header that carries a fetch ticket."""

CENTER_HEADER = "X-CNet-Center"
"""The request header in which a fetching agent names its center."""

DEFAULT_TTL_S = 300.0
"""How long a ticket is valid by default (real seconds): enough to start a transfer."""

_VERSION = "v1"
_HEX = frozenset("0123456789abcdefABCDEF")


def _mac(
    data_key: str, dataset: str, path: str, center: str, expires_unix: int, key_version: int
) -> str:
    message = json.dumps(
        [f"cnet-ticket-{_VERSION}", dataset, path, center, expires_unix, key_version],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hmac.new(data_key.encode("utf-8"), message.encode(), hashlib.sha256).hexdigest()


def mint_ticket(
    data_key: str,
    *,
    dataset: str,
    path: str,
    center: str,
    expires_unix: int,
    key_version: int = 1,
) -> str:
    """A ticket with which `center` may fetch `dataset` at `path` until `expires_unix`."""
    digest = _mac(data_key, dataset, path, center, expires_unix, key_version)
    return f"{_VERSION}.{key_version}.{expires_unix}.{digest}"


def ticket_key_version(ticket: str) -> int | None:
    """The data-key version a ticket claims to be signed with (None when malformed)."""
    parts = ticket.split(".")
    if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
        return None
    return int(parts[1])


def ticket_problem(
    data_key: str,
    ticket: str,
    *,
    dataset: str,
    path: str,
    center: str,
    now_unix: float,
    key_version: int = 1,
) -> str | None:
    """Why `ticket` does not let `center` fetch `dataset` at `path` now, or None when it does.

    `data_key` and `key_version` are the verifying (source) center's current key.
    """
    parts = ticket.split(".")
    if (
        len(parts) != 4
        or parts[0] != _VERSION
        or not parts[1].isdigit()
        or not parts[2].isdigit()
        or not parts[3]
        or not all(c in _HEX for c in parts[3])  # compare_digest refuses non-ASCII text
    ):
        return "malformed ticket (expected v1.KEY_VERSION.EXPIRES.HEXDIGEST)"
    version, expires = int(parts[1]), int(parts[2])
    if version != key_version:
        return f"ticket signed with data key version {version}, this center has {key_version}"
    if expires < now_unix:
        return "ticket expired"
    expected = _mac(data_key, dataset, path, center, expires, version)
    if not hmac.compare_digest(expected, parts[3].lower()):
        return "ticket does not match this dataset, path, fetching center and data key"
    return None
