"""A fake control plane speaking the center protocol, for agent tests (no server process).

It answers through `httpx.MockTransport`; `down = True` makes every call fail
to connect; with `hold_leases` a lease call waits up to its ``wait_s`` for a
job to be queued (a long poll; otherwise it answers at once, like a control
plane from before ``wait_s``); and `refuse[(job_id, kind)] = status` answers a job's reports with
that HTTP status. It keeps everything the agent told it for the tests to read.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from computenet.model import CostBreakdown, JobSpec, Placement
from computenet.protocol import (
    HeartbeatRequest,
    LeasedJob,
    LogAppend,
    RegisterRequest,
    ReplicaReport,
    StagingInput,
    StatusReport,
    UsageReport,
)

_JOB = re.compile(r"/center/v1/jobs/([^/]+)/(status|logs|usage)")
_REPLICA = re.compile(r"/center/v1/datasets/([^/]+)/replicas")


def lease(
    job_id: str,
    command: str,
    *,
    chip: str = "H100",
    count: int = 1,
    attempt: int = 1,
    inputs: list[StagingInput] | None = None,
    env: dict[str, str] | None = None,
    preemptible: bool = False,
) -> LeasedJob:
    """A leased job as the control plane would send it."""
    now = datetime.now(UTC)
    spec = JobSpec.model_validate(
        {
            "name": job_id,
            "class": "llm-train",
            "command": command,
            "work": {"cu_hours": 1},
            "env": env or {},
            "preemptible": preemptible,
        }
    )
    zero = Decimal(0)
    placement = Placement(
        center="east",
        chip=chip,
        count=count,
        planned_start=now,
        transfer_s=0,
        run_s=60,
        finish=now,
        cost=CostBreakdown(energy_cny=zero, service_cny=zero, transfer_cny=zero),
        kwh=0,
        co2_kg=0,
        cu_hours=1,
    )
    return LeasedJob(
        job_id=job_id,
        attempt=attempt,
        tenant="t",
        spec=spec,
        placement=placement,
        inputs=inputs or [],
        planned_run_s=0.5,
    )


class FakePlane:
    """See module doc."""

    def __init__(
        self,
        *,
        heartbeat_interval_s: float = 0.2,
        lease_timeout_s: float = 30.0,
        time_scale: float = 1.0,
        data_scale: float = 1.0,
        data_key: str = "east-key",
        hold_leases: bool = False,
    ):
        self.lock = threading.Lock()
        self.heartbeat_interval_s = heartbeat_interval_s
        self.lease_timeout_s = lease_timeout_s
        self.time_scale, self.data_scale, self.data_key = time_scale, data_scale, data_key
        self.queue: list[LeasedJob] = []
        self.hold_leases = hold_leases
        self.lease_waits: list[float] = []  # each lease call's wait_s
        self._queued = threading.Condition(self.lock)
        self.registrations: list[RegisterRequest] = []
        self.heartbeats: list[HeartbeatRequest] = []
        self.statuses: dict[str, list[StatusReport]] = {}
        self.logs: dict[str, str] = {}
        self.usage: dict[str, list[UsageReport]] = {}
        self.replicas: list[tuple[str, ReplicaReport]] = []
        self.cancel: set[str] = set()
        self.refuse: dict[tuple[str, str], int] = {}
        self.down = False
        self.calls = 0
        self.failed: list[str] = []  # paths of the calls made while `down`
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/center/v1/lease":
            wait = float(json.loads(request.content or b"{}").get("wait_s", 0.0))
            deadline = time.monotonic() + wait
            with self._queued:  # waiting releases the lock
                self.lease_waits.append(wait)
                while self.hold_leases and not self.queue and not self.down:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._queued.wait(min(left, 0.02))
        with self.lock:
            self.calls += 1
            if self.down:
                self.failed.append(request.url.path)
                raise httpx.ConnectError("connection refused", request=request)
            body: Any = json.loads(request.content or b"null")
            path = request.url.path
            if path == "/center/v1/register":
                self.registrations.append(RegisterRequest.model_validate(body))
                return httpx.Response(
                    200,
                    json={
                        "center_id": body["center_id"],
                        "heartbeat_interval_s": self.heartbeat_interval_s,
                        "lease_timeout_s": self.lease_timeout_s,
                        "time_scale": self.time_scale,
                        "data_scale": self.data_scale,
                        "data_key": self.data_key,
                    },
                )
            if path == "/center/v1/heartbeat":
                hb = HeartbeatRequest.model_validate(body)
                self.heartbeats.append(hb)
                cancel = sorted(self.cancel & set(hb.running))
                return httpx.Response(
                    200, json={"cancel": cancel, "lease_timeout_s": self.lease_timeout_s}
                )
            if path == "/center/v1/lease":
                jobs, self.queue = self.queue[: body["max_jobs"]], self.queue[body["max_jobs"] :]
                return httpx.Response(
                    200, json={"jobs": [j.model_dump(mode="json", by_alias=True) for j in jobs]}
                )
            if m := _JOB.fullmatch(path):
                job_id, kind = m.groups()
                if (job_id, kind) in self.refuse:
                    code = self.refuse[(job_id, kind)]
                    return httpx.Response(
                        code, json={"error": "refused", "field": None, "hint": None}
                    )
                if kind == "status":
                    self.statuses.setdefault(job_id, []).append(StatusReport.model_validate(body))
                elif kind == "usage":
                    self.usage.setdefault(job_id, []).append(UsageReport.model_validate(body))
                else:
                    append = LogAppend.model_validate(body)
                    have = self.logs.get(job_id, "").encode()
                    if append.offset > len(have):
                        return httpx.Response(409, json={"error": "gap in logs"})
                    new = have[: append.offset] + append.text.encode()
                    self.logs[job_id] = new.decode() if len(new) > len(have) else have.decode()
                return httpx.Response(200, json={"ok": True})
            if m := _REPLICA.fullmatch(path):
                self.replicas.append((m.group(1), ReplicaReport.model_validate(body)))
                return httpx.Response(200, json={"ok": True})
            return httpx.Response(404, json={"error": f"no route {path}"})

    def states(self, job_id: str) -> list[str]:
        """The states reported for a job, in order."""
        with self.lock:
            return [s.state for s in self.statuses.get(job_id, [])]

    def final(self, job_id: str) -> StatusReport | None:
        """The final status reported for a job, if any."""
        with self.lock:
            for s in self.statuses.get(job_id, []):
                if s.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    return s
            return None

    def wait(self, check: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
        """Wait until `check()` holds, or fail."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or check}")
            time.sleep(0.05)
