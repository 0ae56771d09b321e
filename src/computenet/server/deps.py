"""FastAPI dependencies: the control plane of the app, and the caller's principal by role."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from computenet.server.auth import Principal, require_role
from computenet.server.plane import ControlPlane

bearer = HTTPBearer(auto_error=False, description="a user, admin or center token")


def plane_of(request: Request) -> ControlPlane:
    """The app's control plane."""
    plane: ControlPlane = request.app.state.plane
    return plane


def caller(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """Whoever the bearer token names (401 when missing or unknown)."""
    return plane_of(request).auth.principal(creds.credentials if creds else None)


def user_caller(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """A user or admin (403 for center tokens)."""
    return require_role(who, "user", "admin")


def admin_caller(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """An admin (403 otherwise)."""
    return require_role(who, "admin")


def center_caller(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """A center's agent (403 otherwise)."""
    return require_role(who, "center")


Plane = Annotated[ControlPlane, Depends(plane_of)]
User = Annotated[Principal, Depends(user_caller)]
Admin = Annotated[Principal, Depends(admin_caller)]
Agent = Annotated[Principal, Depends(center_caller)]
