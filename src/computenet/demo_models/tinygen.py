"""tinygen: a tiny text generator with an OpenAI-compatible API (standard library only).

A word-bigram model trained at start on a short text written for it (below).
It answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` with
``"stream": true`` (server-sent events, chunked) or one JSON answer, both with
``usage`` token counts (a token is a word), ``GET /v1/models``, and ``GET /``
and ``GET /healthz`` (the readiness probe). It listens on ``$HOST:$PORT``
(127.0.0.1 unless ``HOST`` is set; ``--port`` overrides ``$PORT``) with
``TCP_NODELAY``, so small writes are not held for a delayed ACK.

It behaves like a model on a chip, so that a replica's service time depends on
the tokens and the chip: it decodes ``TINYGEN_TOKENS_PER_S`` tokens per second
(default 50) times the speed of the chip the agent gave it (``$CNET_CHIP``,
`CHIP_SPEED`), reads the prompt 20 times as fast, and runs at most
``TINYGEN_SLOTS`` generations at once (default 4, like a batch); more wait
their turn, so a replica past its capacity answers later, as a real one does.

Run it as ``python3 /path/to/tinygen.py`` (any Python 3.10+; a job running as a
uid of its own may not reach the project's virtual environment) or
``python -m computenet.demo_models.tinygen``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "tinygen"
MAX_TOKENS = 4096
"""The most tokens one request may ask for."""
DEFAULT_MAX_TOKENS = 16
PREFILL_FACTOR = 20.0
"""Prompt tokens are read this many times as fast as tokens are generated."""

# Relative decode speed per chip type (demo figures: about the ratio of peak BF16
# throughput, squeezed, since a small model is bound by memory more than compute).
CHIP_SPEED = {
    "H100": 2.0,
    "H800": 2.0,
    "H200": 2.2,
    "A100": 1.0,
    "Ascend-910B": 1.0,
    "H20": 0.8,
    "MLU370-X8": 0.5,
    "Hygon-DCU": 0.5,
    "CPU-node": 0.25,
}

# The training text: written for this model (no third-party text), a few paragraphs
# about the network it runs on.
CORPUS = """
The network joins computing centers in the east and the west. Power is cheap in the
west at night, and the users are in the east. A job goes where the chips are free and
the power is cheap, unless its data is too large to move. The data moves over the links
when moving it costs less than waiting for it. The scheduler reads the tariff of each
center and the price of each link, and it plans the jobs of the day like a timetable.
A service is a model that answers the users at once. The gateway sends each request to
the replica that will answer best, near the user, not too busy, on cheap power. When
more requests come, the network starts more replicas, and when the requests go away,
the replicas stop, so that the users pay for what they use. When a center is lost, its
replicas come back at another center, and the gateway sends the requests there. The
chips in the west are fast and the power there is green, so the long jobs go west and
the short answers stay near the users. Every hour of every chip is metered, and the
bill says where the work ran, how much power it used and what it cost. The operator of
a center sees the queue, the chips and the tariff, and the users see their jobs, their
services and their bill. A model reads the prompt, then writes one token at a time,
and the time it takes depends on the chip and on how many requests it serves at once.
"""


def _train(text: str) -> tuple[list[str], dict[str, list[str]]]:
    words = re.findall(r"[A-Za-z']+[.,]?", text)
    follows: dict[str, list[str]] = {}
    for a, b in itertools.pairwise(words):
        follows.setdefault(a.lower().strip(".,"), []).append(b)
    return words, follows


WORDS, FOLLOWS = _train(CORPUS)
STARTS = [w for w in WORDS if w[0].isupper()]


def generate(prompt: str, n: int) -> list[str]:
    """`n` tokens (words, each with its leading space) continuing `prompt`, deterministically.

    The bigram chain starts from the prompt's last known word (else a sentence start
    chosen by the prompt's checksum), so the same prompt always gives the same text.
    """
    rng = random.Random(zlib.crc32(prompt.encode("utf-8", "replace")))
    known = [w.lower().strip(".,") for w in prompt.split()]
    word = next((w for w in reversed(known) if w in FOLLOWS), None) or rng.choice(STARTS)
    out = []
    for _ in range(n):
        nxt = FOLLOWS.get(word.lower().strip(".,"))
        word = rng.choice(nxt) if nxt else rng.choice(STARTS)
        out.append(" " + word)
    return out


def count_tokens(text: str) -> int:
    """Tokens in `text` as tinygen counts them: whitespace-separated words."""
    return len(text.split())


class BadRequest(Exception):
    """A request the API refuses (400), naming the parameter."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def parse_request(path: str, body: bytes) -> tuple[bool, str, int, bool]:
    """(chat, prompt text, max_tokens, stream) of an OpenAI-style request; `BadRequest` if bad."""
    try:
        req = json.loads(body or b"{}")
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}", "body") from exc
    if not isinstance(req, dict):
        raise BadRequest("the body must be a JSON object", "body")
    chat = path == "/v1/chat/completions"
    if chat:
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content", ""), str) for m in msgs
        ):
            raise BadRequest("messages must be a list of {role, content} objects", "messages")
        prompt = "\n".join(str(m.get("content", "")) for m in msgs)
    else:
        raw = req.get("prompt", "")
        if isinstance(raw, list) and all(isinstance(p, str) for p in raw):
            raw = "\n".join(raw)
        if not isinstance(raw, str):
            raise BadRequest("prompt must be a string or a list of strings", "prompt")
        prompt = raw
    n = req.get("max_tokens", req.get("max_completion_tokens", DEFAULT_MAX_TOKENS))
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_TOKENS:
        raise BadRequest(f"max_tokens must be an integer from 1 to {MAX_TOKENS}", "max_tokens")
    stream = req.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", "stream")
    return chat, prompt, n, stream


class Model:
    """The generator's speed and its slots (generations at once)."""

    def __init__(self, tokens_per_s: float, slots: int, chip: str) -> None:
        self.chip = chip
        self.tokens_per_s = tokens_per_s * CHIP_SPEED.get(chip, 1.0)
        self.slots = threading.BoundedSemaphore(slots)
        self.served = 0

    @classmethod
    def from_env(cls) -> Model:
        """Speed, slots and chip from the environment (see the module doc)."""
        return cls(
            float(os.environ.get("TINYGEN_TOKENS_PER_S") or 50.0),
            max(1, int(os.environ.get("TINYGEN_SLOTS") or 4)),
            os.environ.get("CNET_CHIP") or "",
        )


class Handler(BaseHTTPRequestHandler):
    """One connection (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY: headers and events go out at once
    model: Model  # set on the class by `serve`

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a replica's job log stays small."""

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        raw = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        """Readiness (``/``, ``/healthz``) and the model list."""
        path = self.path.split("?", 1)[0]
        if path in ("/", "/healthz"):
            self._json(200, {"ok": True, "model": MODEL, "chip": self.model.chip})
        elif path == "/v1/models":
            self._json(
                200,
                {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "demo"}]},
            )
        else:
            self._error(404, f"no such path {path}", "path")

    def do_POST(self) -> None:
        """A completion, streamed or whole."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path not in ("/v1/completions", "/v1/chat/completions"):
            self._error(404, f"no such path {path}", "path")
            return
        try:
            chat, prompt, n, stream = parse_request(path, body)
        except BadRequest as exc:
            self._error(400, str(exc), exc.param)
            return
        self._complete(chat, prompt, n, stream)

    def _error(self, status: int, message: str, param: str) -> None:
        # OpenAI's error shape.
        self._json(
            status,
            {"error": {"message": message, "type": "invalid_request_error", "param": param}},
        )

    def _complete(self, chat: bool, prompt: str, n: int, stream: bool) -> None:
        m = self.model
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": n,
            "total_tokens": count_tokens(prompt) + n,
        }
        tokens = generate(prompt, n)
        step = 1.0 / m.tokens_per_s
        with m.slots:  # a slot of the "batch": beyond it requests wait, like on a real chip
            time.sleep(usage["prompt_tokens"] * step / PREFILL_FACTOR)
            if not stream:
                time.sleep(n * step)
                m.served += 1
                text = "".join(tokens)
                choice: dict[str, Any] = (
                    {"index": 0, "message": {"role": "assistant", "content": text}}
                    if chat
                    else {"index": 0, "text": text, "logprobs": None}
                )
                choice["finish_reason"] = "length"
                self._json(
                    200,
                    {
                        "id": rid,
                        "object": "chat.completion" if chat else "text_completion",
                        "created": created,
                        "model": MODEL,
                        "system_fingerprint": f"tinygen-{m.chip or 'any'}",
                        "choices": [choice],
                        "usage": usage,
                    },
                )
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            kind = "chat.completion.chunk" if chat else "text_completion"
            head = {"id": rid, "object": kind, "created": created, "model": MODEL}
            if chat:  # the first chunk of a chat stream carries the role
                self._event({**head, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            next_at = time.monotonic()
            for tok in tokens:
                next_at += step
                time.sleep(max(0.0, next_at - time.monotonic()))
                part = {"content": tok} if chat else {"text": tok}
                self._event(
                    {**head, "choices": [{"index": 0, **_wrap(chat, part), "finish_reason": None}]}
                )
            m.served += 1
            end = {"index": 0, **_wrap(chat, {}), "finish_reason": "length"}
            self._event({**head, "choices": [end], "usage": usage})
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _event(self, obj: dict[str, Any]) -> None:
        self._chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def _wrap(chat: bool, part: dict[str, Any]) -> dict[str, Any]:
    # A chat stream's token is a delta; a completion stream's is text at the top.
    return {"delta": part} if chat else ({"text": "", "logprobs": None} | part)


class Server(ThreadingHTTPServer):
    """Threads per connection; a deep accept queue (a burst must not wait for SYN retries)."""

    daemon_threads = True
    request_queue_size = 256


def serve(host: str, port: int, model: Model) -> Server:
    """A bound server for `model` (call ``serve_forever`` on it)."""
    handler = type("TinygenHandler", (Handler,), {"model": model})
    return Server((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    """Serve on $HOST:$PORT (or --port) until killed."""
    ap = argparse.ArgumentParser(prog="tinygen", description="a tiny OpenAI-compatible model")
    ap.add_argument("--port", type=int, default=None, help="default: $PORT or $CNET_SERVICE_PORT")
    ap.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1")
    args = ap.parse_args(argv)
    port = args.port or int(os.environ.get("PORT") or os.environ.get("CNET_SERVICE_PORT") or 0)
    if not port:
        ap.error("no port: set $PORT or pass --port")
    serve(args.host, port, Model.from_env()).serve_forever()


if __name__ == "__main__":
    main()
