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
)
from computenet.agent.endpoint import DataEndpoint
from computenet.agent.staging import (
    StagingCancelled,
    StagingError,
    link_rate_bytes_s,
    local_replica,
    source_url,
    stage_inputs,
)
from computenet.protocol import StagingInput, StagingSource
from computenet.protocol.tickets import (
    CENTER_HEADER,
    TICKET_HEADER,
    mint_ticket,
    ticket_problem,
)

KEY = "source-secret"
HERE = "west"  # the fetching center in these tests


def _ticket(
    dataset: str = "corpus",
    path: str = "corpus",
    center: str = HERE,
    expires: int | None = None,
    key: str = KEY,
    version: int = 1,
) -> str:
    return mint_ticket(
        key,
        dataset=dataset,
        path=path,
        center=center,
        expires_unix=expires if expires is not None else expires_in(60),
        key_version=version,
    )


def _problem(ticket: str, **over: object) -> str | None:
    args: dict[str, object] = {
        "dataset": "corpus",
        "path": "corpus",
        "center": HERE,
        "now_unix": 1_000,
        "key_version": 1,
    }
    args.update(over)
    key = str(args.pop("key", KEY))
    return ticket_problem(key, ticket, **args)  # type: ignore[arg-type]


def test_a_ticket_opens_its_dataset_until_it_expires() -> None:
    ticket = _ticket(expires=1_000)
    assert _problem(ticket, now_unix=999) is None
    assert _problem(ticket, now_unix=1_001) == "ticket expired"


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"key": "other-key"}, "does not match"),
        ({"dataset": "weights"}, "does not match"),
        ({"path": "tenants/b/corpus"}, "does not match"),
        ({"center": "east"}, "does not match"),  # minted for west, used by east
        ({"key_version": 2}, "version 1"),  # the source's key was rotated since
    ],
)
def test_a_ticket_is_bound_to_dataset_path_center_and_key(
    over: dict[str, object], why: str
) -> None:
    assert why in (_problem(_ticket(expires=5_000), **over) or "")


@pytest.mark.parametrize(
    "ticket",
    [
        "never",
        "",
        "5000.00ff",
        "v1.1.soon." + "0" * 64,
        "v1.x.1.ab",
        "v1.1.9999999999.é0",
        "v1.1.1.zz",
    ],
)
def test_a_malformed_ticket_is_refused(ticket: str) -> None:
    assert "malformed" in (_problem(ticket) or "")


def test_the_ticket_is_the_documented_hmac() -> None:
    import hmac

    msg = b'["cnet-ticket-v1","d","tenants/t/d","west",42,3]'
    digest = hmac.new(b"k", msg, hashlib.sha256).hexdigest()
    got = mint_ticket(
        "k", dataset="d", path="tenants/t/d", center="west", expires_unix=42, key_version=3
    )
    assert got == f"v1.3.42.{digest}"


def test_the_test_vector_of_the_protocol_doc_holds() -> None:
    """docs/center-protocol.md: the message is ASCII-escaped JSON, the key its hex text."""
    got = mint_ticket(
        "3f" * 32,
        dataset="corpus",
        path="tenants/acme/输入/x.bin",
        center="west",
        expires_unix=1790000300,
        key_version=1,
    )
    assert got == "v1.1.1790000300.c24ead0f94c5fd26a4d0572dd0383e5c0ad877b7d49e781b9d93fb545fe21712"


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


def _get(
    endpoint: DataEndpoint,
    dataset: str,
    ticket: str,
    path: str = "corpus",
    center: str = HERE,
) -> httpx.Response:
    return httpx.get(
        f"{endpoint.url}/data/{dataset}",
        params={"path": path},
        headers={TICKET_HEADER: ticket, CENTER_HEADER: center},
        timeout=10,
    )


def test_endpoint_binds_localhost_on_a_free_port(source: DataEndpoint) -> None:
    assert source.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{source.url}/healthz").json() == {"status": "ok"}


def test_endpoint_refuses_everything_until_it_knows_its_key(source: DataEndpoint) -> None:
    create_replica(source.data_root.root, "corpus", 1000)
    resp = _get(source, "corpus", _ticket())
    assert resp.status_code == 503


def test_endpoint_serves_a_replica_for_a_good_ticket(source: DataEndpoint) -> None:
    source.data_key = KEY
    replica = create_replica(source.data_root.root, "corpus", 100_000)
    resp = _get(source, "corpus", _ticket())
    assert resp.status_code == 200
    assert hashlib.sha256(resp.content).hexdigest() == replica.sha256


def test_endpoint_serves_only_the_path_its_ticket_names(source: DataEndpoint) -> None:
    source.data_key = KEY
    root = source.data_root.root
    (root / "tenants/a/lake").mkdir(parents=True)
    body = b"rows\n" * 1000
    (root / "tenants/a/lake/part-0.csv").write_bytes(body)
    (root / "secret.txt").write_text("not yours")
    good = _ticket(path="tenants/a/lake/part-0.csv")
    resp = _get(source, "corpus", good, path="tenants/a/lake/part-0.csv")
    assert resp.status_code == 200 and resp.content == body
    # The same ticket does not open another file.
    assert _get(source, "corpus", good, path="secret.txt").status_code == 403
    # A ticket for a path outside the root, or naming the agent's own files, opens nothing.
    for bad in ("../outside", "/etc/passwd", ".cnet-index.json", "tenants/a/../../secret.txt"):
        resp = _get(source, "corpus", _ticket(path=bad), path=bad)
        assert resp.status_code == 404, bad


def test_a_ticket_in_the_url_is_ignored(source: DataEndpoint) -> None:
    source.data_key = KEY
    create_replica(source.data_root.root, "corpus", 1000)
    resp = httpx.get(
        f"{source.url}/data/corpus",
        params={"path": "corpus", "ticket": _ticket()},
        headers={CENTER_HEADER: HERE},
        timeout=10,
    )
    assert resp.status_code == 403
    assert TICKET_HEADER in resp.json()["error"]


@pytest.mark.parametrize(
    ("ticket", "center"),
    [
        (_ticket(expires=int(time.time()) - 5), HERE),  # expired
        (_ticket(key="another-center"), HERE),  # minted for another source
        (_ticket(dataset="weights"), HERE),  # for another dataset
        (_ticket(center="east"), HERE),  # for another fetching center
        (_ticket(), "east"),  # west's ticket used by east
        ("garbage", HERE),
    ],
)
def test_endpoint_refuses_bad_tickets_with_403(
    source: DataEndpoint, ticket: str, center: str
) -> None:
    source.data_key = KEY
    create_replica(source.data_root.root, "corpus", 1000)
    resp = _get(source, "corpus", ticket, center=center)
    assert resp.status_code == 403
    assert resp.json()["field"] == "ticket"


def test_after_a_key_rotation_old_tickets_fail_and_new_ones_wait_for_the_key(
    source: DataEndpoint,
) -> None:
    source.data_key = KEY
    create_replica(source.data_root.root, "corpus", 1000)
    old = _ticket()
    new = _ticket(key="rotated", version=2)
    busy = _get(source, "corpus", new)  # the agent has not picked up version 2 yet
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    source.data_key, source.data_key_version = "rotated", 2
    assert _get(source, "corpus", old).status_code == 403
    assert _get(source, "corpus", new).status_code == 200


def test_endpoint_answers_404_for_a_dataset_it_does_not_hold(source: DataEndpoint) -> None:
    source.data_key = KEY
    resp = _get(source, "absent", _ticket(dataset="absent", path="absent"), path="absent")
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


def _source(
    endpoint: DataEndpoint,
    center: str,
    dataset: str,
    gbps: float = 10,
    path: str = "corpus",
    version: int = 1,
    key: str | None = None,
) -> StagingSource:
    assert endpoint.data_key is not None
    return StagingSource(
        center=center,
        url=f"{endpoint.url}/data/{dataset}?path={path}",
        ticket=_ticket(dataset, path, HERE, key=key or endpoint.data_key, version=version),
        bandwidth_gbps=gbps,
        latency_ms=5,
    )


DEST = "tenants/t/corpus"


def _input(replica_sha: str, size: int, *sources: StagingSource) -> StagingInput:
    return StagingInput(
        dataset="corpus", sha256=replica_sha, size_bytes=size, sources=list(sources), dest_path=DEST
    )


def _client() -> httpx.Client:
    return httpx.Client(headers={CENTER_HEADER: HERE})


def test_staging_fetches_verifies_and_records_a_replica(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, _ = two_sources
    replica = create_replica(a.data_root.root, "corpus", 250_000)
    dest = DataRoot(tmp_path / "dest")
    with _client() as client:
        result = stage_inputs(
            [_input(replica.sha256, replica.size_bytes, _source(a, "shanghai", "corpus"))],
            dest,
            client,
        )
    staged = Path(result.paths["corpus"])
    assert dataset_sha256(staged) == replica.sha256
    assert staged.is_relative_to(dest.root)
    assert (result.bytes_staged, result.staged_from) == (250_000, "shanghai")
    assert result.bytes_from == {"shanghai": 250_000}
    assert [(r.dataset, r.path, r.sha256) for r in result.new_replicas] == [
        ("corpus", DEST, replica.sha256)
    ]
    assert staged == dest.root / DEST  # in the tenant's area the control plane chose
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
    with _client() as client:
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
    bad_ticket = _source(b, "far", "corpus").model_copy(update={"ticket": "v1.1.1.00"})
    dest = DataRoot(tmp_path / "dest")
    with _client() as client, pytest.raises(StagingError) as err:
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
    with _client() as client:
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
    with _client() as client:
        result = stage_inputs([item], root, client)
    assert result.paths["corpus"] == str(tmp_path.resolve() / "datasets/c.bin")
    assert (result.bytes_staged, result.new_replicas) == (0, [])


def test_an_input_with_no_replica_anywhere_fails_staging(tmp_path: Path) -> None:
    item = StagingInput(dataset="corpus", sha256="0" * 64, size_bytes=10)
    with _client() as client, pytest.raises(StagingError) as err:
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
    with _client() as client, pytest.raises(StagingCancelled):
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


def test_a_local_replica_is_used_only_when_its_sha256_matches(tmp_path: Path) -> None:
    """Same size is not enough: a corrupted (or someone else's) file is never read by a job."""
    root = DataRoot(tmp_path)
    replica = create_replica(tmp_path, "corpus", 5000, path="tenants/t/corpus")
    item = StagingInput(
        dataset="corpus", sha256=replica.sha256, size_bytes=5000, local_path="tenants/t/corpus"
    )
    assert local_replica(item, root) == tmp_path.resolve() / "tenants/t/corpus"
    f = tmp_path / "tenants/t/corpus"
    data = bytearray(f.read_bytes())
    data[10] ^= 0xFF
    f.write_bytes(bytes(data))
    assert local_replica(item, root) is None
    with _client() as client, pytest.raises(StagingError) as err:
        stage_inputs([item], root, client)
    assert err.value.field == "inputs"


def test_a_verified_file_is_not_hashed_again_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import computenet.agent.data as data_mod

    root = DataRoot(tmp_path)
    replica = create_replica(tmp_path, "corpus", 5000, path="tenants/t/c")
    calls: list[Path] = []
    real = data_mod.dataset_sha256

    def counting(path: str | Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(data_mod, "dataset_sha256", counting)
    f = tmp_path / "tenants/t/c"
    for _ in range(3):
        assert root.verified(f, replica.sha256)
    assert len(calls) == 1
    f.write_bytes(f.read_bytes()[::-1])  # new content, new mtime
    assert not root.verified(f, replica.sha256)
    assert len(calls) == 2


class _Canned:
    """A tiny HTTP server answering every GET with one canned response (a hostile center)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canned.hits += 1
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.hits = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_redirecting_source_is_not_followed(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, _ = two_sources
    replica = create_replica(a.data_root.root, "corpus", 1000)
    target = f"{a.url}/data/corpus?path=corpus"
    redirector = _Canned(302, {"Location": target}, b"")
    try:
        src = _source(a, "sly", "corpus").model_copy(
            update={"url": f"{redirector.url}/data/corpus?path=corpus"}
        )
        with _client() as client, pytest.raises(StagingError) as err:
            stage_inputs([_input(replica.sha256, 1000, src)], DataRoot(tmp_path / "d"), client)
    finally:
        redirector.close()
    assert "sly: HTTP 302" in err.value.message
    assert a.served == 0  # the redirect's target was never asked


def test_a_sources_error_text_is_not_echoed_into_the_job(tmp_path: Path) -> None:
    hostile = _Canned(
        500,
        {"Content-Type": "application/json"},
        b'{"error": "click http://evil.example/ SECRET /home/a/tenants/x"}',
    )
    try:
        src = StagingSource(
            center="evil",
            url=f"{hostile.url}/data/corpus",
            ticket="t",
            bandwidth_gbps=1,
            latency_ms=1,
        )
        with _client() as client, pytest.raises(StagingError) as err:
            stage_inputs([_input("0" * 64, 10, src)], DataRoot(tmp_path), client)
    finally:
        hostile.close()
    assert "evil: HTTP 500" in err.value.message
    assert "SECRET" not in err.value.message and "evil.example" not in err.value.message


def test_staging_waits_for_a_source_to_pick_up_its_rotated_key(
    two_sources: tuple[DataEndpoint, DataEndpoint], tmp_path: Path
) -> None:
    a, _ = two_sources
    replica = create_replica(a.data_root.root, "corpus", 1000)
    src = _source(a, "rotating", "corpus", key="key-a-2", version=2)

    def pick_up() -> None:
        a.data_key_version, a.data_key = 2, "key-a-2"

    threading.Timer(0.5, pick_up).start()
    with _client() as client:
        result = stage_inputs([_input(replica.sha256, 1000, src)], DataRoot(tmp_path / "d"), client)
    assert result.staged_from == "rotating"
