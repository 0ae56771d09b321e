"""Start the server and agents as child processes and stop every one of them, by PID.

`cnet up` and `cnet demo` run a whole network in the foreground. Each child
gets its own session (process group) and log file; on exit, Ctrl-C or SIGTERM
the supervisor sends SIGTERM to each child's group, waits, then SIGKILLs what
is left. Only processes this supervisor started are ever signalled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import httpx

from computenet.errors import ComputeNetError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def cnet_argv(*args: str) -> list[str]:
    """argv that runs `cnet ARGS` with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "computenet.cli", *args]


@dataclass
class Child:
    """One started process: its name, handle and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The child's PID (also its process group id)."""
        return self.proc.pid

    def alive(self) -> bool:
        """Whether it is still running."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of its log, for error messages."""
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Owns the children it starts; a context manager that always stops them."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []
        self._old_handlers: dict[int, object] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        drop_secrets: bool = False,
    ) -> Child:
        """Start `argv` in its own session, output to `<log_dir>/<name>.log`.

        It inherits our environment plus `env`; with `drop_secrets`, less every
        variable that holds or points to a credential (`is_secret_var`), since
        ``/proc/<pid>/environ`` of a process is readable by processes of its user.
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.chmod(0o700)  # the operator's: other users' processes keep out
        log_path = self.log_dir / f"{name}.log"
        full_env = dict(os.environ)
        if drop_secrets:
            full_env = {k: v for k, v in full_env.items() if not is_secret_var(k)}
        full_env.update(env or {})
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        child = Child(name, proc, log_path)
        self.children.append(child)
        log.info("started %s (pid %d)", name, proc.pid)
        return child

    def dead(self) -> list[Child]:
        """Children that have exited."""
        return [c for c in self.children if not c.alive()]

    def stop_all(self, grace_s: float = 8.0) -> None:
        """SIGTERM every child's group, wait up to `grace_s`, SIGKILL the rest; reap all."""
        for c in reversed(self.children):  # agents first, server last
            _signal_group(c, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c in reversed(self.children):
            left = max(deadline - time.monotonic(), 0.05)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=left)
        for c in self.children:
            # The group may outlive its leader (a job the agent did not stop): SIGKILL it too.
            _signal_group(c, signal.SIGKILL)
        # One short deadline for reaping them all, so a stop is bounded by grace_s + 5 s.
        deadline = time.monotonic() + 5.0
        for c in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=max(deadline - time.monotonic(), 0.05))
        self.children.clear()

    def __enter__(self) -> Supervisor:
        # SIGINT too: a shell script that starts `cnet up &` leaves SIGINT ignored in
        # it (and so in Python), and `kill -INT` must still stop everything it started.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _raise_interrupt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A second Ctrl-C while stopping must not leave children behind.
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.stop_all()
        finally:
            signal.signal(signal.SIGINT, old_int)
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)  # type: ignore[arg-type]


# Client credentials (the config file holds the user and admin tokens), the
# database URL (it may hold a password) and anything named like a secret.
_SECRET_VARS = frozenset(
    {"CNET_CONFIG", "CNET_TOKEN", "CNET_ADMIN_TOKEN", "CNET_CENTER_TOKEN", "CNET_DB",
     "CNET_PG_URL", "CNET_TEST_DB_URL", "DATABASE_URL"}
)  # fmt: skip
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "PRIVATE_KEY")


def is_secret_var(name: str) -> bool:
    """Whether an environment variable holds (or names a file of) credentials."""
    upper = name.upper()
    return upper in _SECRET_VARS or any(w in upper for w in _SECRET_WORDS)


def write_secret(path: Path, text: str) -> Path:
    """Write `text` to `path`, 0600 in a 0700 directory (a fresh file, never a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    return path


def _signal_group(c: Child, sig: int) -> None:
    try:
        os.killpg(c.pid, sig)
    except (ProcessLookupError, PermissionError):
        if c.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.pid, sig)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def wait_http(url: str, child: Child | None = None, timeout_s: float = 60.0) -> None:
    """Wait until `url` answers HTTP at all; raise `ComputeNetError` with the log tail if not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise ComputeNetError(
                f"{child.name} exited with status {child.proc.returncode} while starting",
                field=child.name,
                hint=f"its log {child.log_path} ends: {child.log_tail(3)!r}",
            )
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise ComputeNetError(
        f"{url} did not answer within {timeout_s:g}s",
        field=child.name if child else "url",
        hint=f"see {child.log_path}" if child else "is the server running?",
    )
