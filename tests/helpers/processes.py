"""Start and stop real ComputeNet processes for tests (127.0.0.1, free ports, stop by PID).

`start_server(tmp_path)` bootstraps an admin token straight into a fresh SQLite
database, starts ``cnet server`` (what users run; ``python -m computenet.server``
is the same command) on a free port and waits for ``GET /healthz``. Always stop
what you start: `stop_process(proc)`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from computenet.cli.supervise import cnet_argv

SERVER_START_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie is dead for our purposes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a process log, for failure messages."""
    try:
        return "\n".join(path.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_http(
    url: str,
    proc: subprocess.Popen[bytes] | None = None,
    timeout: float = 30.0,
    log: Path | None = None,
) -> httpx.Response:
    """Poll `url` until it answers 200; fail early (with the log) if `proc` exits."""
    deadline = time.monotonic() + timeout
    last: Exception | str = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode} before {url} answered:\n"
                + (log_tail(log) if log else "")
            )
        try:
            r = httpx.get(url, timeout=2.0)
            if r.status_code == 200:
                return r
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer in {timeout}s ({last})")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def start_server(
    tmp_path: Path,
    network: str = "demo",
    *,
    db: str | None = None,
    heartbeat_interval: float | None = None,
    lease_timeout: float | None = None,
    cycle_interval: float | None = None,
    epoch: str | None = None,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = SERVER_START_TIMEOUT_S,
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """Start ``cnet server`` and wait for health.

    Returns (base URL, admin token, process). The process log is
    ``tmp_path / "server.log"``; the database defaults to ``tmp_path / "cnet.db"``.
    """
    from computenet.server.admin import bootstrap_admin

    db_url = db or f"sqlite:///{tmp_path / 'cnet.db'}"
    admin = bootstrap_admin(db_url)
    port = free_port()
    cmd = cnet_argv(
        "server",
        "--db",
        db_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--network",
        network,
        "--log-level",
        "info",
    )
    for flag, value in (
        ("--heartbeat-interval", heartbeat_interval),
        ("--lease-timeout", lease_timeout),
        ("--cycle-interval", cycle_interval),
        ("--epoch", epoch),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    cmd += list(extra_args)
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc, timeout=timeout, log=log)
    except BaseException:
        stop_process(proc)
        raise
    return url, admin.token, proc
