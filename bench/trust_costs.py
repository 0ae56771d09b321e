"""What the credential and data checks cost, measured side by side (issue 12).

Three figures, each as a median over ``--repeat`` runs with the ratio of the
two sides:

1. **Unknown tokens**: requests with a bad bearer token against a real
   control plane process (``python -m computenet.server`` on a fresh SQLite
   file, and with ``--postgres`` on a fresh PostgreSQL database too),
   answered 401. The server caches an unknown token as unknown for
   `auth.CACHE_TTL_S`; the side "distinct" sends a new random token every
   time (every one is a database lookup), the side "repeated" sends one bad
   token over and over (one lookup, then the negative cache). Prints 401s per
   second for each, and the ratio.
2. **Local replica check**: `DataRoot.verified` on a ``--mb`` MB file, the
   first call (reads and hashes the file) against the next calls (the
   (path, size, mtime) cache). Prints seconds per call and MB/s hashed.
3. **Tickets**: mint + verify per second (`computenet.protocol.tickets`).

Timings are printed, never asserted. Run: ``python bench/trust_costs.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.processes import start_server, stop_process

from computenet.agent.data import DataRoot, create_replica
from computenet.protocol.tickets import mint_ticket, ticket_problem


def unknown_tokens(n: int, repeat: int, db: str | None = None) -> None:
    """401s per second: a new bad token each time vs one bad token repeated."""
    with tempfile.TemporaryDirectory() as tmp:
        url, _, proc = start_server(Path(tmp), db=db, cycle_interval=5.0)
        try:
            with httpx.Client(base_url=url, timeout=10) as client:
                rates: dict[str, list[float]] = {"distinct": [], "repeated": []}
                for _ in range(repeat):
                    # Alternate the two sides so that drift hits both alike.
                    for side in ("distinct", "repeated"):
                        fixed = f"cnu_{secrets.token_urlsafe(32)}"
                        t0 = time.perf_counter()
                        for _ in range(n):
                            token = (
                                f"cnu_{secrets.token_urlsafe(32)}" if side == "distinct" else fixed
                            )
                            resp = client.get(
                                "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}
                            )
                            assert resp.status_code == 401, resp.text
                        rates[side].append(n / (time.perf_counter() - t0))
        finally:
            stop_process(proc)
    d, r = statistics.median(rates["distinct"]), statistics.median(rates["repeated"])
    store = "PostgreSQL" if db and db.startswith("postgresql") else "SQLite"
    print(f"unknown tokens on {store}, {n} requests x {repeat} runs (median 401/s):")
    print(f"  distinct (a lookup each): {d:8.0f}/s")
    print(f"  repeated (negative cache): {r:8.0f}/s   ratio {r / d:.2f}x")


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new database on the services' PostgreSQL, dropped afterwards."""
    from bench.failover import pg_base_url
    from tests.helpers.pg import scratch_database

    with scratch_database(pg_base_url(), "cnet_bench_trust") as url:
        yield url


def replica_check(mb: int, repeat: int) -> None:
    """Seconds for the first sha256 check of a local replica vs a cached one."""
    with tempfile.TemporaryDirectory() as tmp:
        rep = create_replica(tmp, "big", mb * 1_000_000, tenant="t")
        path = Path(tmp) / rep.path
        first: list[float] = []
        cached: list[float] = []
        for _ in range(repeat):
            root = DataRoot(tmp)  # a fresh agent: nothing known yet
            t0 = time.perf_counter()
            assert root.verified(path, rep.sha256)
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(100):
                assert root.verified(path, rep.sha256)
            cached.append((time.perf_counter() - t0) / 100)
    f, c = statistics.median(first), statistics.median(cached)
    print(f"local replica sha256 check, {mb} MB file, {repeat} runs (median):")
    print(f"  first (hash): {f * 1000:9.1f} ms  ({mb / f:.0f} MB/s)")
    print(f"  cached:       {c * 1000:9.4f} ms  ratio {f / c:.0f}x")


def tickets(n: int) -> None:
    """Ticket mint + verify per second."""
    key = secrets.token_hex(32)
    t0 = time.perf_counter()
    now = int(time.time())
    for i in range(n):
        t = mint_ticket(
            key, dataset="corpus", path=f"tenants/t/{i}", center="west", expires_unix=now + 300
        )
        assert (
            ticket_problem(
                key, t, dataset="corpus", path=f"tenants/t/{i}", center="west", now_unix=now
            )
            is None
        )
    dt = time.perf_counter() - t0
    print(f"tickets: {n / dt:,.0f} mint+verify per second")


def main() -> int:
    """Run the three measurements."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--postgres", action="store_true", help="also on a fresh PostgreSQL database")
    args = ap.parse_args()
    os.environ.setdefault("CNET_LOG_LEVEL", "warning")
    unknown_tokens(args.requests, args.repeat)
    if args.postgres:
        with fresh_postgres() as url:
            unknown_tokens(args.requests, args.repeat, url)
    replica_check(args.mb, args.repeat)
    tickets(20_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
