"""`cnet admin` on a database: token expiry, listing, revocation, key rotation and the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

from computenet.server.auth import Authenticator, hash_token
from computenet.store import Database
from computenet.store.accounts import token_by_hash
from computenet.store.centers import register_center
from tests.unit.cli.conftest import Result

Cnet = Callable[..., Result]


def _json(r: Result) -> object:
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_tokens_are_made_listed_and_revoked_from_the_command_line(cnet: Cnet, db_url: str) -> None:
    db = ("--db", db_url)
    assert cnet("admin", "create-tenant", "lab", *db).code == 0
    made = _json(cnet("admin", "create-user", "alice", "--tenant", "lab", "--expires", "30d",
                      "--json", *db))  # fmt: skip
    assert isinstance(made, dict) and made["expires_at"] and made["id"]
    listed = cnet("admin", "tokens", *db)
    assert listed.code == 0 and "alice" in listed.out and "live" in listed.out
    assert made["token"] not in listed.out  # never the secret
    rows = _json(cnet("admin", "tokens", "--json", *db))
    assert isinstance(rows, list) and made["token"] not in json.dumps(rows)
    r = cnet("admin", "revoke", str(made["id"]), *db)
    assert r.code == 0 and "revoked" in r.out
    database = Database(db_url)
    try:
        with database.read() as s:
            assert token_by_hash(s, hash_token(made["token"])) is None
        # A server that never saw the token refuses it.
        auth = Authenticator(database)
        try:
            auth.principal(made["token"])
        except Exception as exc:
            assert type(exc).__name__ == "AuthError"
        else:
            raise AssertionError("a revoked token was accepted")
    finally:
        database.dispose()


def test_bad_admin_input_is_one_line_and_exit_2(cnet: Cnet, db_url: str) -> None:
    db = ("--db", db_url)
    for argv in (
        ("admin", "create-user", "a", "--tenant", "nope", *db),
        ("admin", "bootstrap", "--expires", "yesterday", *db),
        ("admin", "revoke", "12345", *db),
        ("admin", "rotate-data-key", "nowhere", *db),
        ("admin", "create-tenant", "Bad/Name", *db),
    ):
        r = cnet(*argv)
        assert r.code == 2, (argv, r)
        assert len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err


def test_rotate_data_key_and_the_audit_log_from_the_command_line(cnet: Cnet, db_url: str) -> None:
    db = ("--db", db_url)
    assert cnet("admin", "bootstrap", "--name", "ops", *db).code == 0
    database = Database(db_url)
    try:
        with database.write() as s:
            register_center(
                s, "east", new_data_key="k1", at=datetime.now(UTC), real_now=0.0,
                data_url=None, backend="local", agent_version="", protocol_version="1",
                capacity=[],
            )  # fmt: skip
    finally:
        database.dispose()
    rotated = _json(cnet("admin", "rotate-data-key", "east", "--json", *db))
    assert rotated == {"center": "east", "data_key_version": 2}
    assert cnet("admin", "center-token", "east", *db).code == 0
    page = _json(cnet("admin", "audit", "--json", *db))
    assert isinstance(page, dict)
    actions = [(e["action"], e["target"]) for e in page["entries"]]
    assert actions[0][0] == "center.token" and actions[1] == ("center.rotate-data-key", "east")
    assert actions[2][0] == "token.create"
    assert all(e["actor"].startswith("cli:") for e in page["entries"])
    older = _json(cnet("admin", "audit", "--json", "--limit", "1", *db))
    assert isinstance(older, dict) and older["next_before"] == page["entries"][0]["id"]
    table = cnet("admin", "audit", *db)
    assert table.code == 0 and "center.rotate-data-key" in table.out
