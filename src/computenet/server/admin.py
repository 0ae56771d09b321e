"""Administration on a database URL, for `cnet admin` (and the admin HTTP routes).

Each function brings the database to the current schema first, so they work
on a new, empty database. Tokens are returned once and stored only hashed.
"""

from __future__ import annotations

from datetime import UTC, datetime

from computenet.errors import NotFoundError
from computenet.model import Network
from computenet.protocol import TokenView
from computenet.server.auth import hash_token, new_token
from computenet.store import Database, upgrade_db
from computenet.store.accounts import add_token, get_tenant, list_tenants
from computenet.store.accounts import create_tenant as _create_tenant

DbLike = str | Database


def _db(db: DbLike) -> tuple[Database, bool]:
    if isinstance(db, Database):
        return db, False
    upgrade_db(db)
    return Database(db), True


def tenant_names(db: DbLike) -> list[str]:
    """Every tenant's name, sorted."""
    database, own = _db(db)
    try:
        with database.read() as s:
            return [t.id for t in list_tenants(s)]
    finally:
        if own:
            database.dispose()


def create_tenant(db: DbLike, name: str) -> str:
    """Create tenant `name` (ConflictError if it exists); returns the name."""
    database, own = _db(db)
    try:
        with database.write() as s:
            _create_tenant(s, name, datetime.now(UTC))
        return name
    finally:
        if own:
            database.dispose()


def create_user(
    db: DbLike,
    name: str,
    tenant: str,
    role: str = "user",
    *,
    create_tenant_if_missing: bool = False,
) -> TokenView:
    """A token for user `name` of `tenant` (role user or admin); NotFoundError if no tenant."""
    database, own = _db(db)
    try:
        with database.write() as s:
            if get_tenant(s, tenant) is None:
                if not create_tenant_if_missing:
                    raise NotFoundError(
                        f"no tenant '{tenant}'",
                        field="tenant",
                        hint=f"create it first: cnet admin tenant {tenant}",
                    )
                _create_tenant(s, tenant, datetime.now(UTC))
            token = new_token(role)
            add_token(
                s,
                token_hash=hash_token(token),
                subject=name,
                role=role,
                tenant=tenant,
                at=datetime.now(UTC),
            )
        return TokenView(token=token, subject=name, role=role, tenant=tenant)
    finally:
        if own:
            database.dispose()


def create_center_token(db: DbLike, center: str, network: Network | None = None) -> TokenView:
    """A token with which the agent of `center` (and only it) speaks the center protocol."""
    if network is not None:
        try:
            network.center(center)
        except KeyError:
            raise NotFoundError(
                f"center '{center}' is not in network '{network.name}'",
                field="center",
                hint="one of " + ", ".join(c.id for c in network.centers),
            ) from None
    database, own = _db(db)
    try:
        token = new_token("center")
        with database.write() as s:
            add_token(
                s,
                token_hash=hash_token(token),
                subject=f"agent:{center}",
                role="center",
                center=center,
                at=datetime.now(UTC),
            )
        return TokenView(token=token, subject=f"agent:{center}", role="center", center=center)
    finally:
        if own:
            database.dispose()


def bootstrap_admin(db: DbLike, name: str = "admin", tenant: str | None = None) -> TokenView:
    """An admin token (optionally also a member of `tenant`, created if missing)."""
    database, own = _db(db)
    try:
        with database.write() as s:
            if tenant and get_tenant(s, tenant) is None:
                _create_tenant(s, tenant, datetime.now(UTC))
            token = new_token("admin")
            add_token(
                s,
                token_hash=hash_token(token),
                subject=name,
                role="admin",
                tenant=tenant,
                at=datetime.now(UTC),
            )
        return TokenView(token=token, subject=name, role="admin", tenant=tenant)
    finally:
        if own:
            database.dispose()


center_token = create_center_token
"""Alias of `create_center_token` (the name `cnet admin center-token` uses)."""
