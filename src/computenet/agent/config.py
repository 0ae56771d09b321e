"""Agent configuration, read once at the edge (CLI or `run_agent` keywords) and passed in."""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from computenet.backends.registry import parse_pools
from computenet.errors import ComputeNetError, ValidationError
from computenet.protocol.failover import parse_urls

logger = logging.getLogger(__name__)


def default_state_dir(center: str) -> Path:
    """``$XDG_STATE_HOME/computenet/agents/<center>`` (``~/.local/state/...`` by default).

    As root: ``/var/lib/computenet/agents/<center>``, a place the jobs' own uids
    can reach their work dirs through (root's home is closed to them).
    """
    if os.geteuid() == 0 and not os.environ.get("XDG_STATE_HOME"):
        return Path("/var/lib/computenet/agents") / center
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "computenet" / "agents" / center


TOKEN_ENV = "CNET_CENTER_TOKEN"
TOKEN_FILE_ENV = "CNET_CENTER_TOKEN_FILE"
# What a center is started with (docs/center-protocol.md, "Starting a center"); the
# conformance kit sets them: `cnet agent` takes its defaults from them.
SERVER_ENV = "CNET_SERVER_URL"
CENTER_ENV = "CNET_CENTER_ID"
POOLS_ENV = "CNET_POOLS"


def read_token_file(path: str | Path) -> str:
    """The center token in `path`, a file only the agent's user can read (0600 or 0400)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError as exc:
        raise ValidationError(
            f"cannot read the token file {path}: {exc.strerror}",
            field="--token-file",
            hint="cnet admin center-token CENTER > FILE; chmod 600 FILE",
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise ValidationError(f"{path} is not a regular file", field="--token-file")
    if st.st_uid != os.geteuid():
        raise ValidationError(
            f"the token file {path} belongs to uid {st.st_uid}, not to the agent's user "
            f"(uid {os.geteuid()})",
            field="--token-file",
            hint="chown the file to the user the agent runs as, mode 600",
        )
    if st.st_mode & 0o077:
        raise ValidationError(
            f"the token file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o})",
            field="--token-file",
            hint=f"chmod 600 {path}",
        )
    try:
        token = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(
            f"cannot read the token file {path}: {exc}", field="--token-file"
        ) from None
    if not token:
        raise ValidationError(f"the token file {path} is empty", field="--token-file")
    return token


def resolve_token(token: str | None, token_file: str | Path | None) -> str:
    """The agent's token: from `token_file` (preferred), else `token` ("" if neither).

    Removes ``CNET_CENTER_TOKEN`` from this process's environment first, so that no
    process the agent starts inherits it, and warns: the variable stays readable in
    ``/proc/<agent pid>/environ`` (the initial environment cannot be scrubbed) and a
    ``--token`` argument in ``/proc/<pid>/cmdline`` — a token file is the safe way.
    """
    from_env = os.environ.pop(TOKEN_ENV, None)
    if from_env:
        logger.warning(
            "%s is set: the token stays readable in /proc/%d/environ to this user's processes;"
            " pass --token-file (or %s) instead",
            TOKEN_ENV,
            os.getpid(),
            TOKEN_FILE_ENV,
        )
    if token_file:
        return read_token_file(token_file)
    if token and token != from_env:
        logger.warning(
            "--token on the command line is visible to every user in the process list;"
            " pass --token-file instead"
        )
    return token or ""


@dataclass
class AgentConfig:
    """Everything an agent needs to know about itself.

    `run_as` is who local jobs run as: ``auto`` (a uid of their own per job when
    the agent is root, else the agent's user), ``dynamic``, ``self`` or a user name.
    `slots` is ``"N"`` (every pool of the center gets N virtual slots) or
    ``"CHIP=N,..."`` (these pools, whatever the network says). Without
    ``CHIP=N`` slots the pools come from `network` (a built-in name or a YAML
    path), or else from the control plane's ``GET /api/v1/centers``.
    """

    center: str
    server: str
    token: str
    backend: str = "local"
    data_root: Path | None = None
    state_dir: Path | None = None
    slots: str | None = None
    network: str | None = None
    keep_jobs: bool = False
    data_host: str = "127.0.0.1"
    data_port: int = 0
    data_url: str | None = None
    backend_options: dict[str, Any] = field(default_factory=dict)
    tick_s: float = 0.2
    lease_interval_s: float = 0.5
    # Long poll: a lease call waits up to this long at the control plane for a job (0: poll
    # every lease_interval_s instead, as against a control plane that does not hold calls).
    # A few seconds: a proxy in between may cut longer idle calls.
    lease_wait_s: float = 2.0
    max_backoff_s: float = 10.0
    max_parallel_staging: int = 4
    run_as: str = "auto"
    # Where `token` came from: re-read when the control plane answers 401, so an
    # operator replaces a center's token by rewriting the file (no restart).
    token_file: Path | None = None
    # Where jobs' $CNET_CHECKPOINT_DIR lie (agent/checkpoints.py); default
    # <state_dir>/checkpoints. Set it to a filesystem the nodes share for Slurm, Ray or
    # Kubernetes jobs to be preempted (only then do such centers register `preempt`).
    checkpoint_dir: Path | None = None
    # Whether the operator chose `checkpoint_dir` (set from it, not by the caller).
    checkpoint_dir_set: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if not self.center:
            raise ValidationError("the agent needs its center id", field="center")
        # One URL, or several control-plane replicas "URL1,URL2" (protocol.failover).
        parse_urls(self.server, field="server")
        if not self.token:
            raise ValidationError(
                "the agent needs its center token",
                field="token",
                hint="cnet admin center-token CENTER prints one; give it in --token-file",
            )
        if self.backend == "local":  # who local jobs run as (backends/local.py)
            from computenet.backends.local import resolve_run_as

            self.backend_options.setdefault("run_as", self.run_as)
            resolve_run_as(str(self.backend_options["run_as"]))  # refused here, not later
        self.state_dir = Path(self.state_dir) if self.state_dir else default_state_dir(self.center)
        self.data_root = Path(self.data_root) if self.data_root else self.state_dir / "data"
        self.checkpoint_dir_set = self.checkpoint_dir is not None
        # Absolute: jobs run in their own work dirs (and, elsewhere, on other nodes).
        self.checkpoint_dir = (
            Path(self.checkpoint_dir).expanduser()
            if self.checkpoint_dir
            else self.state_dir / "checkpoints"
        ).absolute()
        if self.checkpoint_dir.exists() and not self.checkpoint_dir.is_dir():
            raise ValidationError(
                f"{self.checkpoint_dir} is not a directory",
                field="checkpoint_dir",
                hint="give --checkpoint-dir a directory (made if missing)",
            )
        if self.checkpoint_dir.exists() and self.checkpoint_dir.stat().st_mode & 0o022:
            # Jobs (other uids) could make entries there: plant a link or a directory of
            # their own where another job's checkpoint directory is to be.
            raise ValidationError(
                f"{self.checkpoint_dir} is writable by other users than its owner",
                field="checkpoint_dir",
                hint=f"chmod go-w {self.checkpoint_dir} (the agent makes one 0700, as root 0711)",
            )


def pools_from_slots(slots: str | None) -> dict[str, int] | None:
    """Explicit pools when `slots` names chips (``H100=8``); None when it is a bare count."""
    if slots is None or "=" not in slots:
        return None
    return parse_pools(slots)


def slot_count(slots: str | None) -> int | None:
    """The bare slot count of ``--slots N``, if that is what was given."""
    if slots is None or "=" in slots:
        return None
    try:
        n = int(slots)
    except ValueError:
        n = 0
    if n < 1:
        raise ValidationError(
            f"'{slots}' is not a slot count", field="slots", hint="a number ≥ 1, or CHIP=N,..."
        )
    return n


def pools_from_network(network: str, center: str) -> dict[str, int]:
    """The center's pools in a network file (or built-in network)."""
    from computenet.catalog import load_network

    net = load_network(network)
    try:
        c = net.center(center)
    except KeyError:
        raise ValidationError(
            f"network '{net.name}' has no center '{center}'",
            field="center",
            hint=f"its centers: {', '.join(x.id for x in net.centers)}",
        ) from None
    return {p.chip: p.count for p in c.pools}


def pools_from_listing(centers: Any, center: str) -> dict[str, int] | None:
    """The center's pools from a ``GET /api/v1/centers`` reply, if it is there."""
    if not isinstance(centers, list):
        return None
    for view in centers:
        if isinstance(view, dict) and view.get("id") == center:
            out: dict[str, int] = {}
            for pool in view.get("pools", []):
                chip = pool.get("chip")
                count = pool.get("count", pool.get("total"))
                if isinstance(chip, str) and isinstance(count, int) and count > 0:
                    out[chip] = count
            return out or None
    return None


def resolve_pools(config: AgentConfig, fetch_centers: Any = None) -> dict[str, int]:
    """The agent's chip pools: --slots CHIP=N, else the network file, else the control plane.

    `fetch_centers` is a callable returning the ``/api/v1/centers`` JSON (may raise).
    A bare ``--slots N`` then sets every pool to N slots.
    """
    explicit = pools_from_slots(config.slots)
    if explicit:
        return explicit
    pools: dict[str, int] | None = None
    if config.network:
        pools = pools_from_network(config.network, config.center)
    elif fetch_centers is not None:
        try:
            pools = pools_from_listing(fetch_centers(), config.center)
        except ComputeNetError as exc:
            logger.info("could not learn this center's pools from the control plane: %s", exc)
    if not pools:
        raise ValidationError(
            f"cannot tell which chips center '{config.center}' has",
            field="slots",
            hint="give --network NAME_OR_FILE or --slots CHIP=N[,CHIP=N]",
        )
    n = slot_count(config.slots)
    return {chip: n for chip in pools} if n else pools
