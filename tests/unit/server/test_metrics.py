"""GET /metrics: who may scrape, and each family's values after jobs ran (server/metrics.py)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from computenet.cli.main import main as cnet_main
from computenet.errors import ValidationError
from computenet.server.__main__ import main as server_main
from computenet.server.metrics import (
    REASONS,
    JsonFormatter,
    read_token_file,
    reason_category,
)
from computenet.store.schema import JobEventRow
from tests.unit.server.conftest import Net, job_spec, make_net

METRICS_TOKEN = "scrape-" + "x" * 24
H100 = {"count": 2, "types": ["H100"]}
DATA = {
    "id": "corpus",
    "center": "shanghai",
    "path": "tenants/acme/corpus.bin",
    "size_bytes": 5_000_000,
    "sha256": "ab" * 32,
}


@pytest.fixture
def mnet(db_url: str) -> Iterator[Net]:
    """The unit-test plane with a metrics token configured."""
    yield from make_net(db_url, metrics_token=METRICS_TOKEN)


def scrape(net: Net, token: str = METRICS_TOKEN) -> dict[str, list[tuple[dict[str, str], float]]]:
    """{sample name: [(labels, value)]} of one authorised scrape, parsed by prometheus_client."""
    r = net.client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    """The one sample of `name` whose labels include `labels`."""
    hits = [v for lab, v in samples.get(name, []) if labels.items() <= lab.items()]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


# --- who may scrape -------------------------------------------------------------------


def test_no_token_is_401_with_a_hint_naming_the_metrics_token(mnet: Net) -> None:
    r = mnet.client.get("/metrics")
    assert r.status_code == 401
    assert "--metrics-token-file" in r.json()["hint"]


def test_a_wrong_token_is_401(mnet: Net) -> None:
    r = mnet.client.get("/metrics", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert r.status_code == 401
    assert "metrics token" in r.json()["hint"]


def test_user_and_center_tokens_are_403(mnet: Net) -> None:
    for headers in (mnet.user(), mnet.center("zhongwei")):
        r = mnet.client.get("/metrics", headers=headers)
        assert r.status_code == 403, r.text
        assert "admin" in r.json()["hint"]


def test_the_metrics_token_and_an_admin_token_may_scrape(mnet: Net) -> None:
    assert "computenet_center_up" in scrape(mnet)
    admin = mnet.admin["Authorization"].removeprefix("Bearer ")
    assert "computenet_center_up" in scrape(mnet, admin)


def test_without_a_metrics_token_only_admins_scrape(net: Net) -> None:
    assert net.client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 401
    admin = net.admin["Authorization"].removeprefix("Bearer ")
    assert "computenet_jobs_total" in scrape(net, admin)


# --- values ---------------------------------------------------------------------------


def run_job(net: Net, real_run_s: float) -> str:
    """A job staged from shanghai, run at zhongwei for `real_run_s`, succeeded."""
    job_id = net.submit(job_spec(chips=H100, inputs=["corpus"])).json()["id"]
    attempt = net.run_to_running("zhongwei", job_id)
    net.time.advance(real_run_s)
    r = net.client.post(
        f"/center/v1/jobs/{job_id}/usage",
        json={
            "attempt": attempt,
            "run_real_s": real_run_s,
            "bytes_staged": 5_000_000,
            "staged_from": "shanghai",
            "transfers": [{"source": "shanghai", "bytes": 5_000_000}],
        },
        headers=net.center("zhongwei"),
    )
    assert r.status_code == 200, r.text
    assert net.report("zhongwei", job_id, attempt, "SUCCEEDED", exit_code=0).status_code == 200
    return job_id


def test_families_follow_a_job_that_ran_and_one_that_waits(mnet: Net) -> None:
    mnet.register("zhongwei")
    mnet.register("shanghai")
    assert mnet.client.post("/api/v1/datasets", json=DATA, headers=mnet.user()).status_code == 201
    before = scrape(mnet)
    assert value(before, "computenet_scheduling_cycle_seconds_count") == 0
    mnet.time.advance(3.0)  # 3 real s = 30 network min before the first cycle looks
    job_id = run_job(mnet, 12.0)
    # Needs more chips than any pool has: it waits, with a reason.
    waiting = mnet.submit(job_spec(chips={"count": 4096, "types": ["H100"]})).json()["id"]
    mnet.tick()
    assert mnet.job(waiting)["state"] == "PENDING"
    mnet.heartbeat("zhongwei")  # 15 real s went by: both stay up past the lease timeout
    mnet.heartbeat("shanghai")

    m = scrape(mnet)
    assert value(m, "computenet_jobs_total", state="SUCCEEDED") == 1
    assert value(m, "computenet_jobs_total", state="PENDING") == 2
    assert value(m, "computenet_jobs_total", state="FAILED") == 0
    assert value(m, "computenet_center_up", center="zhongwei") == 1
    assert value(m, "computenet_center_up", center="shanghai") == 1
    down = [c.id for c in mnet.plane.network.centers if c.id not in ("zhongwei", "shanghai")]
    assert all(value(m, "computenet_center_up", center=c) == 0 for c in down)
    for c in mnet.plane.network.centers:
        for p in c.pools:
            got = value(m, "computenet_center_chips", center=c.id, chip=p.chip, state="total")
            assert got == p.count
    one = mnet.plane.network.center(down[0]).pools[0]
    assert value(m, "computenet_center_chips", center=down[0], chip=one.chip, state="free") == 0
    assert value(m, "computenet_pending_jobs", reason="pool_too_small") == 1
    assert {lab["reason"] for lab, _ in m["computenet_pending_jobs"]} <= REASONS
    assert value(m, "computenet_admission_wait_seconds_count") == 1
    # Submitted after 3 real s, started at once (the first tick): 0 network s of wait.
    assert value(m, "computenet_admission_wait_seconds_sum") == 0
    assert value(m, "computenet_scheduling_cycle_seconds_count") == 2
    assert value(m, "computenet_transfer_bytes_total", src="shanghai", dst="zhongwei") == 5e6
    cost = Decimal(str(mnet.job(job_id)["cost_cny"]))
    assert cost > 0
    assert value(m, "computenet_billed_cny_total", tenant="acme") == float(cost)

    # A second scrape observes no admission twice.
    again = scrape(mnet)
    assert value(again, "computenet_admission_wait_seconds_count") == 1


def test_the_admission_wait_is_in_network_seconds(mnet: Net) -> None:
    mnet.register("zhongwei")
    job_id = mnet.submit(job_spec(chips=H100)).json()["id"]
    mnet.time.advance(6.0)  # 6 real s at 600× = one network hour
    mnet.run_to_running("zhongwei", job_id)
    m = scrape(mnet)
    assert value(m, "computenet_admission_wait_seconds_sum") == pytest.approx(3600.0)
    assert value(m, "computenet_admission_wait_seconds_bucket", le="1800.0") == 0
    assert value(m, "computenet_admission_wait_seconds_bucket", le="3600.0") == 1


def test_a_start_that_becomes_visible_late_is_counted_once(mnet: Net) -> None:
    mnet.register("zhongwei")
    late = mnet.submit(job_spec(chips=H100)).json()["id"]  # its first event: a low id
    early = mnet.submit(job_spec(chips=H100)).json()["id"]
    mnet.run_to_running("zhongwei", early)
    assert mnet.job(late)["state"] in ("PENDING", "SCHEDULED")
    assert value(scrape(mnet), "computenet_admission_wait_seconds_count") == 1
    # As if a transaction holding an older event id committed a start only now (PostgreSQL
    # hands ids out before commit): the event below the last one read becomes a start.
    with mnet.plane.db.write() as s:
        q = select(JobEventRow).where(JobEventRow.job_id == late).order_by(JobEventRow.id)
        row = s.scalars(q).first()
        assert row is not None
        row.state = "STAGING"
    assert value(scrape(mnet), "computenet_admission_wait_seconds_count") == 2
    assert value(scrape(mnet), "computenet_admission_wait_seconds_count") == 2


def test_each_server_has_its_own_registry(mnet: Net) -> None:
    assert mnet.plane.metrics.registry is not prometheus_client.REGISTRY
    default = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("computenet_") for name in default)


# --- reasons, tokens, logs ------------------------------------------------------------

SCHEDULER_REASONS = {
    "rejected by the scheduler: evaluation failed": "rejected",
    "no eligible center has 8 free H100 chips within the next 48 h": "no_free_chips",
    "the eligible centers are offline: east, west": "center_offline",
    "deadline in 2 h but the fastest finish is 5 h at east (relax the deadline, …)": "deadline",
    "budget ¥10 but the cheapest option costs ¥30.00 at east (raise the budget …)": "budget",
    "would run for more than 30 days on any eligible chip (ask for more …)": "too_long",
    "needs 64 chips in one pool: the largest eligible pool has 8 (ask for fewer …)": (
        "pool_too_small"
    ),
    "needs 80 GB per chip: the eligible chips (T4) have less": "memory",
    "input 'corpus' has no replica anywhere": "data_unreachable",
    "no eligible center is linked to where the inputs are": "data_unreachable",
    "inputs must stay in cn-east: no eligible center there": "residency",
    "pinned to east, which cannot run it (remove 'center' to let the network choose)": "pinned",
    "no chip in the network runs class 'llm-train'": "no_matching_chip",
    "needs H100: no center has such chips that run 'llm-train'": "no_matching_chip",
    "tenant quota: 16 of 16 H100 in use": "quota",
}


@pytest.mark.parametrize(("text", "category"), sorted(SCHEDULER_REASONS.items()))
def test_a_reason_becomes_a_short_category(text: str, category: str) -> None:
    assert reason_category([text, "more text"]) == category


def test_unknown_or_missing_reasons_stay_bounded() -> None:
    assert reason_category([]) == "new"
    assert reason_category(["something nobody wrote a rule for"]) == "other"
    assert all(reason_category([t]) in REASONS for t in SCHEDULER_REASONS)


def test_a_token_file_must_hold_a_token(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text(METRICS_TOKEN + "\n")
    assert read_token_file(good) == METRICS_TOKEN
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(ValidationError, match="16 characters"):
        read_token_file(short)
    with pytest.raises(ValidationError) as exc:
        read_token_file(tmp_path / "missing")
    assert exc.value.field == "metrics_token_file"


def test_the_server_command_refuses_a_missing_token_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = server_main(["--metrics-token-file", str(tmp_path / "nope"), "--db", "sqlite://"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "metrics_token_file" in err


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--metrics-token-file", "/nonexistent/token"], "metrics_token_file"),
        (["--log-format", "xml"], "log_format"),
    ],
)
def test_cnet_server_refuses_bad_metrics_and_log_options_in_one_line(
    args: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cnet_main(["server", "--db", "sqlite://", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err


def test_json_log_lines_carry_time_level_logger_and_message() -> None:
    record = logging.LogRecord("computenet.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    line = JsonFormatter().format(record)
    doc = json.loads(line)
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "computenet.x"
    assert doc["message"] == "a b"
    assert doc["time"].endswith("+00:00")
    assert "\n" not in line
