"""``python -m computenet.server --db URL --host H --port P --network NAME|FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from computenet.errors import ComputeNetError
from computenet.model.limits import MAX_BODY_BYTES
from computenet.protocol.fencing import DEFAULT_LEASE_TIMEOUT_S
from computenet.server.app import serve
from computenet.server.metrics import LOG_FORMATS, read_token_file
from computenet.server.settings import DEFAULT_DB_URL, Settings


def main(argv: list[str] | None = None) -> int:
    """Parse options, build `Settings` and serve; bad options exit 2 with one line."""
    ap = argparse.ArgumentParser(prog="python -m computenet.server", description=__doc__)
    ap.add_argument("--db", default=DEFAULT_DB_URL, help="SQLAlchemy URL or SQLite file path")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--network", default="demo", help="built-in network name or YAML file")
    ap.add_argument("--heartbeat-interval", type=float, default=2.0, help="real seconds")
    ap.add_argument(
        "--lease-timeout",
        type=float,
        default=DEFAULT_LEASE_TIMEOUT_S,
        help="real seconds; agents fence at half of it, jobs are requeued at 1.25×",
    )
    ap.add_argument("--cycle-interval", type=float, default=1.0, help="real seconds")
    ap.add_argument(
        "--leader-lease",
        type=float,
        default=5.0,
        help="real seconds; replicas on one database: a dead leader is replaced within about this",
    )
    ap.add_argument("--epoch", default=None, help="network start instant (ISO-8601)")
    ap.add_argument("--profile", default="min-cost", help="scheduling profile")
    ap.add_argument(
        "--strategy", default="greedy", help="cycle strategy (greedy, lookahead, batch-optimizer)"
    )
    ap.add_argument(
        "--sim-reports", default="sim-reports", help="folder of `cnet sim compare --out` reports"
    )
    ap.add_argument(
        "--max-pending", type=int, default=10_000, help="pending jobs per tenant (0: no limit)"
    )
    ap.add_argument(
        "--submits-per-s", type=float, default=1000.0, help="submits per tenant (0: no limit)"
    )
    ap.add_argument(
        "--max-body-bytes", type=int, default=MAX_BODY_BYTES, help="user API request bodies"
    )
    ap.add_argument(
        "--ticket-ttl",
        type=float,
        default=300.0,
        help="real seconds a data fetch ticket stays valid after the lease",
    )
    ap.add_argument("--log-level", default="info")
    ap.add_argument(
        "--log-format", default="text", choices=LOG_FORMATS, help="json: one object per line"
    )
    ap.add_argument(
        "--metrics-token-file",
        default=None,
        help="file holding the token Prometheus sends to GET /metrics (admins may always)",
    )
    args = ap.parse_args(argv)
    try:
        settings = Settings.from_options(
            db=args.db,
            host=args.host,
            port=args.port,
            network=args.network,
            epoch=args.epoch,
            heartbeat_interval_s=args.heartbeat_interval,
            lease_timeout_s=args.lease_timeout,
            cycle_interval_s=args.cycle_interval,
            leader_lease_s=args.leader_lease,
            profile=args.profile,
            strategy=args.strategy,
            sim_reports_dir=Path(args.sim_reports),
            max_pending_jobs=args.max_pending,
            submits_per_s=args.submits_per_s,
            max_body_bytes=args.max_body_bytes,
            ticket_ttl_s=args.ticket_ttl,
            metrics_token=(
                read_token_file(Path(args.metrics_token_file)) if args.metrics_token_file else None
            ),
        )
    except ComputeNetError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    serve(settings, log_level=args.log_level, log_format=args.log_format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
