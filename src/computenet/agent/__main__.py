"""``python -m computenet.agent --center ID --server URL --token-file F --backend local``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from computenet.agent import run_agent
from computenet.agent.config import (
    CENTER_ENV,
    POOLS_ENV,
    SERVER_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    AgentConfig,
    resolve_token,
)
from computenet.backends.registry import BACKENDS
from computenet.errors import ComputeNetError


def parser() -> argparse.ArgumentParser:
    """The agent's command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m computenet.agent",
        description="Join a compute center to a ComputeNet network (calls out only).",
    )
    p.add_argument(
        "--center",
        default=os.environ.get(CENTER_ENV),
        help=f"this center's id in the network (default: ${CENTER_ENV})",
    )
    p.add_argument(
        "--server",
        default=os.environ.get(SERVER_ENV),
        help=f"control plane URL(s): URL1,URL2 (default: ${SERVER_ENV})",
    )
    p.add_argument(
        "--token-file",
        default=os.environ.get(TOKEN_FILE_ENV),
        help="file holding the center's token, mode 600, owned by the agent's user"
        " (default: $CNET_CENTER_TOKEN_FILE)",
    )
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help="the center's token (default: $CNET_CENTER_TOKEN); prefer --token-file:"
        " arguments and the environment are readable in /proc",
    )
    p.add_argument(
        "--run-as",
        default="auto",
        help="who local jobs run as: dynamic (a uid of its own per job; the default as root),"
        " self (the agent's user; the default otherwise) or a user name",
    )
    p.add_argument(
        "--backend",
        default="local",
        choices=sorted(BACKENDS),
        help="what runs the jobs (default: local processes)",
    )
    p.add_argument("--network", help="network name or YAML file to read this center's pools from")
    p.add_argument(
        "--slots",
        default=os.environ.get(POOLS_ENV),
        help=f"N virtual slots per pool, or explicit pools CHIP=N[,CHIP=N] (default: ${POOLS_ENV})",
    )
    p.add_argument("--data-root", type=Path, help="dataset replicas (default: STATE_DIR/data)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="job dirs and state (default: ~/.local/state/computenet/agents/CENTER)",
    )
    p.add_argument("--data-host", default="127.0.0.1", help="data endpoint bind address")
    p.add_argument("--data-port", type=int, default=0, help="data endpoint port (0: a free one)")
    p.add_argument(
        "--data-url", help="URL other agents use for the data endpoint, if not HOST:PORT"
    )
    p.add_argument(
        "--keep-jobs",
        action="store_true",
        help="on SIGTERM leave jobs running; a restarted agent re-attaches",
    )
    p.add_argument(
        "--backend-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option for the backend (repeatable), e.g. partition=gpu",
    )
    p.add_argument(
        "--lease-wait",
        type=float,
        default=2.0,
        metavar="S",
        help="long poll: wait up to S s at the control plane for a job (0: poll instead)",
    )
    p.add_argument("--log-level", default=os.environ.get("CNET_LOG_LEVEL", "INFO"))
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the agent, return its exit status (2 on bad input)."""
    p = parser()
    args = p.parse_args(argv)
    for option, env in (("center", CENTER_ENV), ("server", SERVER_ENV)):
        if not getattr(args, option):
            print(f"--{option}: required (or set ${env})", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s agent[{args.center}] %(levelname)s %(message)s",
    )
    options: dict[str, str] = {}
    for opt in args.backend_opt:
        key, sep, value = opt.partition("=")
        if not sep or not key:
            print(f"--backend-opt: '{opt}' is not KEY=VALUE", file=sys.stderr)
            return 2
        options[key.strip().replace("-", "_")] = value
    try:
        token = resolve_token(args.token, args.token_file)
        config = AgentConfig(
            center=args.center,
            server=args.server,
            token=token,
            run_as=args.run_as,
            backend=args.backend,
            network=args.network,
            slots=args.slots,
            data_root=args.data_root,
            state_dir=args.state_dir,
            data_host=args.data_host,
            data_port=args.data_port,
            data_url=args.data_url,
            keep_jobs=args.keep_jobs,
            backend_options=options,
            token_file=args.token_file or None,
            lease_wait_s=max(0.0, args.lease_wait),
        )
    except ComputeNetError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    return run_agent(config)


if __name__ == "__main__":
    sys.exit(main())
