"""Submissions per second and latency through the REST API, SQLite store, 1/8/32 clients.

Starts a real server process on 127.0.0.1 (network `demo`, a fresh SQLite file),
then for each concurrency level runs that many client threads, each with its
own keep-alive HTTP connection, submitting jobs back to back (each with its
own idempotency key) for a fixed number of requests. Prints throughput, p50
and p99 latency, and the CPU time the server and the client spent per
submission. Goal (issue 2): ≥ 500/s with p99 ≤ 50 ms at 8 clients. The
scheduling loop keeps running meanwhile (its default 1 s cycle), as in
production, so the figures include its contention for the database and the
interpreter; no agent is connected, so every job stays PENDING and the
backlog the loop looks at grows level after level.

The client is the standard library's `http.client` (about 0.3 ms of CPU per
request here, where `httpx` takes over 1 ms: on a 2-core machine the client
shares the cores with the server, so a heavy client understates the
server). `--client httpx` measures with httpx instead. `--idle-loop` adds, for
comparison only, the same levels against a second server whose loop is idle.

After the run the bench checks that every acknowledged submission is in the
database, exactly once. The machine's load is printed before and after:
compare figures only between runs under similar load.

Run: .venv/bin/python bench/api_submit.py [--per-client 200] [--clients 1,8,32]
     [--client stdlib|httpx] [--idle-loop]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers.processes import start_server, stop_process

JOB = {
    "class": "inference",
    "command": "true",
    "chips": {"count": 1},
    "work": {"cu_hours": 0.01},
}
TIMEOUT_S = 30.0

# One submission: (path, JSON body) → (status, response body). Raises on transport errors.
Post = Callable[[str, bytes], tuple[int, bytes]]


def stdlib_client(url: str, token: str) -> tuple[Post, Callable[[], None]]:
    """A keep-alive `http.client` connection: (post, close)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=TIMEOUT_S)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def post(path: str, body: bytes) -> tuple[int, bytes]:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    return post, conn.close


def httpx_client(url: str, token: str) -> tuple[Post, Callable[[], None]]:
    """A keep-alive `httpx.Client`: (post, close)."""
    import httpx

    c = httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=TIMEOUT_S,
    )

    def post(path: str, body: bytes) -> tuple[int, bytes]:
        r = c.post(path, content=body)
        return r.status_code, r.content

    return post, c.close


CLIENTS = {"stdlib": stdlib_client, "httpx": httpx_client}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_level(
    url: str, token: str, clients: int, per_client: int, tag: str, kind: str, server_pid: int
) -> dict[str, Any]:
    """Run one concurrency level; return throughput, latency percentiles and CPU per request."""
    lat: list[float] = []
    created: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    make = CLIENTS[kind]

    def worker(w: int) -> None:
        mine: list[float] = []
        ids: list[str] = []
        bad: list[str] = []
        post, close = make(url, token)
        try:
            # Open the connection (and warm the token cache) before timing.
            post("/api/v1/jobs", _body("warm", w, 0))
            barrier.wait()
            for i in range(per_client):
                body = _body(tag, w, i)
                t0 = time.perf_counter()
                try:
                    status, raw = post("/api/v1/jobs", body)
                except Exception as exc:  # a timeout or a dropped connection counts as an error
                    mine.append(time.perf_counter() - t0)
                    bad.append(f"{type(exc).__name__}: {exc}")
                    close()
                    post, close = make(url, token)
                    continue
                mine.append(time.perf_counter() - t0)
                if status == 201:
                    ids.append(json.loads(raw)["id"])
                else:
                    bad.append(f"HTTP {status}: {raw[:200]!r}")
        finally:
            close()
        with lock:
            lat.extend(mine)
            created.extend(ids)
            errors.extend(bad)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    s0, c0 = cpu_seconds(server_pid), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    s1, c1 = cpu_seconds(server_pid), time.process_time()
    lat.sort()
    n = len(lat)
    return {
        "clients": clients,
        "requests": n,
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "created": created,
        "per_s": n / wall,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000,
        "max_ms": lat[-1] * 1000,
        "server_cpu_ms": (s1 - s0) / n * 1000,
        "client_cpu_ms": (c1 - c0) / n * 1000,
    }


def _body(tag: str, w: int, i: int) -> bytes:
    spec = {**JOB, "name": f"b{w}-{i}"}
    return json.dumps({"spec": spec, "idempotency_key": f"{tag}-{w}-{i}"}).encode()


def bench_server(tmp: Path, args: argparse.Namespace, label: str, extra: list[str]) -> None:
    """Start one server, run every level against it, check the store, print the rows."""
    from computenet.server.admin import create_tenant, create_user

    tmp.mkdir(parents=True, exist_ok=True)
    url, _admin, proc = start_server(tmp, network="demo", extra_args=extra)
    try:
        db = f"sqlite:///{tmp / 'cnet.db'}"
        create_tenant(db, "bench")
        token = create_user(db, "bench-user", "bench").token
        print(f"{label}: server {url} (SQLite, network demo), client {args.client}")
        print(
            f"{'clients':>7} {'requests':>8} {'errors':>6} {'subm/s':>8} {'p50 ms':>7}"
            f" {'p99 ms':>7} {'max ms':>7} {'server CPU/req':>15} {'client CPU/req':>15}"
        )
        acknowledged: list[str] = []
        for n in (int(x) for x in args.clients.split(",")):
            r = run_level(url, token, n, args.per_client, f"c{n}", args.client, proc.pid)
            acknowledged += r["created"]
            print(
                f"{r['clients']:>7} {r['requests']:>8} {r['errors']:>6} {r['per_s']:>8.0f}"
                f" {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.0f}"
                f" {r['server_cpu_ms']:>12.2f} ms {r['client_cpu_ms']:>12.2f} ms"
            )
            if r["errors"]:
                print(f"        first error: {r['first_error']}")
            if n == 8:
                print(
                    f"        goal at 8 clients: ≥500/s (ratio {r['per_s'] / 500:.2f}),"
                    f" p99 ≤ 50 ms (ratio {r['p99_ms'] / 50:.2f})"
                )
    finally:
        stop_process(proc)
    with sqlite3.connect(tmp / "cnet.db") as con:
        stored = {row[0] for row in con.execute("SELECT id FROM jobs")}
    missing = set(acknowledged) - stored
    dupes = len(acknowledged) - len(set(acknowledged))
    print(
        f"        store check: {len(acknowledged)} acknowledged as new,"
        f" {len(missing)} missing from the database, {dupes} acknowledged twice"
    )


def main() -> None:
    """Start the server(s), run each level, print a table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-client", type=int, default=200)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="stdlib")
    ap.add_argument(
        "--idle-loop",
        action="store_true",
        help="also run against a server whose scheduling loop is idle (comparison only)",
    )
    args = ap.parse_args()
    print(f"before: {_uptime()} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as tmp:
        bench_server(Path(tmp) / "loop", args, "scheduling loop running (1 s cycle)", [])
        if args.idle_loop:
            bench_server(
                Path(tmp) / "idle",
                args,
                "comparison only, scheduling loop idle",
                ["--cycle-interval", "86400"],
            )
    print(f"after:  {_uptime()}")


def _uptime() -> str:
    """`uptime`'s line (the load averages), or the load averages alone."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
