"""FastAPI dependencies: the control plane of the app, and the caller's principal by role.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in
the thread pool, a thread hand-off per dependency per request. These do no
I/O, except a token lookup on a cache miss, which goes to the thread pool.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from computenet.server.auth import Authenticator, Principal, require_role
from computenet.server.plane import ControlPlane

bearer = HTTPBearer(auto_error=False, description="a user, admin or center token")


async def plane_of(request: Request) -> ControlPlane:
    """The app's control plane."""
    plane: ControlPlane = request.app.state.plane
    return plane


async def _principal(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal:
    auth: Authenticator = request.app.state.plane.auth
    token = creds.credentials if creds else None
    hit = auth.cached(token)
    if hit is not None:
        return hit
    principal: Principal = await run_in_threadpool(auth.principal, token)
    return principal


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

# Each role check below resolves the token itself rather than depending on `caller`:
# FastAPI's per-request cost grows with every dependency in the chain.


async def caller(request: Request, creds: Credentials) -> Principal:
    """Whoever the bearer token names (401 when missing or unknown)."""
    return await _principal(request, creds)


async def user_caller(request: Request, creds: Credentials) -> Principal:
    """A user or admin (401 without a valid token, 403 for center tokens)."""
    return require_role(await _principal(request, creds), "user", "admin")


async def admin_caller(request: Request, creds: Credentials) -> Principal:
    """An admin (401 without a valid token, 403 otherwise)."""
    return require_role(await _principal(request, creds), "admin")


async def center_caller(request: Request, creds: Credentials) -> Principal:
    """A center's agent (401 without a valid token, 403 otherwise)."""
    return require_role(await _principal(request, creds), "center")


Plane = Annotated[ControlPlane, Depends(plane_of)]
User = Annotated[Principal, Depends(user_caller)]
Admin = Annotated[Principal, Depends(admin_caller)]
Agent = Annotated[Principal, Depends(center_caller)]
