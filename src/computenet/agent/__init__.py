"""The center agent: joins a compute center to the network (outbound calls only).

`run_agent(center=..., server=..., token=...)` runs one until SIGTERM/SIGINT;
``python -m computenet.agent --help`` is the same from a shell.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from computenet.agent.config import AgentConfig
from computenet.agent.data import create_replica, dataset_sha256, mint_ticket
from computenet.agent.loop import Agent, AgentFatal
from computenet.backends.base import Backend
from computenet.errors import ComputeNetError

logger = logging.getLogger(__name__)

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentFatal",
    "create_replica",
    "dataset_sha256",
    "mint_ticket",
    "run_agent",
]


def run_agent(
    config: AgentConfig | None = None,
    *,
    stop_event: threading.Event | None = None,
    backend_impl: Backend | None = None,
    **options: Any,
) -> int:
    """Run an agent until stopped; the exit status (0 clean, 2 refused or misconfigured).

    Give an `AgentConfig`, or its fields as keywords (``center``, ``server``,
    ``token``, ``backend`` (a kind name), ``slots``, ``network``, ``data_root``…);
    `backend_impl` runs a ready-made backend object instead of building one.
    SIGTERM and SIGINT stop it gracefully when called from the main thread.
    """
    stop = stop_event or threading.Event()
    for noisy in ("httpx", "httpcore"):  # a line per lease poll drowns the agent's own log
        if logging.getLogger(noisy).level == logging.NOTSET:
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if config is None:
            config = AgentConfig(**options)
        agent = Agent(config, backend=backend_impl, stop_event=stop)
    except ComputeNetError as exc:
        logger.error("%s", exc.one_line())
        return 2
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("signal %d: stopping", signum)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return agent.run()
    except ComputeNetError as exc:
        logger.error("%s", exc.one_line())
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
