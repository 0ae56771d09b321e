"""Tokens and roles: who may call what."""

from __future__ import annotations

import hashlib

from computenet.store.accounts import list_tenants
from computenet.store.schema import TokenRow
from tests.unit.server.conftest import Net


def test_a_missing_token_is_401_with_an_error_body(net: Net) -> None:
    r = net.client.get("/api/v1/jobs")
    assert r.status_code == 401
    assert r.json()["field"] == "Authorization"
    assert "Bearer" in r.json()["hint"]


def test_an_unknown_token_is_401(net: Net) -> None:
    r = net.client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_tokens_are_stored_only_as_sha256_digests(net: Net) -> None:
    headers = net.user()
    token = headers["Authorization"].removeprefix("Bearer ")
    with net.plane.db.read() as s:
        rows = s.query(TokenRow).all()
    assert all(token not in (r.token_hash, r.subject) for r in rows)
    assert hashlib.sha256(token.encode()).hexdigest() in {r.token_hash for r in rows}


def test_whoami_names_the_user_and_tenant(net: Net) -> None:
    r = net.client.get("/api/v1/whoami", headers=net.user("ann", "acme"))
    assert r.json() == {"subject": "ann", "role": "user", "tenant": "acme", "center": None}


def test_a_center_token_cannot_use_the_user_api(net: Net) -> None:
    r = net.client.get("/api/v1/jobs", headers=net.center("zhongwei"))
    assert r.status_code == 403


def test_a_user_token_cannot_speak_the_center_protocol(net: Net) -> None:
    r = net.client.post("/center/v1/heartbeat", json={"center_id": "zhongwei"}, headers=net.user())
    assert r.status_code == 403


def test_a_center_token_acts_only_for_its_own_center(net: Net) -> None:
    net.register("zhongwei")
    for path in ("/center/v1/register", "/center/v1/heartbeat", "/center/v1/lease"):
        r = net.client.post(path, json={"center_id": "guian"}, headers=net.center("zhongwei"))
        assert r.status_code == 403, path
        assert r.json()["field"] == "center_id"


def test_users_cannot_call_admin_routes(net: Net) -> None:
    r = net.client.post("/api/v1/admin/tenants", json={"name": "x"}, headers=net.user())
    assert r.status_code == 403


def test_an_admin_creates_tenants_users_and_center_tokens(net: Net) -> None:
    r = net.client.post("/api/v1/admin/tenants", json={"name": "newco"}, headers=net.admin)
    assert r.status_code == 201
    again = net.client.post("/api/v1/admin/tenants", json={"name": "newco"}, headers=net.admin)
    assert again.status_code == 409
    r = net.client.post(
        "/api/v1/admin/users", json={"name": "bo", "tenant": "newco"}, headers=net.admin
    )
    assert r.status_code == 201
    token = r.json()["token"]
    me = net.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["tenant"] == "newco"
    r = net.client.post("/api/v1/admin/centers/guian/token", headers=net.admin)
    assert r.status_code == 201 and r.json()["center"] == "guian"
    r = net.client.post("/api/v1/admin/centers/atlantis/token", headers=net.admin)
    assert r.status_code == 404 and r.json()["field"] == "center"
    with net.plane.db.read() as s:
        assert "newco" in {t.id for t in list_tenants(s)}


def test_a_user_of_an_unknown_tenant_is_refused(net: Net) -> None:
    r = net.client.post(
        "/api/v1/admin/users", json={"name": "bo", "tenant": "ghost"}, headers=net.admin
    )
    assert r.status_code == 404
    assert r.json()["field"] == "tenant"
