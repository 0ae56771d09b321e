"""Administration on a database URL, for `cnet admin` (and the admin HTTP routes).

Each function brings the database to the current schema first, so they work
on a new, empty database. Tokens are returned once and stored only hashed.
Every change is written to the audit log in the same transaction, with its
`actor`: the admin's subject over HTTP, ``cli:<os user>`` from `cnet admin`.
"""

from __future__ import annotations

import getpass
import re
import secrets
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from computenet.errors import NotFoundError, ValidationError
from computenet.model import Network
from computenet.protocol import TokenView
from computenet.protocol.admin import AuditEntry, AuditPage, DataKeyView, TokenInfo
from computenet.protocol.tenancy import QuotaView, TenancyView, TenantShareView
from computenet.scheduler.tenancy import HALF_LIFE_S, QUOTA_KINDS, Quota, TenantUse
from computenet.server.auth import hash_token, new_token
from computenet.store import Database, upgrade_db
from computenet.store import quotas as quota_store
from computenet.store.accounts import add_token, audit, get_tenant, list_audit, list_tenants
from computenet.store.accounts import create_tenant as _create_tenant
from computenet.store.accounts import list_tokens as _list_tokens
from computenet.store.accounts import revoke_token as _revoke_token
from computenet.store.centers import get_center
from computenet.store.schema import TenantRow, TokenRow

DbLike = str | Database

TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9\-_]*$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_MAX_LIFETIME = timedelta(days=3650)


def _db(db: DbLike) -> tuple[Database, bool]:
    if isinstance(db, Database):
        return db, False
    upgrade_db(db)
    return Database(db), True


def cli_actor() -> str:
    """The audit actor of `cnet admin` run on the database: ``cli:<os user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli:unknown"


def parse_expiry(text: str | None, now: datetime, field: str = "expires") -> datetime | None:
    """When a token given `--expires TEXT` stops working: a duration (30d, 12h) or an ISO time.

    None for None or ``never``; `ValidationError` naming `field` for anything
    else that is not a future instant within ten years.
    """
    if text is None or text.strip().lower() in ("", "never"):
        return None
    t = text.strip()
    m = _DURATION.fullmatch(t)
    if m:
        seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
        if seconds > _MAX_LIFETIME.total_seconds():  # before adding: far years overflow
            raise ValidationError(f"'{text}' is more than ten years away", field=field)
        at = now + timedelta(seconds=seconds)
    else:
        try:
            at = datetime.fromisoformat(t)
        except ValueError:
            raise ValidationError(
                f"'{text}' is neither a duration nor an ISO time",
                field=field,
                hint="e.g. 30d, 12h, 45m or 2027-01-01T00:00:00+08:00",
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    if at <= now:
        raise ValidationError(f"'{text}' is not in the future", field=field, hint="e.g. 30d")
    if at - now > _MAX_LIFETIME:
        raise ValidationError(f"'{text}' is more than ten years away", field=field)
    return at


def _check_tenant_name(name: str) -> None:
    if len(name) > 64 or not TENANT_NAME.fullmatch(name):
        raise ValidationError(
            f"'{name}' is not a tenant name",
            field="name",
            hint="lowercase letters, digits, '-' and '_', starting with a letter or digit",
        )


def tenant_names(db: DbLike) -> list[str]:
    """Every tenant's name, sorted."""
    database, own = _db(db)
    try:
        with database.read() as s:
            return [t.id for t in list_tenants(s)]
    finally:
        if own:
            database.dispose()


def create_tenant(db: DbLike, name: str, *, actor: str | None = None) -> str:
    """Create tenant `name` (ConflictError if it exists); returns the name."""
    _check_tenant_name(name)
    database, own = _db(db)
    try:
        with database.write() as s:
            _create_tenant(s, name, datetime.now(UTC))
            audit(s, actor or cli_actor(), "tenant.create", name)
        return name
    finally:
        if own:
            database.dispose()


def _issue(
    s: Session,
    *,
    role: str,
    subject: str,
    actor: str,
    action: str,
    tenant: str | None = None,
    center: str | None = None,
    expires_at: datetime | None = None,
    detail: dict[str, object] | None = None,
) -> TokenView:
    """Make, store and audit one token (in the caller's transaction)."""
    now = datetime.now(UTC)
    token = new_token(role)
    row = add_token(
        s,
        token_hash=hash_token(token),
        subject=subject,
        role=role,
        tenant=tenant,
        center=center,
        at=now,
        expires_at=expires_at,
    )
    audit(
        s,
        actor,
        action,
        f"token:{row.id}",
        {
            "subject": subject,
            "role": role,
            "tenant": tenant,
            "center": center,
            "expires_at": expires_at.isoformat() if expires_at else None,
            **(detail or {}),
        },
        at=now,
    )
    return TokenView(
        token=token,
        subject=subject,
        role=role,
        tenant=tenant,
        center=center,
        id=row.id,
        expires_at=expires_at,
    )


def create_user(
    db: DbLike,
    name: str,
    tenant: str,
    role: str = "user",
    *,
    create_tenant_if_missing: bool = False,
    expires: str | None = None,
    actor: str | None = None,
) -> TokenView:
    """A token for user `name` of `tenant` (role user or admin); NotFoundError if no tenant.

    `expires` is a duration (``30d``) or an ISO time; no expiry when None.
    """
    expires_at = parse_expiry(expires, datetime.now(UTC))
    who = actor or cli_actor()
    database, own = _db(db)
    try:
        with database.write() as s:
            if get_tenant(s, tenant) is None:
                if not create_tenant_if_missing:
                    raise NotFoundError(
                        f"no tenant '{tenant}'",
                        field="tenant",
                        hint=f"create it first: cnet admin create-tenant {tenant}",
                    )
                _check_tenant_name(tenant)
                _create_tenant(s, tenant, datetime.now(UTC))
                audit(s, who, "tenant.create", tenant)
            return _issue(
                s,
                role=role,
                subject=name,
                actor=who,
                action="token.create",
                tenant=tenant,
                expires_at=expires_at,
            )
    finally:
        if own:
            database.dispose()


def create_center_token(
    db: DbLike,
    center: str,
    network: Network | None = None,
    *,
    expires: str | None = None,
    actor: str | None = None,
) -> TokenView:
    """A token with which the agent of `center` (and only it) speaks the center protocol.

    Issuing another token for a center that has one is how a center's token
    is replaced without stopping it: the old token keeps working until it is
    revoked (`revoke_token`), so the operator installs the new one first.
    """
    if network is not None:
        try:
            network.center(center)
        except KeyError:
            raise NotFoundError(
                f"center '{center}' is not in network '{network.name}'",
                field="center",
                hint="one of " + ", ".join(c.id for c in network.centers),
            ) from None
    expires_at = parse_expiry(expires, datetime.now(UTC))
    database, own = _db(db)
    try:
        with database.write() as s:
            earlier = [
                t.id
                for t in _list_tokens(s)
                if t.role == "center" and t.center_id == center and _state(t) == "live"
            ]
            return _issue(
                s,
                role="center",
                subject=f"agent:{center}",
                actor=actor or cli_actor(),
                action="center.token",
                center=center,
                expires_at=expires_at,
                detail={"live_before": earlier},
            )
    finally:
        if own:
            database.dispose()


def bootstrap_admin(
    db: DbLike,
    name: str = "admin",
    tenant: str | None = None,
    *,
    expires: str | None = None,
    actor: str | None = None,
) -> TokenView:
    """An admin token (optionally also a member of `tenant`, created if missing)."""
    expires_at = parse_expiry(expires, datetime.now(UTC))
    who = actor or cli_actor()
    database, own = _db(db)
    try:
        with database.write() as s:
            if tenant and get_tenant(s, tenant) is None:
                _check_tenant_name(tenant)
                _create_tenant(s, tenant, datetime.now(UTC))
                audit(s, who, "tenant.create", tenant)
            return _issue(
                s,
                role="admin",
                subject=name,
                actor=who,
                action="token.create",
                tenant=tenant,
                expires_at=expires_at,
            )
    finally:
        if own:
            database.dispose()


center_token = create_center_token
"""Alias of `create_center_token` (the name `cnet admin center-token` uses)."""


def _state(row: TokenRow, now: datetime | None = None) -> str:
    if row.revoked:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= (now or datetime.now(UTC)):
        return "expired"
    return "live"


def _info(row: TokenRow, now: datetime) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        subject=row.subject,
        role=row.role,
        tenant=row.tenant_id,
        center=row.center_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        state=_state(row, now),
    )


def list_tokens(db: DbLike) -> list[TokenInfo]:
    """Every token, oldest first, without secrets."""
    database, own = _db(db)
    now = datetime.now(UTC)
    try:
        with database.read() as s:
            return [_info(t, now) for t in _list_tokens(s)]
    finally:
        if own:
            database.dispose()


def revoke_token(db: DbLike, token_id: int, *, actor: str | None = None) -> TokenInfo:
    """Revoke token `token_id` (NotFoundError if none; revoking twice changes nothing).

    Servers stop accepting it within their auth cache's lifetime (`auth.CACHE_TTL_S`).
    """
    database, own = _db(db)
    now = datetime.now(UTC)
    try:
        with database.write() as s:
            row = _revoke_token(s, token_id, now)
            audit(
                s,
                actor or cli_actor(),
                "token.revoke",
                f"token:{token_id}",
                {"subject": row.subject, "role": row.role, "center": row.center_id},
                at=now,
            )
            return _info(row, now)
    finally:
        if own:
            database.dispose()


def rotate_data_key(db: DbLike, center: str, *, actor: str | None = None) -> DataKeyView:
    """Give `center` a new data key: tickets signed with the old one stop working.

    The center's agent learns the new key from its next heartbeat (it registers
    again); until then its data endpoint asks fetchers to retry.
    """
    database, own = _db(db)
    try:
        with database.write() as s:
            row = get_center(s, center, for_update=True)
            if row is None:
                raise NotFoundError(
                    f"center '{center}' has not registered",
                    field="center",
                    hint="a center gets its first data key when its agent registers",
                )
            row.data_key = secrets.token_hex(32)
            row.data_key_version = (row.data_key_version or 1) + 1
            version = row.data_key_version
            audit(
                s,
                actor or cli_actor(),
                "center.rotate-data-key",
                center,
                {"data_key_version": version},
            )
            return DataKeyView(center=center, data_key_version=version)
    finally:
        if own:
            database.dispose()


def audit_log(db: DbLike, limit: int = 100, before: int | None = None) -> AuditPage:
    """One page of the audit log, newest first (`before`: the `next_before` of the last page)."""
    database, own = _db(db)
    try:
        with database.read() as s:
            rows = list_audit(s, limit + 1, before)
            entries = [
                AuditEntry(
                    id=r.id,
                    at=r.at,
                    actor=r.actor,
                    action=r.action,
                    target=r.target,
                    detail=r.detail or {},
                )
                for r in rows[:limit]
            ]
        more = len(rows) > limit
        return AuditPage(entries=entries, next_before=entries[-1].id if more else None)
    finally:
        if own:
            database.dispose()


# -- tenancy: share weight, priority ceiling, quotas (docs/tenancy.md) ----------------------


def _share_view(row: TenantRow) -> TenantShareView:
    return TenantShareView(
        tenant=row.id, weight=float(row.share_weight or 1.0), priority_ceiling=row.priority_ceiling
    )


def set_tenant_share(
    db: DbLike,
    tenant: str,
    *,
    weight: float | None = None,
    priority_ceiling: int | None = None,
    actor: str | None = None,
) -> TenantShareView:
    """Set a tenant's fair-share weight and priority ceiling (-1 removes it); audited.

    Servers apply a new ceiling to submissions within a few seconds and a
    weight at their next scheduling cycle.
    """
    if weight is None and priority_ceiling is None:
        raise ValidationError(
            "nothing to set", field="--weight", hint="give --weight W and/or --priority-ceiling P"
        )
    database, own = _db(db)
    try:
        with database.write() as s:
            row = quota_store.set_share(s, tenant, weight=weight, ceiling=priority_ceiling)
            view = _share_view(row)
            audit(
                s,
                actor or cli_actor(),
                "tenant.share",
                f"tenant:{tenant}",
                {"weight": view.weight, "priority_ceiling": view.priority_ceiling},
            )
            return view
    finally:
        if own:
            database.dispose()


def _quota_view(tenant: str, q: Quota, use: TenantUse | None) -> QuotaView:
    used = Decimal(0)
    if use is not None:
        if q.kind == "chips":
            n = use.chips.get(q.chip, 0) if q.chip else sum(use.chips.values())
            used = Decimal(n)
        elif q.kind == "cu_hours":
            used = Decimal(f"{use.cu_hours.get(q.period or 'month', 0.0):.2f}")
        else:
            used = use.cny.get(q.period or "month", Decimal(0)).quantize(Decimal("0.01"))
    return QuotaView(
        tenant=tenant,
        kind=q.kind,  # type: ignore[arg-type]
        chip=q.chip,
        period=q.period,  # type: ignore[arg-type]
        limit=q.limit,
        used=used,
        label=q.label(),
    )


def set_quota(
    db: DbLike,
    tenant: str,
    kind: str,
    limit: Decimal | str | float,
    *,
    chip: str | None = None,
    period: str | None = None,
    network: Network | None = None,
    actor: str | None = None,
) -> QuotaView:
    """Set (or replace) one quota of a tenant; audited. `network` checks the chip's name."""
    q = quota_store.check_quota(kind, limit, chip, period)
    if chip is not None and network is not None:
        chips = {p.chip for c in network.centers for p in c.pools}
        if chip not in chips:
            raise ValidationError(
                f"no center of this network has '{chip}' chips",
                field="--chip",
                hint="one of " + ", ".join(sorted(chips)),
            )
    database, own = _db(db)
    try:
        with database.write() as s:
            quota_store.set_quota(s, tenant, q, datetime.now(UTC))
            audit(
                s,
                actor or cli_actor(),
                "quota.set",
                f"tenant:{tenant}",
                {"kind": q.kind, "chip": q.chip, "period": q.period, "limit": str(q.limit)},
            )
        return _quota_view(tenant, q, None)
    finally:
        if own:
            database.dispose()


def clear_quotas(
    db: DbLike,
    tenant: str,
    *,
    kind: str | None = None,
    chip: str | None = None,
    actor: str | None = None,
) -> int:
    """Remove a tenant's quotas (only of `kind` / `chip` when given); how many; audited."""
    if kind is not None and kind not in QUOTA_KINDS:
        raise ValidationError(
            f"unknown quota kind '{kind}'", field="--kind", hint="one of chips, cu_hours, cny"
        )
    database, own = _db(db)
    try:
        with database.write() as s:
            n = quota_store.clear_quotas(s, tenant, kind, chip)
            audit(
                s,
                actor or cli_actor(),
                "quota.clear",
                f"tenant:{tenant}",
                {"kind": kind, "chip": chip, "removed": n},
            )
        return n
    finally:
        if own:
            database.dispose()


def list_quotas(
    db: DbLike, tenant: str | None = None, now: datetime | None = None
) -> list[QuotaView]:
    """Every quota (of `tenant` when given) with what is used of it at `now` (default: now)."""
    database, own = _db(db)
    try:
        with database.read() as s:
            if tenant is not None:
                quota_store.tenant_row(s, tenant)
            quotas = quota_store.quotas_of(s, None if tenant is None else [tenant])
            uses = quota_store.tenant_uses(
                s, now or datetime.now(UTC), fair_share=False, tenants=list(quotas)
            )
        return [_quota_view(t, q, uses.get(t)) for t, qs in sorted(quotas.items()) for q in qs]
    finally:
        if own:
            database.dispose()


def tenancy(db: DbLike, tenant: str, now: datetime) -> TenancyView:
    """A tenant's quotas with their use, weight, ceiling and fair-share standing at `now`."""
    database, own = _db(db)
    try:
        with database.read() as s:
            row = quota_store.tenant_row(s, tenant)
            uses = quota_store.tenant_uses(s, now, fair_share=True)
        mine = uses.get(tenant, TenantUse())
        busy = {t: u for t, u in uses.items() if u.usage > 0 or t == tenant}
        weights = sum(u.weight for u in busy.values())
        total = sum(u.usage for u in busy.values())
        return TenancyView(
            tenant=tenant,
            weight=float(row.share_weight or 1.0),
            priority_ceiling=row.priority_ceiling,
            quotas=[_quota_view(tenant, q, mine) for q in mine.quotas],
            usage_cu_hours=round(mine.usage, 3),
            share=round(mine.weight / weights, 4) if weights else 1.0,
            used_share=round(mine.usage / total, 4) if total else 0.0,
            half_life_days=HALF_LIFE_S / 86400.0,
        )
    finally:
        if own:
            database.dispose()
