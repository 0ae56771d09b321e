"""Several control-plane URLs: parsing them, and failing over between replicas."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from computenet.agent.client import CenterClient, ServerUnavailable
from computenet.errors import ComputeNetError, NotFoundError, ValidationError
from computenet.protocol.failover import RETRY_SAFE, FailoverTransport, parse_urls
from computenet.sdk import Client
from computenet.sdk.config import resolve


class Replicas:
    """Fake replicas by host: 'up', 'refuse', 'busy' (503), 'drop' (breaks), 'hang' (timeout)."""

    def __init__(self, **modes: str) -> None:
        self.modes = modes
        self.seen: list[tuple[str, str, str]] = []  # (host, method, path)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.seen.append((host, request.method, request.url.path))
        mode = self.modes[host]
        if mode == "refuse":
            raise httpx.ConnectError("connection refused", request=request)
        if mode == "drop":
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        if mode == "hang":
            raise httpx.ReadTimeout("timed out", request=request)
        if mode == "busy":
            return httpx.Response(503, json={"error": "the database is busy"})
        if request.url.path.endswith("/missing"):
            return httpx.Response(404, json={"error": "no such job", "field": "job_id"})
        assert request.headers["host"] == request.url.netloc.decode()
        return httpx.Response(200, json={"host": host, "path": request.url.path})

    def hosts(self) -> list[str]:
        """Hosts in the order they were asked."""
        return [h for h, _, _ in self.seen]


def _client(replicas: Replicas, *hosts: str) -> httpx.Client:
    urls = [f"http://{h}:8080" for h in hosts]
    t = FailoverTransport(urls, httpx.MockTransport(replicas))
    return httpx.Client(base_url=urls[0], transport=t, timeout=5)


def test_urls_are_read_from_commas_and_lists_and_checked() -> None:
    assert parse_urls("http://a:1, http://b:2/") == ("http://a:1", "http://b:2")
    assert parse_urls(["http://a:1", "http://b:2,http://a:1"]) == ("http://a:1", "http://b:2")
    with pytest.raises(ValidationError) as bad:
        parse_urls("http://a:1,ftp://b", field="server")
    assert bad.value.field == "server" and "ftp://b" in bad.value.message
    with pytest.raises(ValidationError):
        parse_urls(" , ")


def test_a_refusing_or_busy_replica_is_skipped_and_the_working_one_kept() -> None:
    reps = Replicas(a="refuse", b="busy", c="up")
    with _client(reps, "a", "b", "c") as http:
        assert http.post("/api/v1/jobs", json={}).json()["host"] == "c"
        assert http.get("/api/v1/jobs").json()["host"] == "c"
    assert reps.hosts() == ["a", "b", "c", "c"]


def test_a_4xx_is_an_answer_not_a_reason_to_fail_over() -> None:
    reps = Replicas(a="up", b="up")
    with _client(reps, "a", "b") as http:
        assert http.get("/api/v1/jobs/missing").status_code == 404
    assert reps.hosts() == ["a"]


def test_a_post_cut_off_after_sending_is_not_sent_twice_unless_marked_safe() -> None:
    reps = Replicas(a="drop", b="up")
    with _client(reps, "a", "b") as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/center/v1/lease", json={})
        # The next call goes to the next replica.
        assert http.post("/center/v1/lease", json={}).json()["host"] == "b"
    reps2 = Replicas(a="drop", b="up")
    with _client(reps2, "a", "b") as http:
        r = http.post("/api/v1/jobs", json={}, extensions={RETRY_SAFE: True})
        assert r.json()["host"] == "b"
        assert http.get("/healthz").json()["host"] == "b"
    assert reps2.hosts() == ["a", "b", "b"]


def test_when_every_replica_is_busy_the_caller_sees_the_503() -> None:
    reps = Replicas(a="busy", b="busy")
    with _client(reps, "a", "b") as http:
        r = http.get("/api/v1/jobs")
    assert r.status_code == 503 and reps.hosts() == ["a", "b"]


def test_a_path_prefix_on_the_urls_is_kept() -> None:
    reps = Replicas(a="refuse", b="up")
    urls = ["http://a:1/cn", "http://b:2/other"]
    t = FailoverTransport(urls, httpx.MockTransport(reps))
    with httpx.Client(base_url=urls[0], transport=t) as http:
        assert http.get("/api/v1/jobs").json()["path"] == "/other/api/v1/jobs"


def test_the_sdk_fails_over_and_keeps_4xx_errors() -> None:
    reps = Replicas(a="refuse", b="up")
    with Client("http://a:8080,http://b:8080", "tok", transport=httpx.MockTransport(reps)) as cn:
        assert cn.health()
        assert cn.url == "http://b:8080"
        with pytest.raises(NotFoundError):
            cn._request("GET", "/api/v1/jobs/missing")


def test_the_sdk_submit_always_carries_an_idempotency_key_so_a_retry_is_safe() -> None:
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if request.url.host == "a":
            raise httpx.ReadError("connection reset", request=request)
        # Any answer will do: what matters is what the retry carried.
        return httpx.Response(422, json={"error": "refused", "field": "spec.name"})

    cn = Client(["http://a:1", "http://b:1"], "tok", transport=httpx.MockTransport(handler))
    with cn, pytest.raises(ValidationError):
        cn.submit({"class": "inference", "command": "true", "work": {"cu_hours": 0.1}})
    assert len(bodies) == 2
    assert bodies[0]["idempotency_key"] == bodies[1]["idempotency_key"]
    assert str(bodies[0]["idempotency_key"]).startswith("sdk-")


def test_the_agent_client_fails_over_and_says_unavailable_when_all_are_down() -> None:
    reps = Replicas(a="refuse", b="refuse")
    client = CenterClient("http://a:1,http://b:1", "tok", "c1", transport=httpx.MockTransport(reps))
    with pytest.raises(ServerUnavailable):
        client.get_json("/api/v1/centers")
    reps.modes["b"] = "up"
    assert client.get_json("/api/v1/centers")["host"] == "b"
    assert client.server_url == "http://b:1"
    client.close()


def test_client_config_takes_several_urls_from_options_env_or_file(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"url": ["http://a:1", "http://b:1"], "token": "t"}))
    assert resolve(env={}, path=cfg).urls == ("http://a:1", "http://b:1")
    env = {"CNET_URL": "http://c:1,http://d:1"}
    got = resolve(env=env, path=cfg)
    assert got.urls == ("http://c:1", "http://d:1") and got.url == "http://c:1"
    assert resolve("http://e:1", env=env, path=cfg).urls == ("http://e:1",)
    cfg.write_text(json.dumps({"url": ["nope"]}))
    with pytest.raises(ValidationError) as bad:
        resolve(env={}, path=cfg)
    assert bad.value.field is not None and "url" in bad.value.field


def test_the_sdk_tries_the_next_replica_when_one_never_answers_a_safe_call() -> None:
    reps = Replicas(a="hang", b="up")
    with Client("http://a:1,http://b:1", "tok", transport=httpx.MockTransport(reps)) as cn:
        cn._request("GET", "/api/v1/whoami")
        assert cn.url == "http://b:1"
    assert reps.hosts() == ["a", "b"]
    # A call that is not safe to repeat is not repeated: the caller hears of the timeout.
    reps2 = Replicas(a="hang", b="up")
    with Client("http://a:1,http://b:1", "tok", transport=httpx.MockTransport(reps2)) as cn:
        with pytest.raises(ComputeNetError) as err:
            cn._request("POST", "/api/v1/jobs/j-1/cancel")
        assert err.value.field == "url" and "http://a:1" in err.value.message
    assert reps2.hosts() == ["a"]


def test_each_replica_gets_a_share_of_the_call_timeout() -> None:
    given: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        given.append(float(request.extensions["timeout"]["read"]))
        if request.url.host != "c":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={})

    urls = ["http://a:1", "http://b:1", "http://c:1"]
    t = FailoverTransport(urls, httpx.MockTransport(handler))
    with httpx.Client(base_url=urls[0], transport=t, timeout=9.0) as http:
        assert http.get("/healthz").status_code == 200
    # The mock fails at once, so each try gets a share of nearly all 9 s: 1/3, 1/2, all.
    assert given == pytest.approx([3.0, 4.5, 9.0], abs=0.1)


def test_a_replica_that_just_failed_no_longer_takes_a_share_of_each_call() -> None:
    given: list[tuple[str, float]] = []
    hung = {"a"}

    def handler(request: httpx.Request) -> httpx.Response:
        given.append((request.url.host, float(request.extensions["timeout"]["read"])))
        if request.url.host in hung:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={})

    urls = ["http://a:1", "http://b:1", "http://c:1"]
    t = FailoverTransport(urls, httpx.MockTransport(handler))
    with httpx.Client(base_url=urls[0], transport=t, timeout=9.0) as http:
        http.get("/healthz")  # a hangs (a third of the time), b answers
        hung.add("b")
        http.get("/healthz")  # b and c share the time; the hung a comes last
    assert [h for h, _ in given] == ["a", "b", "b", "c"]
    assert given[2][1] == pytest.approx(4.5, abs=0.1)
