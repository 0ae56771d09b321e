"""The Ray backend: jobs through the Ray Jobs API of an existing Ray cluster.

The agent needs the cluster's Jobs API address (the dashboard, e.g.
``http://head:8265``), given as `address` or ``RAY_ADDRESS``, and the
``ray[default]`` package for `ray.job_submission.JobSubmissionClient`.

- **Idempotency.** The submission id is ``cnet-<key>`` (see `_external.key_name`):
  Ray refuses a second job with the same id, and `find` is one lookup, so a
  restarted agent re-attaches to what it started.
- **Chips.** A job of N chips reserves N units of the chip's Ray resource for
  its entrypoint: ``CPU`` for CPU chips, ``GPU`` for CUDA/ROCm chips, ``NPU``
  for Ascend, or what `chip_resources` says (``A100=GPU,MLU370-X8=MLU``).
- **Capacity.** From the cluster's resource totals and usage as the dashboard
  reports them (``/api/cluster_status``).
- **Logs.** The Jobs API keeps the entrypoint's output; read by byte offset.
- **Cancel.** ``stop_job``; a stopped job reads as CANCELLED.
- **Labels.** Each submission's metadata names its center and key, so `list_jobs`
  finds this center's jobs in Ray's job table even with the agent's state gone.
- **Isolation.** The job gets `BackendJob.env` as its runtime env
  (``runtime_env={"env_vars": ...}``) on top of the environment of the Ray worker
  that runs it — the Ray cluster's, never the agent's: the agent only talks to the
  Jobs API over HTTP. The job runs as the user the Ray cluster runs as; the agent
  cannot change that, so run Ray as an unprivileged user that cannot read the
  agent's files (docs/backends.md).
"""

from __future__ import annotations

import logging
import os
import shlex
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from computenet.backends._external import (
    catalog_stack,
    is_local_host,
    job_env,
    key_name,
    parse_mapping,
    slice_log,
    utc_from_ms,
)
from computenet.backends.base import BackendJob, BackendState, BackendStatus, Capability
from computenet.backends.registry import parse_pools
from computenet.errors import BackendError, ValidationError
from computenet.model.service import SERVICE_ENV
from computenet.protocol import PoolCapacity

logger = logging.getLogger(__name__)

_STATES = {
    "PENDING": BackendState.PENDING,
    "RUNNING": BackendState.RUNNING,
    "SUCCEEDED": BackendState.SUCCEEDED,
    "FAILED": BackendState.FAILED,
    "STOPPED": BackendState.CANCELLED,
}
# Which Ray resource a chip's software stack uses by default.
_STACK_RESOURCE = {"cpu": "CPU", "cuda": "GPU", "rocm": "GPU", "cann": "NPU"}


def _default_resource(chip: str) -> str:
    """CPU for CPU chips, GPU for CUDA/ROCm, NPU for Ascend; else the chip name itself."""
    stack = catalog_stack(chip)
    if stack is None:
        return "CPU" if chip.lower().startswith("cpu") else "GPU"
    return _STACK_RESOURCE.get(stack, chip)


def _not_found(exc: Exception) -> bool:
    text = str(exc)
    return "404" in text and "does not exist" in text


class RayBackend:
    """Runs jobs through a Ray cluster's Jobs API (see module doc).

    Parameters: `state_dir` (unused beyond a place for future state; accepted for
    the registry); `pools` (chip type → count, naming this center's chips);
    `address` (Jobs API URL, default ``RAY_ADDRESS``); `chip_resources` (per-chip
    Ray resource name, ``CHIP=RESOURCE,...``); `cpus_per_chip` (CPUs reserved per
    accelerator chip as well); `timeout_s` (per HTTP request); `prefix` (submission
    id prefix, default ``cnet``); `headers` (extra HTTP headers, e.g. auth);
    `center` (the center id its jobs are labelled with, see `list_jobs`).
    """

    kind = "ray"
    capabilities = (
        Capability.CANCEL | Capability.LOGS | Capability.REATTACH | Capability.ACCELERATORS
    )

    def __init__(
        self,
        state_dir: str | Path | None = None,
        pools: Mapping[str, int] | str | None = None,
        *,
        address: str | None = None,
        chip_resources: Mapping[str, str] | str | None = None,
        cpus_per_chip: float | str = 0,
        timeout_s: float | str = 30.0,
        prefix: str = "cnet",
        headers: Mapping[str, str] | None = None,
        chip: str | None = None,
        center: str = "",
    ) -> None:
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise ValidationError(
                "the ray backend needs the cluster's Jobs API address",
                field="address",
                hint="pass address=http://HEAD:8265 or set RAY_ADDRESS",
            )
        if "://" not in address:
            address = f"http://{address}"
        if not address.startswith(("http://", "https://")):
            raise ValidationError(
                f"'{address}' is not an http(s) Jobs API address",
                field="address",
                hint="the dashboard address, e.g. http://HEAD:8265 (not ray://)",
            )
        self.address = address.rstrip("/")
        self.state_dir = Path(state_dir) if state_dir else None
        self.pools = parse_pools(pools)
        if chip and chip not in self.pools:
            self.pools[chip] = 1
        if not self.pools:
            self.pools = {"CPU-node": 1}
        overrides = parse_mapping(chip_resources, "chip_resources")
        self.resources = {c: overrides.get(c) or _default_resource(c) for c in self.pools}
        self.cpus_per_chip = float(cpus_per_chip)
        self.timeout_s = float(timeout_s)
        self.prefix = prefix
        self.headers = dict(headers or {})
        self.center = center
        self._client_obj: Any = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ client

    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                try:
                    from ray.job_submission import JobSubmissionClient
                except ImportError as exc:
                    raise BackendError(
                        "the ray backend needs ray[default]", hint="pip install 'ray[default]'"
                    ) from exc
                try:
                    self._client_obj = JobSubmissionClient(self.address, headers=self.headers)
                except Exception as exc:
                    raise BackendError(
                        f"cannot reach the Ray Jobs API at {self.address}: {exc}",
                        hint="is the Ray head (dashboard) up?",
                    ) from exc
            return self._client_obj

    def _info(self, submission_id: str) -> Any | None:
        """The job's JobDetails, or None when Ray has no such job."""
        try:
            return self._client().get_job_info(submission_id)
        except BackendError:
            raise
        except Exception as exc:
            if _not_found(exc):
                return None
            raise BackendError(f"Ray get_job_info({submission_id}) failed: {exc}") from exc

    # ---------------------------------------------------------------- contract

    def submission_id(self, idempotency_key: str) -> str:
        """The Ray submission id that carries `idempotency_key`."""
        return key_name(self.prefix, idempotency_key)

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Submit the entrypoint (or return the submission already made under this key)."""
        resource = self.resources.get(job.chip)
        if resource is None:
            raise ValidationError(
                f"this center has no {job.chip} pool",
                field="chip",
                hint=f"pools: {', '.join(self.pools)}",
            )
        sid = self.submission_id(idempotency_key)
        with self._lock:
            if self._info(sid) is not None:
                return sid
            env = job_env(job)
            ids = ",".join(str(i) for i in range(job.count))
            env.setdefault("CNET_CHIP_IDS", ids)
            env.setdefault("CNET_VISIBLE_DEVICES", ids)
            command = job.command
            if job.workdir:
                command = f"cd {shlex.quote(job.workdir)} && {command}"
            # The command travels in the environment: Ray echoes the entrypoint into the
            # job's log, and a command there would show its text as if it were output.
            env["CNET_ENTRYPOINT"] = command
            kwargs: dict[str, Any] = {
                "entrypoint": 'exec bash -c "$CNET_ENTRYPOINT"',
                "submission_id": sid,
                "runtime_env": {"env_vars": env},
                "metadata": {
                    "computenet_job_id": job.job_id,
                    "computenet_attempt": str(job.attempt),
                    "computenet_chip": job.chip,
                    "computenet_key": idempotency_key,
                    "computenet_center": self.center,
                },
            }
            if resource == "CPU":
                kwargs["entrypoint_num_cpus"] = job.count
            elif resource == "GPU":
                kwargs["entrypoint_num_gpus"] = job.count
            else:
                kwargs["entrypoint_resources"] = {resource: float(job.count)}
            if resource != "CPU" and self.cpus_per_chip:
                kwargs["entrypoint_num_cpus"] = self.cpus_per_chip * job.count
            if SERVICE_ENV in job.env:
                # The agent probes and advertises a replica at its own host
                # (agent/serving.py): pin the entrypoint to the Ray node that is that host.
                pin = {f"node:{self._local_node_ip()}": 0.001}
                kwargs["entrypoint_resources"] = {**kwargs.get("entrypoint_resources", {}), **pin}
            try:
                self._client().submit_job(**kwargs)
            except BackendError:
                raise
            except Exception as exc:
                if "already exists" in str(exc):  # a racing submit under the same key won
                    return sid
                raise BackendError(f"Ray submit_job for {job.job_id} failed: {exc}") from exc
            logger.info("submitted %s to Ray as %s (%s × %s)", job.job_id, sid, job.count, resource)
            return sid

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """Status of each submission; unknown ones are UNKNOWN."""
        out: dict[str, BackendStatus] = {}
        for handle in handles:
            info = self._info(handle)
            if info is None:
                out[handle] = BackendStatus(handle, BackendState.UNKNOWN, message="no such job")
                continue
            raw = str(getattr(info.status, "value", info.status))
            state = _STATES.get(raw, BackendState.UNKNOWN)
            code = getattr(info, "driver_exit_code", None)
            if state is BackendState.SUCCEEDED and code is None:
                code = 0
            if state is BackendState.CANCELLED:
                code = None
            final = state in (BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED)
            message = "" if state is BackendState.SUCCEEDED else (info.message or "")
            out[handle] = BackendStatus(
                handle,
                state,
                code if final else None,
                # Ray's start_time is when the submission was accepted, seconds
                # before the driver runs; while running, let the agent stamp the
                # moment it sees it. Only a job first seen finished keeps it.
                utc_from_ms(info.start_time) if final else None,
                utc_from_ms(info.end_time) if final else None,
                message.splitlines()[0] if message else "",
            )
        return out

    def cancel(self, handle: str) -> None:
        """``stop_job``; a finished or unknown job is a no-op."""
        try:
            self._client().stop_job(handle)
        except BackendError:
            raise
        except Exception as exc:
            if _not_found(exc):
                return
            raise BackendError(f"Ray stop_job({handle}) failed: {exc}") from exc

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """The entrypoint's output from byte `offset` on, and the next offset."""
        try:
            text = self._client().get_job_logs(handle)
        except BackendError:
            raise
        except Exception as exc:
            if _not_found(exc):
                return "", offset
            raise BackendError(f"Ray get_job_logs({handle}) failed: {exc}") from exc
        return slice_log(text.encode("utf-8")[offset:], offset)

    def find(self, idempotency_key: str) -> str | None:
        """The submission id made under this key, if Ray knows it."""
        sid = self.submission_id(idempotency_key)
        return sid if self._info(sid) is not None else None

    def list_jobs(self) -> dict[str, str]:
        """Key → submission id of every job Ray's table holds for this center."""
        try:
            jobs = self._client().list_jobs()
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"Ray list_jobs failed: {exc}") from exc
        out: dict[str, str] = {}
        for info in jobs:
            meta = getattr(info, "metadata", None) or {}
            sid = getattr(info, "submission_id", None) or ""
            key = meta.get("computenet_key")
            if (
                key
                and meta.get("computenet_center", "") == self.center
                and sid == self.submission_id(key)
            ):
                out[key] = sid
        return out

    def capacity(self) -> list[PoolCapacity]:
        """Each chip pool's total and free units of its Ray resource, cluster-wide."""
        usage = self._usage()
        out = []
        for chip in self.pools:
            used, total = usage.get(self.resources[chip], (0.0, 0.0))
            # The network planned with what it declared; offer no more than that.
            t = min(int(total), self.pools[chip])
            out.append(PoolCapacity(chip=chip, total=t, free=max(0, min(t, int(total - used)))))
        return out

    def close(self, keep_jobs: bool = False) -> None:
        """Nothing to release: the jobs belong to the Ray cluster."""

    # ------------------------------------------------------------------ helpers

    def _local_node_ip(self) -> str:
        """The IP of the live Ray node on the agent's host; BackendError when none is."""
        try:
            r = httpx.get(
                f"{self.address}/api/v0/nodes",
                params={"detail": "false", "limit": "10000"},
                headers=self.headers,
                timeout=self.timeout_s,
            )
            r.raise_for_status()
            nodes = r.json()["data"]["result"]["result"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"cannot list the Ray nodes at {self.address}: {exc}",
                hint="is the Ray head (dashboard) up?",
            ) from exc
        for node in nodes:
            ip = str(node.get("node_ip") or "")
            if node.get("state") == "ALIVE" and is_local_host(ip):
                return ip
        raise BackendError(
            "the Ray backend cannot run a service replica here: no Ray node runs on the "
            "agent's own host, and the agent can probe and advertise a replica only there",
            hint="run the agent on a node of the Ray cluster (or deploy elsewhere)",
        )

    def _usage(self) -> dict[str, tuple[float, float]]:
        """Resource name → (used, total), from the dashboard's cluster status."""
        try:
            r = httpx.get(
                f"{self.address}/api/cluster_status",
                params={"format": "0"},
                headers=self.headers,
                timeout=self.timeout_s,
            )
            r.raise_for_status()
            report = r.json()["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise BackendError(
                f"cannot read cluster resources from {self.address}: {exc}",
                hint="is the Ray head (dashboard) up?",
            ) from exc
        out: dict[str, tuple[float, float]] = {}
        for name, pair in report.items():
            try:
                out[name] = (float(pair[0]), float(pair[1]))
            except (TypeError, ValueError, IndexError):
                continue
        return out
