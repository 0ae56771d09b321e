"""Gateway throughput and added latency with a real model server, side by side in one run.

Starts two `tinygen` replicas (`computenet.demo_models.tinygen`) as processes,
made fast (no per-token delay to speak of) so that the serving path, not the
model, is measured; a stub control plane in this process that lists them as
the ready replicas of service `tinygen` (as ``GET /api/v1/services`` does, and
takes the gateway's load reports); and a real ``cnet gateway`` process.

Then, for each concurrency (1, 8, 32 closed-loop clients, each on its own
keep-alive connection) and each kind of request (a JSON completion of 16
tokens, and the same streamed as 16 server-sent events), it runs the clients
for a few seconds straight at the replicas (round robin) and then the same
through the gateway, twice in A B B A order so that both see the same drift in
the machine's load, and prints requests per second, p50 and p99 latency of
both, the throughput ratio and the latency added. The machine's load is
printed before and after (`uptime`). The clients run in this process (Python
threads): at high concurrency on few cores they, too, take CPU from the
gateway, in both columns alike.

Run: .venv/bin/python bench/serve.py [--seconds 4] [--concurrency 1,8,32]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from computenet.demo_models import loadgen, tinygen  # noqa: E402

TOKENS = 16
PROMPT = "the network sends each request to the replica that will answer best"


def free_port() -> int:
    """A port free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stub_plane(ports: list[int]) -> tuple[ThreadingHTTPServer, int]:
    """A control plane that knows one service, `tinygen`, with a ready replica per port."""
    listing = json.dumps(
        [
            {
                "name": "tinygen",
                "spec": {"latency": {"p99_ttfb_ms": 500}, "target_inflight": 64},
                "replicas": [
                    {"job_id": f"j-bench-{i}", "ready": True, "center": "east", "chip": "H100",
                     "endpoint": f"127.0.0.1:{p}"}
                    for i, p in enumerate(ports)
                ],
            }
        ]
    ).encode()  # fmt: skip
    health = json.dumps({"now": "2026-12-05T12:00:00+08:00"}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = listing if self.path.startswith("/api/v1/services") else health
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # the gateway's load (and any other) reports
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def wait_port(port: int, timeout: float = 30.0) -> None:
    """Until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def closed_loop(
    bases: list[str], path: str, body: bytes, *, stream: bool, clients: int, seconds: float
) -> tuple[int, list[float], int]:
    """`clients` threads each sending back to back for `seconds`; (ok, latencies, errors)."""
    caller = loadgen.Caller()
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(k: int) -> None:
        base = bases[k % len(bases)]
        mine: list[float] = []
        bad = 0
        while time.monotonic() < stop:
            o = caller.post(base, path, body, stream=stream)
            if o.ok and o.tokens == TOKENS:
                mine.append(o.latency_s)
            else:
                bad += 1
        with lock:
            lat.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat), lat, errors[0]


def uptime() -> str:
    """`uptime`'s line."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def ms(v: float | None) -> str:
    """Seconds as ms for the table."""
    return "-" if v is None else f"{1000 * v:.2f}"


def main() -> None:
    """Start everything, run the grid, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0, help="per path, per half (A B B A)")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",")]
    print(f"before: {uptime()} ({os.cpu_count()} cores)")
    ports = [free_port(), free_port()]
    script = str(Path(tinygen.__file__).resolve())
    models = [
        subprocess.Popen(
            [sys.executable, script, "--port", str(p)],
            env={**os.environ, "TINYGEN_TOKENS_PER_S": "1000000", "TINYGEN_SLOTS": "256"},
        )
        for p in ports
    ]
    plane, pport = stub_plane(ports)
    gport = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "computenet.cli", "gateway", "--url", f"http://127.0.0.1:{pport}",
         "--token", "bench", "--port", str(gport)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for p in [*ports, gport]:
            wait_port(p)
        direct = [f"http://127.0.0.1:{p}" for p in ports]
        via = [f"http://127.0.0.1:{gport}"]
        vpath, dpath = "/services/tinygen/v1/completions", "/v1/completions"
        time.sleep(1.0)  # the gateway's first refresh
        print(
            f"2 tinygen replicas, {TOKENS} tokens per answer, closed loop, {args.seconds:g} s"
            " per path twice (A B B A), keep-alive"
        )
        print(
            f"{'kind':<7}{'conc':>5} | {'direct r/s':>10} {'p50 ms':>8} {'p99 ms':>8} |"
            f" {'gateway r/s':>11} {'p50 ms':>8} {'p99 ms':>8} | {'ratio':>6}"
            f" {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>6}"
        )
        for stream in (False, True):
            body = json.dumps(
                {"model": "tinygen", "prompt": PROMPT, "max_tokens": TOKENS, "stream": stream}
            ).encode()
            for c in levels:
                for b in direct + via:  # warm connections and threads
                    loadgen.Caller().post(b, vpath if b in via else dpath, body, stream=stream)
                res: dict[str, tuple[int, list[float], int]] = {"d": (0, [], 0), "g": (0, [], 0)}
                for which in ("d", "g", "g", "d"):
                    bases, path = (direct, dpath) if which == "d" else (via, vpath)
                    n, lat, err = closed_loop(
                        bases, path, body, stream=stream, clients=c, seconds=args.seconds
                    )
                    old = res[which]
                    res[which] = (old[0] + n, old[1] + lat, old[2] + err)
                span = 2 * args.seconds
                (dn, dl, de), (gn, gl, ge) = res["d"], res["g"]
                drps, grps = dn / span, gn / span
                d50, d99 = loadgen.pct(dl, 50), loadgen.pct(dl, 99)
                g50, g99 = loadgen.pct(gl, 50), loadgen.pct(gl, 99)
                add50 = (g50 - d50) if g50 is not None and d50 is not None else None
                add99 = (g99 - d99) if g99 is not None and d99 is not None else None
                print(
                    f"{'stream' if stream else 'json':<7}{c:>5} | {drps:>10.1f} {ms(d50):>8}"
                    f" {ms(d99):>8} | {grps:>11.1f} {ms(g50):>8} {ms(g99):>8} |"
                    f" {grps / drps if drps else 0:>6.2f} {ms(add50):>8} {ms(add99):>8}"
                    f" {de + ge:>6}"
                )
    finally:
        for proc in [gateway, *models]:
            proc.terminate()
            proc.wait(timeout=10)
        plane.shutdown()
        print(f"after:  {uptime()}")


if __name__ == "__main__":
    main()
