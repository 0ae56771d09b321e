"""Credentials have a life cycle: expiry, revocation, a negative cache, key rotation, audit."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from computenet.errors import AuthError, ValidationError
from computenet.protocol.tickets import ticket_problem
from computenet.server import admin
from computenet.server.auth import Authenticator
from computenet.store.centers import get_center
from computenet.store.schema import TokenRow
from tests.unit.server.conftest import Net, job_spec


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_token_revoked_over_http_is_refused_at_once_by_that_server(net: Net) -> None:
    r = net.client.post("/api/v1/admin/users", json={"name": "bo", "tenant": "acme"},
                        headers=net.admin)  # fmt: skip
    assert r.status_code == 404  # no tenant yet: nothing made
    net.client.post("/api/v1/admin/tenants", json={"name": "acme"}, headers=net.admin)
    tok = net.client.post(
        "/api/v1/admin/users", json={"name": "bo", "tenant": "acme"}, headers=net.admin
    ).json()
    assert net.client.get("/api/v1/whoami", headers=bearer(tok["token"])).status_code == 200
    revoked = net.client.post(f"/api/v1/admin/tokens/{tok['id']}/revoke", headers=net.admin)
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    # This server had the token cached; the revoke dropped the entry.
    r = net.client.get("/api/v1/whoami", headers=bearer(tok["token"]))
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    again = net.client.post(f"/api/v1/admin/tokens/{tok['id']}/revoke", headers=net.admin)
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
    assert (
        net.client.post("/api/v1/admin/tokens/999999/revoke", headers=net.admin).status_code == 404
    )


def test_a_token_revoked_elsewhere_is_refused_within_the_cache_ttl(net: Net) -> None:
    """Another replica (or `cnet admin revoke` on the database) revokes: this one follows."""
    auth = Authenticator(net.plane.db, ttl_s=0.3)
    tok = admin.create_user(net.plane.db, "cy", "acme", create_tenant_if_missing=True)
    assert auth.principal(tok.token).subject == "cy"
    assert tok.id is not None
    admin.revoke_token(net.plane.db, tok.id)
    assert auth.principal(tok.token).subject == "cy"  # still cached, for at most the TTL
    time.sleep(0.35)  # not a wait for a state: the cache TTL running out is what is tested
    with pytest.raises(AuthError):
        auth.principal(tok.token)


def test_an_expired_token_is_refused(net: Net) -> None:
    tok = admin.create_user(
        net.plane.db, "dee", "acme", create_tenant_if_missing=True, expires="30d"
    )
    assert tok.expires_at is not None
    assert timedelta(days=29) < tok.expires_at - datetime.now(UTC) <= timedelta(days=30)
    with net.plane.db.write() as s:
        row = s.get(TokenRow, tok.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    r = net.client.get("/api/v1/whoami", headers=bearer(tok.token))
    assert r.status_code == 401
    (info,) = [t for t in admin.list_tokens(net.plane.db) if t.id == tok.id]
    assert info.state == "expired"


def test_a_cached_token_is_not_trusted_past_its_expiry(net: Net) -> None:
    auth = Authenticator(net.plane.db, ttl_s=60)
    expiry = (datetime.now(UTC) + timedelta(seconds=0.4)).isoformat()
    tok = admin.create_user(
        net.plane.db, "eve", "acme", create_tenant_if_missing=True, expires=expiry
    )
    assert auth.principal(tok.token).subject == "eve"
    time.sleep(0.5)  # not a wait for a state: the token's expiry passing is what is tested
    with pytest.raises(AuthError):
        auth.principal(tok.token)


@pytest.mark.parametrize(
    "expires",
    [
        "soon",
        "-3d",
        "0s",
        "2001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59",
        "999999w",
        "99999999d",
    ],
)
def test_a_bad_expiry_is_422_naming_the_field(net: Net, expires: str) -> None:
    net.client.post("/api/v1/admin/tenants", json={"name": "acme"}, headers=net.admin)
    r = net.client.post(
        "/api/v1/admin/users",
        json={"name": "x", "tenant": "acme", "expires": expires},
        headers=net.admin,
    )
    assert r.status_code == 422 and r.json()["field"] == "expires"
    with pytest.raises(ValidationError):
        admin.parse_expiry(expires, datetime.now(UTC))


def test_unknown_tokens_are_cached_as_unknown_and_the_cache_is_bounded(net: Net) -> None:
    before = net.plane.auth.lookups
    for _ in range(30):
        r = net.client.get("/api/v1/jobs", headers=bearer("cnu_not-a-token"))
        assert r.status_code == 401
    assert net.plane.auth.lookups - before == 1
    auth = Authenticator(net.plane.db)
    for i in range(12_000):
        with pytest.raises(AuthError):
            auth.principal(f"flood-{i}")
    assert len(auth._unknown) <= 10_000
    assert auth.lookups == 12_000  # every distinct bad token is looked up once


def test_token_listing_shows_state_and_never_the_secret(net: Net) -> None:
    user = net.user()
    tokens = net.client.get("/api/v1/admin/tokens", headers=net.admin)
    assert tokens.status_code == 200
    secret = user["Authorization"].removeprefix("Bearer ")
    assert secret not in tokens.text
    rows = {t["subject"]: t for t in tokens.json()}
    assert rows["ann"]["role"] == "user" and rows["ann"]["tenant"] == "acme"
    assert rows["ann"]["state"] == "live" and rows["ann"]["expires_at"] is None
    assert set(rows["ann"]) >= {"id", "created_at", "revoked_at", "center"}
    assert net.client.get("/api/v1/admin/tokens", headers=user).status_code == 403


def test_a_center_token_is_replaced_without_stopping_the_center(net: Net) -> None:
    net.register("zhongwei")
    old = net.center("zhongwei")
    new = net.client.post("/api/v1/admin/centers/zhongwei/token", headers=net.admin).json()
    body = {"center_id": "zhongwei", "capacity": [], "running": []}
    # Both work while the operator swaps the agent's token file...
    for headers in (old, bearer(new["token"])):
        assert net.client.post("/center/v1/lease", json=body, headers=headers).status_code == 200
    # ...then the old one is revoked.
    (old_info,) = [
        t
        for t in net.client.get("/api/v1/admin/tokens", headers=net.admin).json()
        if t["center"] == "zhongwei" and t["id"] != new["id"]
    ]
    net.client.post(f"/api/v1/admin/tokens/{old_info['id']}/revoke", headers=net.admin)
    assert net.client.post("/center/v1/lease", json=body, headers=old).status_code == 401
    assert (
        net.client.post("/center/v1/lease", json=body, headers=bearer(new["token"])).status_code
        == 200
    )


def test_rotating_a_data_key_makes_old_tickets_fail_and_new_ones_work(net: Net) -> None:
    net.register("shanghai", data_url="http://127.0.0.1:7001")
    net.register("zhongwei", data_url="http://127.0.0.1:7002")
    net.client.post(
        "/api/v1/datasets",
        json={"id": "corpus", "center": "shanghai", "size_bytes": 1000, "sha256": "ab" * 32},
        headers=net.user(),
    )
    with net.plane.db.read() as s:
        old_key = get_center(s, "shanghai").data_key  # type: ignore[union-attr]
    first = net.submit(job_spec(chips={"count": 1, "types": ["H100"]}, inputs=["corpus"]))
    net.tick()
    (leased,) = net.lease("zhongwei")
    old_ticket = leased["inputs"][0]["sources"][0]["ticket"]
    assert first.json()["id"] == leased["job_id"]
    assert (
        net.client.post(
            "/api/v1/admin/centers/shanghai/rotate-data-key", headers=net.user()
        ).status_code
        == 403
    )
    r = net.client.post("/api/v1/admin/centers/shanghai/rotate-data-key", headers=net.admin)
    assert r.status_code == 200 and r.json() == {"center": "shanghai", "data_key_version": 2}
    # The running agent learns it from its next heartbeat, and registering again gives the key.
    assert net.heartbeat("shanghai")["data_key_version"] == 2
    reply = net.register("shanghai", data_url="http://127.0.0.1:7001")
    assert reply["data_key_version"] == 2 and reply["data_key"] != old_key
    new_key = reply["data_key"]
    where = {"dataset": "corpus", "path": "tenants/acme/corpus", "center": "zhongwei"}
    assert (
        ticket_problem(new_key, old_ticket, **where, now_unix=net.time(), key_version=2) is not None
    )
    net.submit(job_spec(chips={"count": 1, "types": ["H100"]}, inputs=["corpus"]))
    net.tick()
    (again,) = net.lease("zhongwei")
    new_ticket = again["inputs"][0]["sources"][0]["ticket"]
    assert new_ticket.startswith("v1.2.")
    assert ticket_problem(new_key, new_ticket, **where, now_unix=net.time(), key_version=2) is None
    missing = net.client.post("/api/v1/admin/centers/guian/rotate-data-key", headers=net.admin)
    assert missing.status_code == 404 and missing.json()["field"] == "center"


def test_every_admin_action_is_in_the_audit_log(net: Net) -> None:
    net.register("zhongwei")
    a = net.admin
    net.client.post("/api/v1/admin/tenants", json={"name": "newco"}, headers=a)
    tok = net.client.post(
        "/api/v1/admin/users", json={"name": "bo", "tenant": "newco", "expires": "7d"}, headers=a
    ).json()
    net.client.post("/api/v1/admin/centers/zhongwei/token", headers=a)
    net.client.post(f"/api/v1/admin/tokens/{tok['id']}/revoke", headers=a)
    net.client.post("/api/v1/admin/centers/zhongwei/rotate-data-key", headers=a)
    admin.create_tenant(net.plane.db, "cli-made")  # what `cnet admin` does, on the database
    page = net.client.get("/api/v1/admin/audit", headers=a).json()
    got = [(e["actor"], e["action"], e["target"]) for e in page["entries"]]
    assert got[:6] == [
        (got[0][0], "tenant.create", "cli-made"),
        ("admin", "center.rotate-data-key", "zhongwei"),
        ("admin", "token.revoke", f"token:{tok['id']}"),
        ("admin", "center.token", got[3][2]),
        ("admin", "token.create", f"token:{tok['id']}"),
        ("admin", "tenant.create", "newco"),
    ]
    assert got[0][0].startswith("cli:")
    assert tok["token"] not in str(page)  # no secret in the log
    assert page["entries"][4]["detail"]["expires_at"] is not None
    # Paged, newest first.
    first = net.client.get("/api/v1/admin/audit?limit=2", headers=a).json()
    assert [e["id"] for e in first["entries"]] == [e["id"] for e in page["entries"][:2]]
    rest = net.client.get(
        f"/api/v1/admin/audit?limit=2&before={first['next_before']}", headers=a
    ).json()
    assert [e["id"] for e in rest["entries"]] == [e["id"] for e in page["entries"][2:4]]
    assert net.client.get("/api/v1/admin/audit", headers=net.user()).status_code == 403


def test_tenant_names_are_checked_on_the_database_path_too(net: Net) -> None:
    with pytest.raises(ValidationError) as err:
        admin.create_tenant(net.plane.db, "../evil")
    assert err.value.field == "name"
