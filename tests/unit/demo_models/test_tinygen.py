"""tinygen answers OpenAI-shaped JSON and server-sent event streams with matching token counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from computenet.demo_models import tinygen
from tests.helpers.processes import free_port, wait_http


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    # Fast (10,000 tokens/s) so that the tests take no time; two slots.
    server = tinygen.serve("127.0.0.1", 0, tinygen.Model(10_000, 2, "H100"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]


def test_completion_json_has_the_openai_shape_and_usage(url: str) -> None:
    prompt = "the gateway sends each request"
    r = httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 7})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    got = r.json()
    assert got["object"] == "text_completion" and got["model"] == "tinygen"
    (choice,) = got["choices"]
    assert choice["finish_reason"] == "length"
    assert len(choice["text"].split()) == 7
    assert got["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    # The same prompt gives the same text (the chain is seeded by the prompt).
    again = httpx.post(f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 7}).json()
    assert again["choices"][0]["text"] == choice["text"]


def test_chat_completion_json_counts_every_message(url: str) -> None:
    msgs = [{"role": "system", "content": "be short"}, {"role": "user", "content": "hi there"}]
    got = httpx.post(f"{url}/v1/chat/completions", json={"messages": msgs, "max_tokens": 3}).json()
    assert got["object"] == "chat.completion"
    message = got["choices"][0]["message"]
    assert message["role"] == "assistant" and len(message["content"].split()) == 3
    assert got["usage"]["prompt_tokens"] == 4 and got["usage"]["completion_tokens"] == 3


def test_completion_stream_sends_one_event_per_token_then_usage_and_done(url: str) -> None:
    with httpx.stream(
        "POST", f"{url}/v1/completions", json={"prompt": "a b", "max_tokens": 9, "stream": True}
    ) as r:
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["transfer-encoding"] == "chunked"
        data = events(r.read().decode())
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    tokens = [c["choices"][0]["text"] for c in chunks if c["choices"][0]["text"]]
    assert len(tokens) == 9
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 9, "total_tokens": 11}
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1


def test_chat_stream_starts_with_the_role_and_sends_deltas(url: str) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "stream": True}
    r = httpx.post(f"{url}/v1/chat/completions", json=body)
    data = events(r.text)
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert len(text) == 4 and all(text)
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", b"not json", "body"),
        ("/v1/completions", b'{"prompt": 3}', "prompt"),
        ("/v1/completions", b'{"max_tokens": 0}', "max_tokens"),
        ("/v1/completions", b'{"max_tokens": 5000}', "max_tokens"),
        ("/v1/completions", b'{"stream": "yes"}', "stream"),
        ("/v1/chat/completions", b'{"messages": "hi"}', "messages"),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(
    url: str, path: str, body: bytes, param: str
) -> None:
    r = httpx.post(f"{url}{path}", content=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


def test_readiness_models_and_unknown_paths(url: str) -> None:
    assert httpx.get(f"{url}/healthz").json()["chip"] == "H100"
    assert httpx.get(f"{url}/").status_code == 200
    assert httpx.get(f"{url}/v1/models").json()["data"][0]["id"] == "tinygen"
    assert httpx.get(f"{url}/nope").status_code == 404
    assert httpx.post(f"{url}/v1/embeddings", json={}).status_code == 404


def test_speed_follows_the_chip() -> None:
    assert tinygen.Model(50, 1, "H100").tokens_per_s == 100
    assert tinygen.Model(50, 1, "A100").tokens_per_s == 50
    assert tinygen.Model(50, 1, "unknown-chip").tokens_per_s == 50


def test_runs_as_a_script_on_the_standard_library_alone(tmp_path: Path) -> None:
    # -S -I: no site-packages, no user site: what a job running as its own uid may have.
    port = free_port()
    env = {"PORT": str(port), "PATH": os.environ.get("PATH", "")}
    script = Path(tinygen.__file__)
    log = tmp_path / "tinygen.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-S", "-I", str(script)], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc, log=log)
        got = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"max_tokens": 2})
        assert got.json()["usage"]["completion_tokens"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
