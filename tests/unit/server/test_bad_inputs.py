"""Named bad inputs, one table: each gets its 4xx naming the field, and nothing is stored.

Every entry is sent to a fresh control plane as its caller (a user, an admin
or a center agent); the answer must be the expected status with an
`ErrorBody` naming the expected field, and afterwards the store must hold as
many jobs, datasets and log bytes as before (none).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from computenet.model import limits
from computenet.store.schema import DatasetRow, JobLogRow, JobRow
from tests.unit.server.conftest import Net, job_spec

JOB_ID = "j-000000000000"


@dataclass(frozen=True)
class Bad:
    """One named bad input: where it goes, what it is, what must come back."""

    name: str
    path: str
    body: Any = None  # JSON-encodable, sent as JSON (NaN and Infinity as Python writes them)
    raw: bytes | None = None  # sent as is, when given
    expect: int = 422
    field: str | None = None
    method: str = "POST"
    role: str = "user"  # user, admin or center
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def job(**over: Any) -> dict[str, Any]:
    """A submit body whose spec has `over` replaced."""
    return {"spec": job_spec(**over)}


def work(**w: Any) -> dict[str, Any]:
    return job(work=w)


NAN = float("nan")
INF = float("inf")
HUGE = "x" * 100_000

BAD: list[Bad] = [
    # -- numbers: finite and bounded ------------------------------------------------
    Bad("cu_hours NaN", "/api/v1/jobs", work(cu_hours=NAN), field="spec.work.cu_hours"),
    Bad("cu_hours Infinity", "/api/v1/jobs", work(cu_hours=INF), field="spec.work.cu_hours"),
    Bad("cu_hours -Infinity", "/api/v1/jobs", work(cu_hours=-INF), field="spec.work.cu_hours"),
    Bad("cu_hours 1e308", "/api/v1/jobs", work(cu_hours=1e308), field="spec.work.cu_hours"),
    Bad("cu_hours zero", "/api/v1/jobs", work(cu_hours=0), field="spec.work.cu_hours"),
    Bad(
        "reference_hours 1e308",
        "/api/v1/jobs",
        work(reference_chip="A100", reference_hours=1e308),
        field="spec.work.reference_hours",
    ),
    Bad(
        "memory_gb NaN",
        "/api/v1/jobs",
        job(chips={"count": 1, "memory_gb": NAN}),
        field="spec.chips.memory_gb",
    ),
    Bad("budget Infinity", "/api/v1/jobs", job(budget_cny="Infinity"), field="spec.budget_cny"),
    Bad("budget 1e308", "/api/v1/jobs", job(budget_cny=1e308), field="spec.budget_cny"),
    Bad("negative chip count", "/api/v1/jobs", job(chips={"count": -1}), field="spec.chips.count"),
    Bad("a billion chips", "/api/v1/jobs", job(chips={"count": 10**9}), field="spec.chips.count"),
    Bad("fractional chips", "/api/v1/jobs", job(chips={"count": 2.5}), field="spec.chips.count"),
    Bad("priority 99", "/api/v1/jobs", job(priority=99), field="spec.priority"),
    # -- strings and lists: bounded --------------------------------------------------
    Bad("huge name", "/api/v1/jobs", job(name=HUGE), field="spec.name"),
    Bad("huge command", "/api/v1/jobs", job(command=HUGE), field="spec.command"),
    Bad("empty class", "/api/v1/jobs", job(**{"class": ""}), field="spec.class"),
    Bad(
        "a thousand env vars",
        "/api/v1/jobs",
        job(env={f"V{i}": "1" for i in range(1000)}),
        field="spec.env",
    ),
    Bad("huge env value", "/api/v1/jobs", job(env={"V": HUGE}), field="spec.env"),
    Bad("env name with =", "/api/v1/jobs", job(env={"A=B": "1"}), field="spec.env"),
    Bad("empty env name", "/api/v1/jobs", job(env={"": "1"}), field="spec.env"),
    Bad(
        "a thousand inputs",
        "/api/v1/jobs",
        job(inputs=[f"d{i}" for i in range(1000)]),
        field="spec.inputs",
    ),
    Bad(
        "a thousand chip types",
        "/api/v1/jobs",
        job(chips={"count": 1, "types": ["A100"] * 1000}),
        field="spec.chips.types",
    ),
    Bad(
        "huge idempotency key",
        "/api/v1/jobs",
        {**job(), "idempotency_key": HUGE},
        field="idempotency_key",
    ),
    Bad("huge pin_center", "/api/v1/jobs", {**job(), "pin_center": HUGE}, field="pin_center"),
    # -- deadlines and durations ------------------------------------------------------
    Bad(
        "deadline 99999999999d", "/api/v1/jobs", job(deadline="99999999999d"), field="spec.deadline"
    ),
    Bad("deadline 1e30 hours", "/api/v1/jobs", job(deadline="9" * 30 + "h"), field="spec.deadline"),
    Bad(
        "deadline year 9999",
        "/api/v1/jobs",
        job(deadline="9999-12-31T00:00:00+00:00"),
        field="spec.deadline",
    ),
    Bad(
        "deadline 20 years ahead",
        "/api/v1/jobs",
        job(deadline="2046-11-02T10:00:00+08:00"),
        field="spec.deadline",
    ),
    Bad("deadline zero", "/api/v1/jobs", job(deadline="0h"), field="spec.deadline"),
    Bad(
        "deadline without timezone",
        "/api/v1/jobs",
        job(deadline="2026-11-03T10:00:00"),
        field="spec.deadline",
    ),
    Bad("huge deadline text", "/api/v1/jobs", job(deadline="1" * 10_000), field="spec.deadline"),
    # -- shapes: unknown fields, wrong types, empty and invalid bodies ----------------
    Bad("unknown field in spec", "/api/v1/jobs", job(colour="red"), field="spec.colour"),
    Bad("unknown top-level field", "/api/v1/jobs", {**job(), "colour": "red"}, field="colour"),
    Bad("command is a number", "/api/v1/jobs", job(command=42), field="spec.command"),
    Bad("chips is a string", "/api/v1/jobs", job(chips="two"), field="spec.chips"),
    Bad("spec is a list", "/api/v1/jobs", {"spec": [1, 2]}, field="spec"),
    Bad("body is a number", "/api/v1/jobs", raw=b"42", field="body"),
    Bad("empty body", "/api/v1/jobs", raw=b"", field="body"),
    Bad("empty object", "/api/v1/jobs", {}, field="spec"),
    Bad("invalid JSON", "/api/v1/jobs", raw=b'{"spec": {', field="body"),
    Bad(
        "JSON NaN literal",
        "/api/v1/jobs",
        raw=json.dumps(work(cu_hours=NAN)).encode(),
        field="spec.work.cu_hours",
    ),
    # -- bodies over the limit --------------------------------------------------------
    Bad(
        "oversize body",
        "/api/v1/jobs",
        raw=json.dumps(job(command="x" * (limits.MAX_BODY_BYTES + 10))).encode(),
        expect=413,
        field="body",
    ),
    Bad(
        "oversize streamed body (no Content-Length)",
        "/api/v1/jobs",
        raw=b"stream:" + b"x" * (limits.MAX_BODY_BYTES + 10),
        expect=413,
        field="body",
    ),
    Bad(
        "oversize Content-Length",
        "/api/v1/jobs",
        raw=b"{}",
        headers={"Content-Length": str(limits.MAX_BODY_BYTES + 1)},
        expect=413,
        field="body",
    ),
    # -- quotes -----------------------------------------------------------------------
    Bad(
        "quote cu_hours 1e308",
        "/api/v1/quote",
        job_spec(work={"cu_hours": 1e308}),
        field="work.cu_hours",
    ),
    Bad(
        "quote cu_hours Infinity",
        "/api/v1/quote",
        job_spec(work={"cu_hours": INF}),
        field="work.cu_hours",
    ),
    Bad(
        "quote deadline 99999999999d",
        "/api/v1/quote",
        job_spec(deadline="99999999999d"),
        field="deadline",
    ),
    # -- datasets ---------------------------------------------------------------------
    Bad(
        "dataset of negative size",
        "/api/v1/datasets",
        {"id": "d", "center": "shanghai", "size_bytes": -1, "sha256": "0" * 64},
        field="size_bytes",
    ),
    Bad(
        "dataset of 1e30 bytes",
        "/api/v1/datasets",
        {"id": "d", "center": "shanghai", "size_bytes": 10**30, "sha256": "0" * 64},
        field="size_bytes",
    ),
    Bad(
        "dataset with a huge path",
        "/api/v1/datasets",
        {"id": "d", "center": "shanghai", "path": HUGE, "size_bytes": 1, "sha256": "0" * 64},
        field="path",
    ),
    # -- query parameters -------------------------------------------------------------
    Bad("list limit zero", "/api/v1/jobs?limit=0", method="GET", field="limit"),
    Bad("list limit a million", "/api/v1/jobs?limit=1000000", method="GET", field="limit"),
    Bad("list cursor garbage", "/api/v1/jobs?cursor=%%%", method="GET", field="cursor"),
    Bad("datasets limit a million", "/api/v1/datasets?limit=1000000", method="GET", field="limit"),
    Bad(
        "logs offset 2^70",
        f"/api/v1/jobs/{JOB_ID}/logs?offset={2**70}",
        method="GET",
        field="offset",
    ),
    Bad(
        "unknown query parameter",
        "/api/v1/jobs?limt=5",
        method="GET",
        field="limt",
    ),
    Bad(
        "logs offset negative",
        f"/api/v1/jobs/{JOB_ID}/logs?offset=-1",
        method="GET",
        field="offset",
    ),
    # -- admin ------------------------------------------------------------------------
    Bad("tenant name huge", "/api/v1/admin/tenants", {"name": HUGE}, role="admin", field="name"),
    Bad("tenant name NaN", "/api/v1/admin/tenants", {"name": NAN}, role="admin", field="name"),
    # -- center protocol --------------------------------------------------------------
    Bad(
        "exit code 2^40",
        f"/center/v1/jobs/{JOB_ID}/status",
        {"attempt": 1, "state": "FAILED", "exit_code": 2**40},
        role="center",
        field="exit_code",
    ),
    Bad(
        "attempt negative",
        f"/center/v1/jobs/{JOB_ID}/status",
        {"attempt": -1, "state": "RUNNING"},
        role="center",
        field="attempt",
    ),
    Bad(
        "report time year 9999",
        f"/center/v1/jobs/{JOB_ID}/status",
        {"attempt": 1, "state": "RUNNING", "at": "9999-01-01T00:00:00+00:00"},
        role="center",
        field="at",
    ),
    Bad(
        "log append over its limit",
        f"/center/v1/jobs/{JOB_ID}/logs",
        {"attempt": 1, "offset": 0, "text": "x" * (limits.MAX_LOG_APPEND_CHARS + 1)},
        role="center",
        field="text",
    ),
    Bad(
        "log offset 2^70",
        f"/center/v1/jobs/{JOB_ID}/logs",
        {"attempt": 1, "offset": 2**70, "text": "x"},
        role="center",
        field="offset",
    ),
    Bad(
        "usage run Infinity",
        f"/center/v1/jobs/{JOB_ID}/usage",
        {"attempt": 1, "run_real_s": INF},
        role="center",
        field="run_real_s",
    ),
    Bad(
        "usage run 1e308",
        f"/center/v1/jobs/{JOB_ID}/usage",
        {"attempt": 1, "run_real_s": 1e308},
        role="center",
        field="run_real_s",
    ),
    Bad(
        "usage bytes negative",
        f"/center/v1/jobs/{JOB_ID}/usage",
        {"attempt": 1, "run_real_s": 1, "bytes_staged": -1},
        role="center",
        field="bytes_staged",
    ),
    Bad(
        "register with a huge agent_version",
        "/center/v1/register",
        {"center_id": "shanghai", "agent_version": HUGE},
        role="center",
        field="agent_version",
    ),
    Bad(
        "register with a huge data_url",
        "/center/v1/register",
        {"center_id": "shanghai", "data_url": "http://x/" + HUGE},
        role="center",
        field="data_url",
    ),
    Bad(
        "heartbeat of 200k running jobs",
        "/center/v1/heartbeat",
        {"center_id": "shanghai", "running": [f"j{i}" for i in range(200_000)]},
        role="center",
        field="running",
    ),
    Bad(
        "center body over its limit",
        f"/center/v1/jobs/{JOB_ID}/logs",
        raw=b"x" * (limits.MAX_CENTER_BODY_BYTES + 1),
        role="center",
        expect=413,
        field="body",
    ),
]


def _counts(net: Net) -> tuple[int, int, int]:
    with net.plane.db.read() as s:
        return (
            s.query(JobRow).count(),
            s.query(DatasetRow).count(),
            s.query(JobLogRow).count(),
        )


def _send(net: Net, bad: Bad) -> Any:
    who = {
        "user": net.user(),
        "admin": net.admin,
        "center": net.center("shanghai"),
    }[bad.role]
    headers = {**who, "Content-Type": "application/json", **bad.headers}
    if bad.raw is not None and bad.raw.startswith(b"stream:"):
        payload = bad.raw.removeprefix(b"stream:")

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(payload), 64 * 1024):
                yield payload[i : i + 64 * 1024]

        return net.client.request(bad.method, bad.path, content=chunks(), headers=headers)
    if bad.raw is not None:
        return net.client.request(bad.method, bad.path, content=bad.raw, headers=headers)
    if bad.body is None:
        return net.client.request(bad.method, bad.path, headers=who)
    return net.client.request(
        bad.method, bad.path, content=json.dumps(bad.body).encode(), headers=headers
    )


@pytest.mark.parametrize("bad", BAD, ids=[b.name for b in BAD])
def test_a_named_bad_input_gets_its_4xx_naming_the_field_and_stores_nothing(
    net: Net, bad: Bad
) -> None:
    net.register("shanghai")
    before = _counts(net)
    r = _send(net, bad)
    assert r.status_code == bad.expect, r.text
    err = r.json()
    assert err["field"] == bad.field, err
    assert err["error"]
    assert _counts(net) == before


def test_the_table_tries_many_named_bad_inputs() -> None:
    print(f"\n{len(BAD)} named bad inputs")
    assert len(BAD) >= 50
