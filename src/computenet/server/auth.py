"""Bearer tokens: made once, stored only as sha256 digests, resolved to a `Principal`.

Roles: ``admin`` (everything; a tenant is optional), ``user`` (one tenant's
jobs, datasets and bills) and ``center`` (the center protocol, for one center).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from computenet.errors import AuthError, ForbiddenError
from computenet.store import Database
from computenet.store.accounts import token_by_hash

ROLES = ("admin", "user", "center")
_CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class Principal:
    """Who is calling: subject, role, and the tenant or center they act for."""

    subject: str
    role: str
    tenant: str | None = None
    center: str | None = None

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
    """Resolves bearer tokens against the store, with a short in-memory cache."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str | None) -> Principal | None:
        """The principal of `token` if it was resolved in the last few seconds (no I/O)."""
        if not token:
            return None
        hit = self._cache.get(hash_token(token))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return None

    def principal(self, token: str | None) -> Principal:
        """The principal of `token`; `AuthError` when missing or unknown."""
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
        if hit is not None and hit[0] > now:
            return hit[1]
        with self._db.read() as s:
            row = token_by_hash(s, digest)
            if row is None:
                raise AuthError(
                    "unknown or revoked token",
                    field="Authorization",
                    hint="check the token, or ask an admin for a new one",
                )
            p = Principal(
                subject=row.subject, role=row.role, tenant=row.tenant_id, center=row.center_id
            )
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now + _CACHE_TTL_S, p)
        return p


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
