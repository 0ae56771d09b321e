"""Bearer tokens: made once, stored only as sha256 digests, resolved to a `Principal`.

Roles: ``admin`` (everything; a tenant is optional), ``user`` (one tenant's
jobs, datasets and bills) and ``center`` (the center protocol, for one center).

A token may carry an expiry and may be revoked (`cnet admin revoke`). Each
server caches a resolved token for `CACHE_TTL_S` seconds, and an unknown one
(also expired or revoked) as unknown for as long, in a bounded map, so a
flood of bad tokens does not reach the database. Hence revocation and expiry
take effect within `CACHE_TTL_S` on every replica; the server that handles
the revoke request drops its own cache entry at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from computenet.errors import AuthError, ForbiddenError
from computenet.store import Database
from computenet.store.accounts import token_by_hash

ROLES = ("admin", "user", "center")
CACHE_TTL_S = 5.0
"""How long a server trusts what it learned about a token (revocation takes this long)."""
_CACHE_MAX = 10_000
_UNKNOWN_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, role, and the tenant or center they act for."""

    subject: str
    role: str
    tenant: str | None = None
    center: str | None = None
    token_id: int | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        """Whether this is an admin."""
        return self.role == "admin"


def new_token(role: str) -> str:
    """A fresh random token; the prefix only helps people tell tokens apart."""
    prefix = {"admin": "cna", "user": "cnu", "center": "cnc"}.get(role, "cn")
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    """The sha256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authenticator:
    """Resolves bearer tokens against the store, with short positive and negative caches."""

    def __init__(self, db: Database, ttl_s: float = CACHE_TTL_S) -> None:
        self._db = db
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}
        # digest -> until when it is known to be unknown (bounded, see `_remember_unknown`).
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()
        self.lookups = 0  # database lookups made (for tests and figures)

    def cached(self, token: str | None) -> Principal | None:
        """The principal of `token` if it was resolved in the last few seconds (no I/O)."""
        if not token:
            return None
        hit = self._cache.get(hash_token(token))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def principal(self, token: str | None) -> Principal:
        """The principal of `token`; `AuthError` when missing, unknown, expired or revoked."""
        if not token:
            raise AuthError(
                "missing bearer token",
                field="Authorization",
                hint="send 'Authorization: Bearer <token>' (cnet admin creates tokens)",
            )
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            unknown_until = self._unknown.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        if unknown_until is not None and unknown_until > now:
            raise _unknown_token()
        wall = datetime.now(UTC)
        with self._db.read() as s:
            self.lookups += 1
            row = token_by_hash(s, digest, wall)
            if row is None:
                self._remember_unknown(digest, now)
                raise _unknown_token()
            p = Principal(
                subject=row.subject,
                role=row.role,
                tenant=row.tenant_id,
                center=row.center_id,
                token_id=row.id,
            )
            until = now + self._ttl
            if row.expires_at is not None:  # never trust a token past its expiry
                until = min(until, now + (row.expires_at - wall).total_seconds())
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (until, p)
        return p

    def _remember_unknown(self, digest: str, now: float) -> None:
        with self._lock:
            if len(self._unknown) >= _UNKNOWN_MAX:
                # Drop the stale entries; if all are fresh (a flood), start over: the bound wins.
                live = {k: v for k, v in self._unknown.items() if v > now}
                self._unknown = live if len(live) < _UNKNOWN_MAX // 2 else {}
            self._unknown[digest] = now + self._ttl

    def forget(self, token_id: int) -> None:
        """Drop what this server cached about token `token_id` (after revoking it)."""
        with self._lock:
            for digest in [d for d, (_, p) in self._cache.items() if p.token_id == token_id]:
                del self._cache[digest]


def _unknown_token() -> AuthError:
    return AuthError(
        "unknown, expired or revoked token",
        field="Authorization",
        hint="check the token, or ask an admin for a new one",
    )


def require_role(p: Principal, *roles: str) -> Principal:
    """`p` if its role is one of `roles`, else `ForbiddenError`."""
    if p.role not in roles:
        raise ForbiddenError(
            f"a {p.role} token may not call this",
            field="Authorization",
            hint=f"use a token with role {' or '.join(roles)}",
        )
    return p


def require_center(p: Principal, center_id: str) -> Principal:
    """`p` if it is the token of center `center_id`, else `ForbiddenError`."""
    require_role(p, "center")
    if p.center != center_id:
        raise ForbiddenError(
            f"this token belongs to center '{p.center}', not '{center_id}'",
            field="center_id",
            hint="an agent acts only for its own center",
        )
    return p
