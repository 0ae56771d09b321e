"""Compute vouchers (算力券) in the user API: admins issue and list them; users see their own."""

from __future__ import annotations

from fastapi import APIRouter, Query

from computenet.errors import ForbiddenError
from computenet.protocol.vouchers import VoucherIssue, VoucherView
from computenet.server import vouchers
from computenet.server.deps import Admin, Plane, User
from computenet.server.routers.api import ERRORS

router = APIRouter(prefix="/api/v1", responses=ERRORS)


@router.post("/admin/vouchers", response_model=VoucherView, status_code=201, tags=["admin"])
def issue_voucher(body: VoucherIssue, plane: Plane, who: Admin) -> VoucherView:
    """Issue a voucher to a tenant (audited); 422 naming the field for bad terms."""
    return vouchers.issue_voucher(
        plane.db, body, plane.network, actor=who.subject, now=plane.clock.now()
    )


@router.get("/admin/vouchers", response_model=list[VoucherView], tags=["admin"])
def list_vouchers(
    plane: Plane,
    who: Admin,
    tenant: str | None = Query(None, max_length=64, description="one tenant's; default all"),
) -> list[VoucherView]:
    """Vouchers in issue order with their balances and state at the network's now."""
    return vouchers.vouchers(plane.db, tenant, plane.clock.now())


@router.get("/vouchers", response_model=list[VoucherView], tags=["bills"])
def my_vouchers(plane: Plane, who: User) -> list[VoucherView]:
    """Your tenant's vouchers with their balances (also shown on every bill)."""
    if not who.tenant:
        raise ForbiddenError("this token has no tenant", field="Authorization")
    return vouchers.vouchers(plane.db, who.tenant, plane.clock.now())
