"""Wire schemas of the admin API's credential routes (``/api/v1/admin/...``).

Token listings never carry the secret (only its id); audit entries never carry secrets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class TokenInfo(BaseModel):
    """GET /api/v1/admin/tokens: one token, without its secret."""

    id: int
    subject: str
    role: str
    tenant: str | None = None
    center: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    state: str = Field(description="live, expired or revoked")


class DataKeyView(BaseModel):
    """POST /api/v1/admin/centers/{id}/rotate-data-key: the center's new key version."""

    center: str
    data_key_version: int


class AuditEntry(BaseModel):
    """One admin action: who did what to what, and when."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str = ""
    detail: dict[str, Any] = {}


class AuditPage(BaseModel):
    """GET /api/v1/admin/audit: entries newest first; pass `before=next_before` for older ones."""

    entries: list[AuditEntry]
    next_before: int | None = None
