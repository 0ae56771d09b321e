"""Server settings (read once at the edge) and the network clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from computenet.catalog import load_network
from computenet.errors import ValidationError
from computenet.model import Network, limits
from computenet.model.center import CST
from computenet.protocol.fencing import DEFAULT_LEASE_TIMEOUT_S, LeaseRule, lease_rule
from computenet.scheduler import STRATEGIES
from computenet.scheduler.patience import check_patience
from computenet.scheduler.plugins import PROFILES
from computenet.scheduler.snapshot import DEFAULT_PATIENCE_H

DEFAULT_DB_URL = "sqlite:///computenet.db"


class NetworkClock:
    """Real time → network time: ``now = epoch_network + (real - epoch_real) × time_scale``.

    Placements, deadlines, tariffs and bills are in network time (aware, CST);
    heartbeats and lease timeouts stay in real seconds (`real()`).
    """

    def __init__(
        self,
        epoch_network: datetime,
        time_scale: float,
        *,
        epoch_real: float | None = None,
        real: Callable[[], float] = time.time,
    ) -> None:
        if epoch_network.tzinfo is None:
            raise ValidationError("the clock epoch needs a timezone", field="epoch")
        self._real = real
        self.time_scale = float(time_scale)
        self.epoch_real = real() if epoch_real is None else float(epoch_real)
        self.epoch_network = epoch_network.astimezone(CST)

    def real(self) -> float:
        """Real unix seconds now."""
        return self._real()

    def to_network(self, real_s: float) -> datetime:
        """The network instant at real unix time `real_s`."""
        return self.epoch_network + timedelta(seconds=(real_s - self.epoch_real) * self.time_scale)

    def to_real(self, t: datetime) -> float:
        """The real unix time at which the network clock shows `t`."""
        return self.epoch_real + (t - self.epoch_network).total_seconds() / self.time_scale

    def now(self) -> datetime:
        """Network time now (CST)."""
        return self.to_network(self.real())


@dataclass(frozen=True)
class Settings:
    """Everything the control plane is configured with; built once by `cnet server` or a test.

    `epoch` is the network instant at which the clock starts; when None, a
    database that already has a clock continues it, and a new one starts at
    real now. `real_time` is the wall clock (tests pass a fake one).
    `run_loop` starts the background scheduling/reconciling thread.
    """

    db_url: str = DEFAULT_DB_URL
    host: str = "127.0.0.1"
    port: int = 8080
    network: Network = field(default_factory=lambda: load_network("demo"))
    heartbeat_interval_s: float = 2.0
    lease_timeout_s: float = DEFAULT_LEASE_TIMEOUT_S
    cycle_interval_s: float = 1.0
    # Replicas on one database: the leader lease (real seconds); renewed every third of it.
    leader_lease_s: float = 5.0
    epoch: datetime | None = None
    profile: str = "min-cost"
    # The cycle strategy, by name (scheduler.STRATEGIES: greedy, batch-optimizer, ...).
    strategy: str = "greedy"
    # The longest a batch job without a deadline may be held for cheaper power (hours;
    # 0: never held). Quotes and placement reasons say it (scheduler.patience).
    patience_h: float = DEFAULT_PATIENCE_H
    ticket_ttl_s: float = 300.0  # fetch tickets: enough to start a transfer, no more
    run_loop: bool = True
    migrate: bool = True
    real_time: Callable[[], float] = time.time
    sim_reports_dir: Path = Path("sim-reports")

    # Request bodies (bytes): the user API, and the center protocol (log appends).
    max_body_bytes: int = limits.MAX_BODY_BYTES
    max_center_body_bytes: int = limits.MAX_CENTER_BODY_BYTES
    # Per-tenant defaults (0 = no limit); a tenant's row may override them.
    max_pending_jobs: int = 10_000
    submits_per_s: float = 1000.0
    # GET /metrics (server/metrics.py): scrapers send this token or an admin's; None: admins only.
    metrics_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not 1.0 <= self.ticket_ttl_s <= 86_400.0:
            raise ValidationError(
                "must be between 1 s and a day",
                field="ticket_ttl_s",
                hint="a few minutes: long enough to start a transfer (default 300)",
            )
        for name in ("max_body_bytes", "max_center_body_bytes"):
            if getattr(self, name) < 1024:
                raise ValidationError("must be at least 1024 bytes", field=name)
        if self.max_pending_jobs < 0 or not 0 <= self.submits_per_s <= 1e6:
            raise ValidationError(
                "per-tenant limits must be >= 0 (0: no limit)",
                field="max_pending_jobs" if self.max_pending_jobs < 0 else "submits_per_s",
            )
        for name in (
            "heartbeat_interval_s",
            "lease_timeout_s",
            "cycle_interval_s",
            "leader_lease_s",
        ):
            if getattr(self, name) <= 0:
                raise ValidationError("must be > 0", field=name)
        if self.lease_rule.fence_after_s <= self.heartbeat_interval_s:
            # Agents fence at T/2 without an acknowledged heartbeat: several must fit in.
            raise ValidationError(
                "must be longer than twice heartbeat_interval_s",
                field="lease_timeout_s",
                hint="a few heartbeats long, e.g. 10× the heartbeat interval",
            )
        if self.profile not in PROFILES:
            raise ValidationError(
                f"unknown scheduling profile '{self.profile}'",
                field="profile",
                hint="one of " + ", ".join(sorted(PROFILES)),
            )
        STRATEGIES.get_checked(self.strategy)
        check_patience(self.patience_h, "patience_h")
        if self.epoch is not None and self.epoch.tzinfo is None:
            raise ValidationError("needs a timezone, e.g. 2026-06-01T00:00:00+08:00", field="epoch")

    @property
    def lease_rule(self) -> LeaseRule:
        """When agents fence and when the control plane requeues (protocol.fencing)."""
        return lease_rule(self.lease_timeout_s)

    @property
    def time_scale(self) -> float:
        """Network seconds per real second (from the network file)."""
        return self.network.time_scale

    @classmethod
    def from_options(
        cls,
        *,
        db: str | None = None,
        host: str = "127.0.0.1",
        port: int = 8080,
        network: str | Path | Network = "demo",
        epoch: str | datetime | None = None,
        **extra: object,
    ) -> Settings:
        """Settings from command-line style values (network by name or path, epoch as ISO text)."""
        net = network if isinstance(network, Network) else load_network(network)
        at: datetime | None
        if isinstance(epoch, str):
            try:
                at = datetime.fromisoformat(epoch)
            except ValueError as exc:
                raise ValidationError(f"'{epoch}' is not an ISO-8601 time", field="epoch") from exc
        else:
            at = epoch
        return cls(
            db_url=db or DEFAULT_DB_URL,
            host=host,
            port=port,
            network=net,
            epoch=at,
            **extra,  # type: ignore[arg-type]
        )
