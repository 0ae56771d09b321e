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

The stub also takes the gateway's load and stats reports (metering) and the
bench prints how many requests the gateway reported as metered, which must
equal those it sent through it. With ``--compare-src DIR`` (the ``src`` folder
of another checkout, e.g. ``git worktree add /tmp/old COMMIT``) a second
gateway runs that code, and the three paths alternate: an A/B of two gateway
versions under the same load.

Run: .venv/bin/python bench/gateway_overhead.py [--requests 2000] [--compare-src DIR]
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


METERED: list[int] = []  # requests in each stats report the stub received


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

        def do_POST(self) -> None:  # the gateway's /load and /stats reports
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/stats"):
                METERED.append(int(json.loads(raw)["requests"]))
            self.send_response(204)
            self.end_headers()

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
    ap.add_argument("--compare-src", type=Path, help="another checkout's src/: its gateway too")
    args = ap.parse_args()
    print(f"before: {uptime()} ({os.cpu_count()} cores)")
    rport, gport = free_port(), free_port()
    env = {**os.environ, "PORT": str(rport), "CNET_SERVICE_REPLICA": "0"}
    model = subprocess.Popen([sys.executable, str(ECHO)], env=env)
    plane, pport = stub_plane(rport)

    def start_gateway(port: int, src: Path | None) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = str(src.resolve())
        return subprocess.Popen(
            [sys.executable, "-m", "computenet.cli", "gateway", "--url",
             f"http://127.0.0.1:{pport}", "--token", "bench", "--port", str(port)],
            stdout=subprocess.DEVNULL, env=env,
        )  # fmt: skip

    gateway = start_gateway(gport, None)
    oport = free_port()
    other = start_gateway(oport, args.compare_src) if args.compare_src else None
    try:
        wait_port(rport)
        wait_port(gport)
        paths = [("direct ", rport, "/v1/chat/completions"),
                 ("gateway", gport, "/services/echo/v1/chat/completions")]  # fmt: skip
        if other is not None:
            wait_port(oport)
            paths.append(("compare", oport, "/services/echo/v1/chat/completions"))
        conns = [http.client.HTTPConnection("127.0.0.1", port) for _, port, _ in paths]
        for _ in range(200):  # warm every path (connections, the gateway's first refresh)
            for conn, (_, _, path) in zip(conns, paths, strict=True):
                call(conn, path)
        time.sleep(2.5)  # the warm-up's stats report goes out before the count starts
        METERED.clear()
        got: list[list[float]] = [[] for _ in paths]
        for _ in range(args.requests):  # alternate: every path sees the same load
            for xs, conn, (_, _, path) in zip(got, conns, paths, strict=True):
                xs.append(call(conn, path))
        print(f"requests: {args.requests} each way, sequential, keep-alive, alternating")
        for (name, _, _), xs in zip(paths, got, strict=True):
            print(
                f"{name}: p50 {pct(xs, 50):.3f} ms  p90 {pct(xs, 90):.3f} ms"
                f"  p99 {pct(xs, 99):.3f} ms  mean {1000 * statistics.fmean(xs):.3f} ms"
            )
        d = got[0]
        for (name, _, _), xs in zip(paths[1:], got[1:], strict=True):
            added = pct(xs, 50) - pct(d, 50)
            print(
                f"added p50 ({name.strip()}): {added:.3f} ms"
                f" (goal <= 2 ms: {'met' if added <= 2.0 else 'NOT met'})"
            )
        if other is not None:
            print(f"gateway / compare p50: {pct(got[1], 50) / pct(got[2], 50):.3f}")
        time.sleep(2.5)  # the last window's report
        print(
            f"metered (stats reports received): {sum(METERED)} requests;"
            f" {args.requests} sent through each gateway (a compared gateway from before"
            " metering reports none)"
        )
    finally:
        for p in (gateway, other, model):
            if p is not None:
                p.terminate()
                p.wait(timeout=10)
        plane.shutdown()
        print(f"after:  {uptime()}")


if __name__ == "__main__":
    main()
