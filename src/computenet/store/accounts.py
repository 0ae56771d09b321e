"""Tenants, tokens, the audit log of admin actions, and installation facts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from computenet.errors import ConflictError, NotFoundError
from computenet.store.schema import AuditRow, MetaRow, TenantRow, TokenRow


def get_tenant(s: Session, name: str) -> TenantRow | None:
    """The tenant called `name`, if any."""
    return s.get(TenantRow, name)


def list_tenants(s: Session) -> list[TenantRow]:
    """Every tenant, by name."""
    return list(s.scalars(select(TenantRow).order_by(TenantRow.id)))


def create_tenant(s: Session, name: str, at: datetime) -> TenantRow:
    """Add a tenant; `ConflictError` if the name is taken."""
    if s.get(TenantRow, name) is not None:
        raise ConflictError(f"tenant '{name}' already exists", field="name")
    row = TenantRow(id=name, created_at=at)
    s.add(row)
    s.flush()
    return row


def add_token(
    s: Session,
    *,
    token_hash: str,
    subject: str,
    role: str,
    at: datetime,
    tenant: str | None = None,
    center: str | None = None,
    expires_at: datetime | None = None,
) -> TokenRow:
    """Store a token by its hash (valid until `expires_at`, or until revoked when None)."""
    row = TokenRow(
        token_hash=token_hash,
        subject=subject,
        role=role,
        tenant_id=tenant,
        center_id=center,
        revoked=False,
        created_at=at,
        expires_at=expires_at,
    )
    s.add(row)
    s.flush()
    return row


def token_by_hash(s: Session, token_hash: str, now: datetime | None = None) -> TokenRow | None:
    """The live token with this hash: not revoked and not expired at `now` (default: now)."""
    at = now or datetime.now(UTC)
    return s.scalar(
        select(TokenRow).where(
            TokenRow.token_hash == token_hash,
            TokenRow.revoked.is_(False),
            or_(TokenRow.expires_at.is_(None), TokenRow.expires_at > at),
        )
    )


def list_tokens(s: Session) -> list[TokenRow]:
    """Every token (live, expired and revoked), oldest first."""
    return list(s.scalars(select(TokenRow).order_by(TokenRow.id)))


def revoke_token(s: Session, token_id: int, at: datetime) -> TokenRow:
    """Revoke token `token_id` (idempotent: a revoked token keeps its first revocation time)."""
    row = s.get(TokenRow, token_id)
    if row is None:
        raise NotFoundError(
            f"no token with id {token_id}", field="token_id", hint="cnet admin tokens lists them"
        )
    if not row.revoked:
        row.revoked = True
        row.revoked_at = at
        s.flush()
    return row


def audit(
    s: Session,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditRow:
    """Record one admin action in the audit log (in the caller's transaction).

    `actor` is who did it (an admin's subject, or ``cli:<os user>`` for
    `cnet admin` on the database), `action` a dotted name such as
    ``token.revoke``, `target` what it was done to. Never put a secret in `detail`.
    """
    row = AuditRow(
        at=at or datetime.now(UTC),
        actor=actor[:128],
        action=action[:64],
        target=target[:256],
        detail=detail or {},
    )
    s.add(row)
    s.flush()
    return row


def list_audit(s: Session, limit: int = 100, before_id: int | None = None) -> list[AuditRow]:
    """Audit entries newest first, at most `limit`, only those older than `before_id`."""
    q = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
    if before_id is not None:
        q = q.where(AuditRow.id < before_id)
    return list(s.scalars(q))


def get_meta(s: Session, key: str) -> Any:
    """A stored fact, or None."""
    row = s.get(MetaRow, key)
    return None if row is None else row.value


def set_meta(s: Session, key: str, value: Any) -> None:
    """Store a fact (insert or replace)."""
    row = s.get(MetaRow, key)
    if row is None:
        s.add(MetaRow(key=key, value=value))
    else:
        row.value = value
    s.flush()
