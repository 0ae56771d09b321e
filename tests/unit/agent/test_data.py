"""Tickets, the data endpoint and staging between two agents' data endpoints."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.agent.data import (
    DataRoot,
    create_replica,
    dataset_sha256,
    env_name,
    expires_in,
    mint_ticket,
    ticket_problem,
)
from computenet.agent.endpoint import DataEndpoint
from computenet.agent.staging import (
    StagingCancelled,
    StagingError,
    link_rate_bytes_s,
    source_url,
    stage_inputs,
)
from computenet.protocol import StagingInput, StagingSource

KEY = "source-secret"


def test_a_ticket_opens_its_dataset_until_it_expires() -> None:
    ticket = mint_ticket(KEY, "corpus", 1_000)
    assert ticket_problem(KEY, "corpus", ticket, now=999) is None
    assert ticket_problem(KEY, "corpus", ticket, now=1_001) == "ticket expired"


@pytest.mark.parametrize(
    ("key", "dataset", "ticket", "why"),
    [
        ("other-key", "corpus", mint_ticket(KEY, "corpus", 5_000), "signature"),
        (KEY, "weights", mint_ticket(KEY, "corpus", 5_000), "signature"),
        (KEY, "corpus", "5000.00ff", "signature"),
        (KEY, "corpus", "never", "malformed"),
        (KEY, "corpus", "", "malformed"),
        (KEY, "corpus", "soon." + "0" * 64, "malformed"),
    ],
)
def test_a_wrong_ticket_is_refused_with_the_reason(
    key: str, dataset: str, ticket: str, why: str
) -> None:
    assert why in (ticket_problem(key, dataset, ticket, now=1_000) or "")


def test_the_ticket_is_the_documented_hmac() -> None:
    import hmac

    digest = hmac.new(b"k", b"d:42", hashlib.sha256).hexdigest()
    assert mint_ticket("k", "d", 42) == f"42.{digest}"


def test_input_env_names_are_upper_case_with_underscores() -> None:
    assert env_name("imagenet-1k.v2") == "CNET_INPUT_IMAGENET_1K_V2"


def test_a_created_replica_has_the_checksum_it_reports(tmp_path: Path) -> None:
    replica = create_replica(tmp_path, "corpus", 300_000, path="sub/corpus.bin")
    assert replica.path == "sub/corpus.bin"
    assert (tmp_path / "sub/corpus.bin").stat().st_size == 300_000
    assert dataset_sha256(tmp_path / "sub/corpus.bin") == replica.sha256
    assert DataRoot(tmp_path).resolve("corpus") == (tmp_path / "sub/corpus.bin").resolve()
    again = create_replica(tmp_path / "other", "corpus", 300_000)
    assert again.sha256 == replica.sha256  # deterministic content


def test_a_replica_path_cannot_leave_the_data_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        create_replica(tmp_path, "x", 10, path="../escape")
    assert DataRoot(tmp_path).inside("../../etc/passwd") is None


# ------------------------------------------------------------------- endpoint


@pytest.fixture
def source(tmp_path: Path) -> Iterator[DataEndpoint]:
    endpoint = DataEndpoint(DataRoot(tmp_path / "src")).start()
    yield endpoint
    endpoint.stop()


def _get(endpoint: DataEndpoint, dataset: str, ticket: str) -> httpx.Response:
    return httpx.get(f"{endpoint.url}/data/{dataset}", params={"ticket": ticket}, timeout=10)


def test_endpoint_binds_localhost_on_a_free_port(source: DataEndpoint) -> None:
    assert source.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{source.url}/healthz").json() == {"status": "ok"}


def test_endpoint_refuses_everything_until_it_knows_its_key(source: DataEndpoint) -> None:
    create_replica(source.data_root.root, "corpus", 1000)
    resp = _get(source, "corpus", mint_ticket(KEY, "corpus", expires_in(60)))
    assert resp.status_code == 503


def test_endpoint_serves_a_replica_for_a_good_ticket(source: DataEndpoint) -> None:
    source.data_key = KEY
    replica = create_replica(source.data_root.root, "corpus", 100_000)
    resp = _get(source, "corpus", mint_ticket(KEY, "corpus", expires_in(60)))
    assert resp.status_code == 200
    assert hashlib.sha256(resp.content).hexdigest() == replica.sha256


def test_endpoint_serves_a_file_at_the_registered_path_only_with_a_ticket_for_it(
    source: DataEndpoint,
) -> None:
    """A dataset registered through the API at any path is found by the path in the URL."""
    source.data_key = KEY
    root = source.data_root.root
    (root / "lake").mkdir(parents=True)
    body = b"rows\n" * 1000
    (root / "lake" / "part-0.csv").write_bytes(body)
    (root / "secret.txt").write_text("not yours")
    good = mint_ticket(KEY, "corpus:lake/part-0.csv", expires_in(60))
    url = f"{source.url}/data/corpus"
    resp = httpx.get(url, params={"path": "lake/part-0.csv", "ticket": good}, timeout=10)
    assert resp.status_code == 200 and resp.content == body
    # The same ticket does not open another file, nor does a dataset-only ticket.
    other = httpx.get(url, params={"path": "secret.txt", "ticket": good}, timeout=10)
    assert other.status_code == 403
    bare = mint_ticket(KEY, "corpus", expires_in(60))
    resp = httpx.get(url, params={"path": "secret.txt", "ticket": bare}, timeout=10)
    assert resp.status_code == 403
    escape = mint_ticket(KEY, "corpus:../outside", expires_in(60))
    resp = httpx.get(url, params={"path": "../outside", "ticket": escape}, timeout=10)
    assert resp.status_code == 404


@pytest.mark.parametrize(
    "ticket",
    [
        mint_ticket(KEY, "corpus", int(time.time()) - 5),  # expired
        mint_ticket("another-center", "corpus", expires_in(60)),  # minted for another source
        mint_ticket(KEY, "weights", expires_in(60)),  # for another dataset
        "garbage",
    ],
)
def test_endpoint_refuses_bad_tickets_with_403(source: DataEndpoint, ticket: str) -> None:
    source.data_key = KEY
    create_replica(source.data_root.root, "corpus", 1000)
    resp = _get(source, "corpus", ticket)
    assert resp.status_code == 403
    assert resp.json()["field"] == "ticket"


def test_endpoint_answers_404_for_a_dataset_it_does_not_hold(source: DataEndpoint) -> None:
    source.data_key = KEY
    resp = _get(source, "absent", mint_ticket(KEY, "absent", expires_in(60)))
    assert resp.status_code == 404
    assert "absent" in resp.json()["error"]


# -------------------------------------------------------------------- staging


@pytest.fixture
def two_sources(tmp_path: Path) -> Iterator[tuple[DataEndpoint, DataEndpoint]]:
    a = DataEndpoint(DataRoot(tmp_path / "a")).start()
    b = DataEndpoint(DataRoot(tmp_path / "b")).start()
    a.data_key, b.data_key = "key-a", "key-b"
    yield a, b
    a.stop()
    b.stop()


def _source(endpoint: DataEndpoint, center: str, dataset: str, gbps: float = 10) -> StagingSource:
    assert endpoint.data_key is not None
    return StagingSource(
        center=center,
        url=endpoint.url,
        ticket=mint_ticket(endpoint.data_key, dataset, expires_in(60)),
        bandwidth_gbps=gbps,
        latency_ms=5,
    )


def _input(replica_sha: str, size: int, *sources: StagingSource) -> StagingInput:
    return StagingInput(
        dataset="corpus", sha256=replica_sha, size_bytes=size, sources=list(sources)
    )


def test_staging_fetches_verifies_and_records_a_replica(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, _ = two_sources
    replica = create_replica(a.data_root.root, "corpus", 250_000)
    dest = DataRoot(tmp_path / "dest")
    with httpx.Client() as client:
        result = stage_inputs(
            [_input(replica.sha256, replica.size_bytes, _source(a, "shanghai", "corpus"))],
            dest,
            client,
        )
    staged = Path(result.paths["corpus"])
    assert dataset_sha256(staged) == replica.sha256
    assert staged.is_relative_to(dest.root)
    assert (result.bytes_staged, result.staged_from) == (250_000, "shanghai")
    assert [(r.dataset, r.path, r.sha256) for r in result.new_replicas] == [
        ("corpus", "corpus", replica.sha256)
    ]
    assert dest.resolve("corpus") == staged
    assert not any(dest.staging_dir().iterdir())  # no partial files left


def test_a_corrupted_replica_is_rejected_and_the_next_source_used(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, b = two_sources
    good = create_replica(b.data_root.root, "corpus", 100_000)
    bad = create_replica(a.data_root.root, "corpus", 100_000)
    path = a.data_root.root / bad.path
    data = bytearray(path.read_bytes())
    data[500] ^= 0xFF  # one flipped byte: same size, wrong checksum
    path.write_bytes(bytes(data))
    dest = DataRoot(tmp_path / "dest")
    with httpx.Client() as client:
        result = stage_inputs(
            [
                _input(
                    good.sha256, 100_000, _source(a, "near", "corpus"), _source(b, "far", "corpus")
                )
            ],
            dest,
            client,
        )
    assert result.staged_from == "far"
    assert dataset_sha256(result.paths["corpus"]) == good.sha256


def test_staging_fails_with_every_reason_when_no_source_verifies(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, b = two_sources
    create_replica(a.data_root.root, "corpus", 1000, seed="other content")
    bad_ticket = _source(b, "far", "corpus").model_copy(update={"ticket": "1.00"})
    dest = DataRoot(tmp_path / "dest")
    with httpx.Client() as client, pytest.raises(StagingError) as err:
        stage_inputs(
            [_input("0" * 64, 1000, _source(a, "near", "corpus"), bad_ticket)], dest, client
        )
    assert "near: sha256" in err.value.message
    assert "far: HTTP 403" in err.value.message
    assert dest.resolve("corpus") is None


def test_a_source_that_is_down_is_skipped(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, _ = two_sources
    replica = create_replica(a.data_root.root, "corpus", 1000)
    dead = StagingSource(
        center="dead", url="http://127.0.0.1:9", ticket="1.0", bandwidth_gbps=1, latency_ms=1
    )
    with httpx.Client() as client:
        result = stage_inputs(
            [_input(replica.sha256, 1000, dead, _source(a, "alive", "corpus"))],
            DataRoot(tmp_path / "dest"),
            client,
        )
    assert result.staged_from == "alive"


def test_an_input_already_here_is_not_fetched(tmp_path: Path) -> None:
    root = DataRoot(tmp_path)
    replica = create_replica(tmp_path, "corpus", 1000, path="datasets/c.bin")
    item = StagingInput(
        dataset="corpus", sha256=replica.sha256, size_bytes=1000, local_path="datasets/c.bin"
    )
    with httpx.Client() as client:
        result = stage_inputs([item], root, client)
    assert result.paths["corpus"] == str(tmp_path.resolve() / "datasets/c.bin")
    assert (result.bytes_staged, result.new_replicas) == (0, [])


def test_an_input_with_no_replica_anywhere_fails_staging(tmp_path: Path) -> None:
    item = StagingInput(dataset="corpus", sha256="0" * 64, size_bytes=10)
    with httpx.Client() as client, pytest.raises(StagingError) as err:
        stage_inputs([item], DataRoot(tmp_path), client)
    assert err.value.field == "inputs"


def test_a_throttled_fetch_stops_when_cancelled(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, _ = two_sources
    replica = create_replica(a.data_root.root, "corpus", 1_000_000)
    slow = _source(a, "slow", "corpus", gbps=8e-6)  # 1 kB/s: would take 1000 s
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with httpx.Client() as client, pytest.raises(StagingCancelled):
        stage_inputs(
            [_input(replica.sha256, 1_000_000, slow)],
            DataRoot(tmp_path / "d"),
            client,
            cancel=cancel,
        )


def test_link_rate_scales_with_time_and_data() -> None:
    # 1 Gb/s = 125 MB/s of network bytes; 600x time, each real byte stands for 2000.
    assert link_rate_bytes_s(1.0, 600, 2000) == pytest.approx(125e6 * 600 / 2000)
    assert link_rate_bytes_s(0, 1, 1) is None


def test_source_url_accepts_a_base_url_or_a_full_one() -> None:
    base = StagingSource(center="a", url="http://h:1/", ticket="t", bandwidth_gbps=1, latency_ms=1)
    assert source_url(base, "d") == "http://h:1/data/d"
    full = base.model_copy(update={"url": "http://h:1/data/d"})
    assert source_url(full, "d") == "http://h:1/data/d"
