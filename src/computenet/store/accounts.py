"""Tenants, tokens and installation facts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from computenet.errors import ConflictError
from computenet.store.schema import MetaRow, TenantRow, TokenRow


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
) -> TokenRow:
    """Store a token by its hash."""
    row = TokenRow(
        token_hash=token_hash,
        subject=subject,
        role=role,
        tenant_id=tenant,
        center_id=center,
        revoked=False,
        created_at=at,
    )
    s.add(row)
    s.flush()
    return row


def token_by_hash(s: Session, token_hash: str) -> TokenRow | None:
    """The live (not revoked) token with this hash."""
    return s.scalar(
        select(TokenRow).where(TokenRow.token_hash == token_hash, TokenRow.revoked.is_(False))
    )


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
