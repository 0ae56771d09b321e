"""The trace excerpt and reader, and the load generator's client against a real tinygen."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.demo_models import loadgen, tinygen, trace


def test_the_excerpt_keeps_the_hour_in_time_order() -> None:
    reqs = trace.excerpt()
    assert len(reqs) == 775
    assert reqs[0].at_s == 0.0 and 3400 < reqs[-1].at_s < 3600
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(reqs))
    assert all(r.context_tokens >= 0 and r.generated_tokens > 0 for r in reqs)


def test_compress_fits_the_requests_into_the_replay() -> None:
    out = trace.compress(trace.excerpt(), 60.0)
    assert out[-1].at_s == pytest.approx(60.0)
    assert [r.generated_tokens for r in out] == [r.generated_tokens for r in trace.excerpt()]


def test_load_csv_reads_the_azure_format_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "t.csv"
    good.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n"
        "2023-11-16 18:15:51.2224670,879,55\n"
    )
    reqs = trace.load_csv(good)
    assert [(round(r.at_s, 3), r.context_tokens, r.generated_tokens) for r in reqs] == [
        (0.0, 374, 44), (4.315, 396, 109), (4.542, 879, 55)
    ]  # fmt: skip
    assert len(trace.load_csv(good, every=2)) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,x,1\n")
    with pytest.raises(ValueError, match="line 2"):
        trace.load_csv(bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="ContextTokens"):
        trace.load_csv(cols)


def test_shape_divides_and_caps_tokens() -> None:
    import json

    body = json.loads(loadgen.Shape().body(trace.Request(0, 4000, 1000)))
    assert body["max_tokens"] == 128 and len(body["prompt"].split()) >= 512
    small = json.loads(loadgen.Shape().body(trace.Request(0, 1, 1), stream=False))
    assert small["max_tokens"] == 1 and small["stream"] is False


def test_percentiles_are_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert loadgen.pct(xs, 50) == 50.0 and loadgen.pct(xs, 99) == 99.0
    assert loadgen.pct([], 50) is None
    assert loadgen.summary_ms([0.001, 0.003])["p50"] == 1.0


@pytest.fixture
def model_url() -> Iterator[str]:
    server = tinygen.serve("127.0.0.1", 0, tinygen.Model(20_000, 8, ""))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_replay_streams_every_request_and_counts_its_tokens(model_url: str) -> None:
    reqs = trace.compress(trace.excerpt()[:30], 0.5)
    shape = loadgen.Shape(generated_div=8, generated_max=16)
    out = loadgen.replay(reqs, [("a", model_url), ("b", model_url)], path="/v1/completions",
                         shape=shape)  # fmt: skip
    assert len(out) == 30 and all(o.ok for o in out), [o.error for o in out if not o.ok]
    want = sorted(max(1, min(16, r.generated_tokens // 8)) for r in reqs)
    assert sorted(o.tokens for o in out) == want
    assert {o.target for o in out} == {"a", "b"}
    assert all(o.ttfb_s is not None and o.ttfb_s <= o.latency_s for o in out)


def test_a_dead_target_is_an_error_outcome_not_an_exception() -> None:
    from tests.helpers.processes import free_port

    o = loadgen.Caller().post(f"http://127.0.0.1:{free_port()}", "/v1/completions", b"{}",
                              stream=True)  # fmt: skip
    assert not o.ok and o.status == 0 and o.error and "Connection" in o.error
