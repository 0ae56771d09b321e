"""Inference services: the service file a user deploys once (docs/services.md).

A service is a model server run as replicas; each replica is an ordinary
long-running job (class ``inference``) tagged with the service's name in its
environment, so every agent and backend runs it unchanged. The agent gives a
replica its port in ``$PORT`` (and ``$CNET_SERVICE_PORT``) and tells the
control plane where it listens once the readiness probe answers.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from computenet.errors import ValidationError
from computenet.model import limits
from computenet.model.job import ChipRequest, JobSpec
from computenet.model.limits import Name

# The environment a replica job carries: which service and which replica slot it is.
SERVICE_ENV = "CNET_SERVICE"
REPLICA_ENV = "CNET_SERVICE_REPLICA"
READY_PATH_ENV = "CNET_SERVICE_READY_PATH"
# What the agent sets for the model server: the port to listen on (both names).
PORT_ENVS = ("PORT", "CNET_SERVICE_PORT")

MAX_REPLICAS = 64
"""The most replicas one service may ask for."""

# A replica is a job like any other: it needs an amount of work for the scheduler to
# plan chips with. A service runs until deleted, so the plan holds its chips for a day
# of a reference chip; billing uses the measured run time (per replica-hour).
REPLICA_PLAN_CU_HOURS = 24.0

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


REPLICA_CLASS = "inference"
"""The workload class of every replica's job: what its chips deliver and its bill are priced on."""


class Replicas(BaseModel):
    """How many replicas: `min` (0 allowed: scale to zero) up to `max`."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    min: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    max: int = Field(default=1, ge=1, le=MAX_REPLICAS)

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class Objective(BaseModel):
    """The latency objective: p99 time to first byte from the users' sites."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p99_ttfb_ms: float = Field(default=500.0, gt=0, le=600_000)


LOOKBACK_S = 30.0
"""The autoscaler's default look-back (Ray Serve's `look_back_period_s`): the in-flight
requests compared with the target are their mean over this many seconds, so one quiet
reading does not restart the wait to scale up (docs/services.md, "Autoscaling")."""

MAX_LOOKBACK_S = 3600.0
"""The longest look-back a service file may ask for."""

MAX_LOOKBACK_READINGS = 10_000
"""Readings one look-back holds at most (an hour of the keeper's half-second passes)."""


class Autoscale(BaseModel):
    """Scaling by demand: replicas follow the in-flight requests the gateways report.

    The count wanted is ``ceil(mean in flight / target_inflight)`` within min..max,
    the mean over the last `lookback_s` (`Lookback`); it changes only once it has
    held for the delay (up fast, down slowly: hysteresis, as Ray Serve's 30 s and
    600 s defaults).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    up_delay_s: float = Field(default=30.0, ge=0, le=86_400)
    down_delay_s: float = Field(default=600.0, ge=0, le=86_400)
    lookback_s: float = Field(
        default=LOOKBACK_S,
        gt=0,
        le=MAX_LOOKBACK_S,
        description="seconds of in-flight readings averaged before comparing with the target",
    )


class Lookback:
    """The autoscaler's look-back: the mean of the demand readings of the last `lookback_s`.

    One definition for the server's keeper (a reading each pass) and the
    simulator (a reading each tick): a reading taken at `t` counts while
    ``t > now - lookback_s``, and the latest always counts, so a look-back
    shorter than the readings' interval is the latest reading alone.
    """

    def __init__(self, lookback_s: float) -> None:
        self.lookback_s = lookback_s
        self._readings: deque[tuple[float, float]] = deque(maxlen=MAX_LOOKBACK_READINGS)

    def add(self, t: float, value: float) -> float:
        """Record the reading `value` taken at `t`; the mean now. Readings after `t` (a clock
        set back) are dropped: they cannot be within the look-back of a later one."""
        while self._readings and self._readings[-1][0] > t:
            self._readings.pop()
        self._readings.append((t, value))
        while len(self._readings) > 1 and self._readings[0][0] <= t - self.lookback_s:
            self._readings.popleft()
        return sum(v for _, v in self._readings) / len(self._readings)

    def __len__(self) -> int:
        return len(self._readings)


def move_hold_s(spec: ServiceSpec) -> float:
    """Real seconds a better placement must hold before a replica moves, and the least
    time between two moves of one service: the file's `down_delay_s` (its default without
    `autoscale:`), as a move stops a replica as scaling down does."""
    return (spec.autoscale or Autoscale()).down_delay_s


class ServiceSpec(BaseModel):
    """A service file's schema (YAML; see docs/services.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    command: str = Field(min_length=1, max_length=limits.MAX_COMMAND_CHARS)
    chips: ChipRequest = ChipRequest()
    replicas: Replicas = Replicas()
    target_inflight: int = Field(
        default=4, ge=1, le=10_000, description="in-flight requests one replica is sized for"
    )
    latency: Objective = Objective()
    budget_cny_per_hour: Decimal | None = Field(
        default=None,
        gt=0,
        le=limits.MAX_BUDGET_CNY,
        description="the most the replicas may cost per hour (replicas.min wins over it)",
    )
    residency: tuple[Name, ...] = Field(
        default=(),
        max_length=limits.MAX_CHIP_TYPES,
        description="centers or regions the replicas must stay in (empty: anywhere)",
    )
    autoscale: Autoscale | None = Field(
        default=None, description="scale by demand between min and max (absent: by hand only)"
    )
    readiness_path: str = Field(default="/", min_length=1, max_length=256, pattern=r"^/")
    env: dict[str, str] = Field(default_factory=dict, max_length=limits.MAX_ENV_VARS)

    @pydantic.field_validator("name")
    @classmethod
    def _name_form(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"'{v[:40]}' is not a service name: lower-case letters, digits and '-',"
                " starting with a letter, at most 40 characters"
            )
        return v

    def replica_job(self, slot: int, center: str | None = None) -> JobSpec:
        """The job spec of replica `slot` (pinned at `center` when given)."""
        env = dict(self.env)
        env.update(
            {SERVICE_ENV: self.name, REPLICA_ENV: str(slot), READY_PATH_ENV: self.readiness_path}
        )
        return JobSpec.model_validate(
            {
                "name": f"svc-{self.name}-{slot}",
                "class": REPLICA_CLASS,
                "command": self.command,
                "chips": self.chips.model_dump(mode="json", exclude_none=True),
                "work": {"cu_hours": REPLICA_PLAN_CU_HOURS * self.chips.count},
                "latency_class": "interactive",
                "env": env,
                "center": center,
            }
        )


def replicas_for(spec: ServiceSpec, inflight: float) -> int:
    """Replicas that `inflight` requests in flight (or held waiting) call for, within min..max."""
    want = math.ceil(inflight / spec.target_inflight - 1e-9) if inflight > 0 else 0
    return max(spec.replicas.min, min(spec.replicas.max, want))


def parse_service(raw: Any, *, where: str = "(file)") -> ServiceSpec:
    """Validate a parsed service file; `ValidationError` naming the field otherwise."""
    if isinstance(raw, ServiceSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ValidationError(
            "a service file must be a YAML mapping (name:, command:, chips:, replicas: ...)",
            field=where,
            hint="see docs/services.md, 'The service file'",
        )
    try:
        spec = ServiceSpec.model_validate(dict(raw))
        spec.replica_job(0)  # the replica's job must pass the job checks too (env bounds)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or where
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ValidationError(
            msg, field=field, hint="fix this field in the service file and try again"
        ) from exc
    return spec


def parse_service_text(text: str, *, where: str = "(file)") -> ServiceSpec:
    """A service file's YAML text as a validated spec."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(
            f"not valid YAML: {str(exc).splitlines()[0]}", field=where, hint="check the syntax"
        ) from exc
    return parse_service(raw, where=where)
