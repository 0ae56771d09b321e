"""Property-based fuzzing of the whole OpenAPI document: user, admin and center APIs.

A real server process (network demo, scheduling loop running; on SQLite,
and on PostgreSQL, whose columns have lengths) is fuzzed by schemathesis,
operation by operation, with data that fits each operation's schema
(positive) and data that breaks it (negative), as the caller the operation
is for: a user of a tenant, an admin, or a center's agent. Every answer
must be no 5xx and must match what the document says of it: a documented
status, its content type, and its body schema (4xx bodies are `ErrorBody`).
Negative data must be refused with a 4xx.

Bounded by count: `MAX_EXAMPLES` cases per operation and mode (override with
CNET_FUZZ_EXAMPLES); deterministic unless CNET_FUZZ_RANDOM=1. The number of
requests sent is printed at the end of the run (tests/fuzz/conftest.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from computenet.catalog import load_network
from computenet.server.admin import create_center_token, create_user
from tests.fuzz.conftest import FUZZ
from tests.helpers.pg import fresh_pg_database
from tests.helpers.processes import log_tail, start_server, stop_process

MAX_EXAMPLES = int(os.environ.get("CNET_FUZZ_EXAMPLES", "40"))
RANDOM = os.environ.get("CNET_FUZZ_RANDOM", "") == "1"
CENTER = "shanghai"

POSITIVE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
NEGATIVE_CHECKS = [*POSITIVE_CHECKS, negative_data_rejection]


@dataclass
class Target:
    """The server under fuzz, its schema and how to mint tokens for it."""

    url: str
    db: str
    admin: str
    schema: Any
    session: requests.Session = field(default_factory=requests.Session)
    job_ids: list[str] = field(default_factory=list)

    def tokens(self) -> dict[str, str]:
        """Fresh tokens of each role (a fuzzed revoke may have hit the previous ones)."""
        user = create_user(self.db, "fuzz", "acme", create_tenant_if_missing=True).token
        admin = create_user(self.db, "fuzz-admin", "acme", role="admin").token
        center = create_center_token(self.db, CENTER).token
        return {"user": user, "admin": admin, "center": center}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)]
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The server's database: a SQLite file, and a fresh PostgreSQL database (column limits)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('fuzz-db') / 'cnet.db'}"
    else:
        with fresh_pg_database("cnet_fuzz") as url:
            yield url


@pytest.fixture(scope="module")
def target(store: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A real control plane with a registered center and a few jobs, and its OpenAPI schema."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    url, admin, proc = start_server(tmp, db=store, cycle_interval=0.5)
    try:
        db = store
        t = Target(url, db, admin, schemathesis.openapi.from_url(f"{url}/openapi.json"))
        tok = t.tokens()
        pools = load_network("demo").center(CENTER).pools
        cap = [{"chip": x.chip, "total": x.count, "free": x.count} for x in pools]
        r = t.session.post(
            f"{url}/center/v1/register",
            json={"center_id": CENTER, "capacity": cap},
            headers={"Authorization": f"Bearer {tok['center']}"},
        )
        assert r.status_code == 200, r.text
        for i in range(3):
            r = t.session.post(
                f"{url}/api/v1/jobs",
                json={
                    "spec": {
                        "name": f"seed{i}",
                        "class": "inference",
                        "command": "true",
                        "work": {"cu_hours": 0.01},
                    }
                },
                headers={"Authorization": f"Bearer {tok['user']}"},
            )
            assert r.status_code == 201, r.text
            t.job_ids.append(r.json()["id"])
        yield t
    finally:
        stop_process(proc)
        print(log_tail(tmp / "server.log", 5) if FUZZ.failures else "")


def _role(path: str) -> str:
    if path.startswith("/center/"):
        return "center"
    if path.startswith("/api/v1/admin"):
        return "admin"
    return "user"


def _operations() -> list[tuple[str, str]]:
    """Every (method, path) of the document, read from the app without serving it."""
    import tempfile

    from computenet.server import Settings, create_app

    with tempfile.TemporaryDirectory() as d:
        app = create_app(Settings(db_url=f"sqlite:///{d}/doc.db", run_loop=False))
        doc = app.openapi()
        app.state.plane.db.dispose()
    return [(m.upper(), p) for p, ops in doc["paths"].items() for m in ops]


OPERATIONS = _operations()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_get_no_5xx_and_answers_that_match_the_document(
    target: Target, method: str, path: str
) -> None:
    op = target.schema[path][method]
    tokens = target.tokens()
    auth = {"Authorization": f"Bearer {tokens[_role(path)]}"}
    failures: list[str] = []
    for mode, checks in (
        (GenerationMode.POSITIVE, POSITIVE_CHECKS),
        (GenerationMode.NEGATIVE, NEGATIVE_CHECKS),
    ):
        # The token is fixed: negative cases break the request, not the caller's identity.
        strategy = op.as_strategy(generation_mode=mode, headers=auth)
        if "{job_id}" in path and mode == GenerationMode.POSITIVE:
            # Half the cases name a job that exists, so the handlers past the 404 are reached.
            known = op.as_strategy(headers=auth, path_parameters={"job_id": target.job_ids[0]})
            strategy = st.one_of(strategy, known)

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not RANDOM,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            response = case.call(base_url=target.url, session=target.session)
            FUZZ.count(response.status_code)
            case.validate_response(response, checks=checks)  # noqa: B023 (run at once)

        try:
            run()
        except Unsatisfiable:
            if mode == GenerationMode.NEGATIVE:
                continue  # nothing in this operation can be made invalid (no parameters, no body)
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # schemathesis reports failures as exception groups
            text = str(exc).strip()
            failures.append(f"{mode.value}: {text[:3000]}")
            FUZZ.failures.append(f"{method} {path} ({mode.value})")
    assert not failures, "\n\n".join(failures)
