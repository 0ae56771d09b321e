"""Added latency of `cnet gateway` against calling a replica directly, in one run.

Starts the echo model server (`tests/helpers/echo_model.py`) as a process, a
stub control plane in this process (it lists that one replica as ready, the way
``GET /api/v1/services`` does), and a real ``cnet gateway`` process pointed at
it. Then sends requests alternately straight to the replica and through the
gateway (``/services/echo/v1/chat/completions``), each client on its own
keep-alive connection (the standard library's `http.client`, light on the
shared cores), and prints p50/p90/p99 of both and the p50 difference: the
gateway's added latency. Goal (issue 11): p50 added ≤ 2 ms. The machine's
load is printed before and after (`uptime`).

Run: .venv/bin/python bench/gateway_overhead.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ECHO = ROOT / "tests" / "helpers" / "echo_model.py"
BODY = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}).encode()


def free_port() -> int:
    """A port free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stub_plane(replica_port: int) -> tuple[ThreadingHTTPServer, int]:
    """A control plane that knows one service, `echo`, with one ready replica."""
    listing = json.dumps(
        [
            {
                "name": "echo",
                "spec": {"latency": {"p99_ttfb_ms": 500}, "target_inflight": 4},
                "replicas": [
                    {"job_id": "j-bench", "ready": True, "center": "east",
                     "endpoint": f"127.0.0.1:{replica_port}"}
                ],
            }
        ]
    ).encode()  # fmt: skip
    health = json.dumps({"now": "2026-12-05T12:00:00+08:00"}).encode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = listing if self.path.startswith("/api/v1/services") else health
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
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


def call(conn: http.client.HTTPConnection, path: str) -> float:
    """One POST; seconds until the whole answer was read."""
    t0 = time.perf_counter()
    conn.request("POST", path, body=BODY, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}")
    return time.perf_counter() - t0


def pct(xs: list[float], p: float) -> float:
    """The p-th percentile in ms."""
    s = sorted(xs)
    return 1000.0 * s[min(len(s) - 1, int(p / 100.0 * len(s)))]


def uptime() -> str:
    """`uptime`'s line."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    """Run the comparison and print it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests each way")
    args = ap.parse_args()
    print(f"before: {uptime()} ({os.cpu_count()} cores)")
    rport, gport = free_port(), free_port()
    env = {**os.environ, "PORT": str(rport), "CNET_SERVICE_REPLICA": "0"}
    model = subprocess.Popen([sys.executable, str(ECHO)], env=env)
    plane, pport = stub_plane(rport)
    gateway = subprocess.Popen(
        [sys.executable, "-m", "computenet.cli", "gateway", "--url", f"http://127.0.0.1:{pport}",
         "--token", "bench", "--port", str(gport)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(rport)
        wait_port(gport)
        direct = http.client.HTTPConnection("127.0.0.1", rport)
        via = http.client.HTTPConnection("127.0.0.1", gport)
        path = "/services/echo/v1/chat/completions"
        for _ in range(200):  # warm both paths (connections, the gateway's first refresh)
            call(direct, "/v1/chat/completions")
            call(via, path)
        d: list[float] = []
        g: list[float] = []
        for _ in range(args.requests):  # alternate: both see the same load
            d.append(call(direct, "/v1/chat/completions"))
            g.append(call(via, path))
        print(f"requests: {args.requests} each way, sequential, keep-alive, alternating")
        for name, xs in (("direct ", d), ("gateway", g)):
            print(
                f"{name}: p50 {pct(xs, 50):.3f} ms  p90 {pct(xs, 90):.3f} ms"
                f"  p99 {pct(xs, 99):.3f} ms  mean {1000 * statistics.fmean(xs):.3f} ms"
            )
        added = pct(g, 50) - pct(d, 50)
        print(f"added p50: {added:.3f} ms (goal <= 2 ms: {'met' if added <= 2.0 else 'NOT met'})")
    finally:
        for p in (gateway, model):
            p.terminate()
            p.wait(timeout=10)
        plane.shutdown()
        print(f"after:  {uptime()}")


if __name__ == "__main__":
    main()
