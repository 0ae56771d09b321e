"""The Kubernetes backend: each job is a ``batch/v1`` Job, through the official client.

**Not verified on a real cluster.** No Kubernetes API server runs where this
project is built and tested; the backend is tested against
`tests/helpers/kubernetes_fake.py` (in the tests, not shipped), an in-process fake of the API
calls it makes (the contract suite runs on it). docs/backends.md says what that
does and does not prove.

- **Chips → resource limits.** A job of N chips gets ``limits: {RESOURCE: N}``
  where RESOURCE follows the chip's software stack (``nvidia.com/gpu`` for CUDA,
  ``huawei.com/Ascend910`` for CANN, ``amd.com/gpu`` for ROCm,
  ``cambricon.com/mlu`` for Neuware, ``cpu`` for CPU chips) unless
  `chip_resources` says otherwise; `chip_node_selectors` pins a chip type to
  labelled nodes (``A100=nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB``).
- **Idempotency and re-attachment.** The Job's name is derived from the key
  (``cnet-<slug>-<hash>``), it carries the key in an annotation and the job id,
  attempt and key hash in labels; `submit` treats 409 Conflict as "already
  there", and `find` reads the Job by name.
- **Status.** From the Job's conditions; the exit code from its pod's
  terminated container. Cancel suspends the Job (its pods are deleted) and marks
  it ``computenet.io/cancelled``, so it reads CANCELLED while the Job stays.
- **Capacity.** Allocatable RESOURCE on ready, schedulable nodes (matching the
  chip's selector) minus what non-terminated pods on them request, at most the
  pool the network declares.
- **Isolation.** Pods get no service-account token
  (``automountServiceAccountToken: false``), run as a non-root user
  (`run_as_user`, 65534 by default) with ``allowPrivilegeEscalation: false``, all
  capabilities dropped, the ``RuntimeDefault`` seccomp profile and a read-only
  root filesystem (an ``emptyDir`` at ``/tmp`` for scratch; ``read_only_root=false``
  for images that must write elsewhere). The environment is `BackendJob.env` only.
- **Service replicas.** A replica's pod listens at its pod IP on the port the
  agent passed in ``$PORT``; `service_address` reports that (``status.podIP``
  of the running pod) and the agent relays to it from its own data host
  (agent/relay.py), since the gateways may only be sent to that host.
- **Labels.** ``computenet.io/center`` (and the exact id in an annotation) lets
  `list_jobs` find this center's Jobs with the agent's state gone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from computenet.backends._external import catalog_stack, job_env, parse_mapping, slice_log
from computenet.backends.base import BackendJob, BackendState, BackendStatus, Capability
from computenet.backends.registry import parse_pools
from computenet.errors import BackendError, ValidationError
from computenet.model.service import PORT_ENVS
from computenet.protocol import PoolCapacity

logger = logging.getLogger(__name__)

LABEL_JOB = "computenet.io/job-id"
LABEL_ATTEMPT = "computenet.io/attempt"
LABEL_KEY = "computenet.io/key-hash"
LABEL_HANDLE = "computenet.io/handle"
LABEL_CENTER = "computenet.io/center"
ANN_CENTER = "computenet.io/center"
MANAGED_BY = "app.kubernetes.io/managed-by"
ANN_KEY = "computenet.io/key"
ANN_CANCELLED = "computenet.io/cancelled"
CONTAINER = "job"

_STACK_RESOURCE = {
    "cuda": "nvidia.com/gpu",
    "cann": "huawei.com/Ascend910",
    "rocm": "amd.com/gpu",
    "neuware": "cambricon.com/mlu",
    "cpu": "cpu",
}
_SUFFIX = {
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def quantity(text: Any) -> Decimal:
    """A Kubernetes resource quantity (``"8"``, ``"500m"``, ``"4Gi"``) as a Decimal."""
    s = str(text).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if s.endswith(suffix):
            try:
                return Decimal(s[: -len(suffix)]) * _SUFFIX[suffix]
            except InvalidOperation:
                break
    try:
        return Decimal(s)
    except InvalidOperation:
        return Decimal(0)


def label_value(text: str) -> str:
    """`text` made a valid label value (≤63 chars, alphanumeric at both ends)."""
    v = _LABEL_VALUE.sub("-", text)[:63].strip("-_.")
    return v or "x"


def _default_resource(chip: str) -> str:
    stack = catalog_stack(chip)
    if stack is None:
        return "cpu" if chip.lower().startswith("cpu") else "nvidia.com/gpu"
    return _STACK_RESOURCE.get(stack, "nvidia.com/gpu")


def _status_code(exc: Exception) -> int | None:
    code = getattr(exc, "status", None)
    return code if isinstance(code, int) else None


def _utc(ts: Any) -> datetime | None:
    if ts is None:
        return None
    if isinstance(ts, datetime):
        return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


class KubernetesBackend:
    """Runs jobs as batch/v1 Jobs in one namespace (see module doc; unverified on a real cluster).

    Parameters: `state_dir` (accepted for the registry; unused); `pools` (chip type
    → count, naming this center's chips); `namespace`; `image` (the container image
    jobs run in); `shell` (runs the command: ``SHELL -c COMMAND``); `chip_resources`
    and `chip_node_selectors` (per-chip ``CHIP=VALUE,...`` overrides);
    `service_account`; `image_pull_secret`; `ttl_s` (how long finished Jobs stay,
    ``ttlSecondsAfterFinished``); `prefix` (Job name prefix); `kubeconfig`,
    `context` and `in_cluster` (how to reach the API server: ``"auto"`` tries the
    in-cluster service account, then the kubeconfig); `batch_api` and `core_api`
    (ready-made API objects, e.g. the fake's, instead of loading a config);
    `center` (the center id its Jobs are labelled with, see `list_jobs`);
    `run_as_user` and `run_as_group` (the pod's non-root user; group defaults to
    the user); `read_only_root` (a read-only root filesystem, default true).
    """

    kind = "kubernetes"
    capabilities = (
        Capability.CANCEL | Capability.LOGS | Capability.REATTACH | Capability.ACCELERATORS
    )

    def __init__(
        self,
        state_dir: str | Path | None = None,
        pools: Mapping[str, int] | str | None = None,
        *,
        namespace: str = "default",
        image: str = "python:3.11-slim",
        shell: str = "/bin/sh",
        chip_resources: Mapping[str, str] | str | None = None,
        chip_node_selectors: Mapping[str, str] | str | None = None,
        service_account: str | None = None,
        image_pull_secret: str | None = None,
        ttl_s: int | str = 7 * 24 * 3600,
        prefix: str = "cnet",
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool | str = "auto",
        batch_api: Any = None,
        core_api: Any = None,
        chip: str | None = None,
        center: str = "",
        run_as_user: int | str = 65534,
        run_as_group: int | str | None = None,
        read_only_root: bool | str = True,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else None
        self.pools = parse_pools(pools)
        if chip and chip not in self.pools:
            self.pools[chip] = 1
        if not self.pools:
            raise ValidationError(
                "the kubernetes backend needs at least one chip pool",
                field="pools",
                hint="give pools like A100=8 (or --network for the agent)",
            )
        overrides = parse_mapping(chip_resources, "chip_resources")
        self.resources = {c: overrides.get(c) or _default_resource(c) for c in self.pools}
        self.selectors: dict[str, dict[str, str]] = {}
        for c, sel in parse_mapping(chip_node_selectors, "chip_node_selectors").items():
            k, sep, v = sel.partition("=")
            if not sep:
                raise ValidationError(
                    f"node selector '{sel}' of {c} is not LABEL=VALUE",
                    field="chip_node_selectors",
                    hint="e.g. A100=nvidia.com/gpu.product=A100",
                )
            self.selectors[c] = {k: v}
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?", prefix):
            raise ValidationError(
                f"prefix '{prefix}' is not a short DNS label",
                field="prefix",
                hint="lower-case letters, digits and '-', at most 20 characters",
            )
        self.namespace = namespace
        self.image = image
        self.shell = shell
        self.service_account = service_account or None
        self.image_pull_secret = image_pull_secret or None
        self.ttl_s = int(ttl_s)
        self.prefix = prefix
        self.center = center
        try:
            self.run_as_user = int(run_as_user)
            self.run_as_group = int(run_as_group if run_as_group not in (None, "") else run_as_user)
        except (TypeError, ValueError):
            raise ValidationError(
                f"run_as_user and run_as_group must be numeric ids: "
                f"{run_as_user!r}, {run_as_group!r}",
                field="run_as_user",
                hint="e.g. run_as_user=65534",
            ) from None
        if self.run_as_user <= 0:
            raise ValidationError(
                "pods may not run as root", field="run_as_user", hint="e.g. run_as_user=65534"
            )
        self.read_only_root = str(read_only_root).lower() not in ("false", "0", "no")
        self._config = (kubeconfig, context, in_cluster)
        self._batch = batch_api
        self._core = core_api
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ client

    def _apis(self) -> tuple[Any, Any]:
        with self._lock:
            if self._batch is None or self._core is None:
                try:
                    from kubernetes import client
                    from kubernetes import config as kube_config
                except ImportError as exc:
                    raise BackendError(
                        "the kubernetes backend needs the kubernetes client",
                        hint="pip install 'computenet[kubernetes]'",
                    ) from exc
                kubeconfig, context, in_cluster = self._config
                config: Any = kube_config  # the client's config module is untyped
                try:
                    if str(in_cluster).lower() in ("true", "1", "yes"):
                        config.load_incluster_config()
                    elif str(in_cluster).lower() == "auto":
                        try:
                            config.load_incluster_config()
                        except config.ConfigException:
                            config.load_kube_config(config_file=kubeconfig, context=context)
                    else:
                        config.load_kube_config(config_file=kubeconfig, context=context)
                except Exception as exc:
                    raise BackendError(
                        f"cannot load a Kubernetes configuration: {exc}",
                        hint="pass kubeconfig=PATH (and context=NAME) or run in the cluster",
                    ) from exc
                self._batch = self._batch or client.BatchV1Api()
                self._core = self._core or client.CoreV1Api()
            return self._batch, self._core

    def _call(self, what: str, fn: Any, *args: Any, missing_ok: bool = False, **kwargs: Any) -> Any:
        """Call the API; None on 404 when `missing_ok`, BackendError on any other failure."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if missing_ok and _status_code(exc) == 404:
                return None
            raise BackendError(f"Kubernetes {what} failed: {exc}") from exc

    # ---------------------------------------------------------------- contract

    def job_name(self, idempotency_key: str) -> str:
        """The Job name for `idempotency_key`: readable slug plus a hash (≤63 chars)."""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        slug = re.sub(r"[^a-z0-9]+", "-", idempotency_key.lower()).strip("-")[:30].strip("-")
        return "-".join(p for p in (self.prefix, slug, digest[:10]) if p)

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Create the Job (or return the one already created under this key)."""
        if job.chip not in self.resources:
            raise ValidationError(
                f"this center has no {job.chip} pool",
                field="chip",
                hint=f"pools: {', '.join(self.pools)}",
            )
        batch, _ = self._apis()
        name = self.job_name(idempotency_key)
        with self._lock:
            if self.find(idempotency_key) is not None:
                return name
            body = self._job_body(job, idempotency_key, name)
            try:
                batch.create_namespaced_job(self.namespace, body)
            except Exception as exc:
                if _status_code(exc) == 409:  # created by a racing submit under the same key
                    return name
                raise BackendError(f"Kubernetes create Job {name} failed: {exc}") from exc
            logger.info("created Job %s for %s (%s × %s)", name, job.job_id, job.count, job.chip)
            return name

    def poll(self, handles: list[str]) -> dict[str, BackendStatus]:
        """Status of each Job; unknown ones are UNKNOWN."""
        batch, _ = self._apis()
        out: dict[str, BackendStatus] = {}
        for handle in handles:
            obj = self._call(
                "read Job", batch.read_namespaced_job, handle, self.namespace, missing_ok=True
            )
            if obj is None:
                out[handle] = BackendStatus(handle, BackendState.UNKNOWN, message="no such job")
            else:
                out[handle] = self._status(handle, obj)
        return out

    def cancel(self, handle: str) -> None:
        """Suspend the Job (its pods go) and mark it cancelled; no-op when finished or unknown."""
        batch, _ = self._apis()
        obj = self._call(
            "read Job", batch.read_namespaced_job, handle, self.namespace, missing_ok=True
        )
        if obj is None:
            return
        annotations = (obj.metadata.annotations or {}) if obj.metadata else {}
        if annotations.get(ANN_CANCELLED) or self._finished(obj) is not None:
            return
        patch = {
            "metadata": {"annotations": {ANN_CANCELLED: datetime.now(UTC).isoformat()}},
            "spec": {"suspend": True},
        }
        self._call(
            "suspend Job",
            batch.patch_namespaced_job,
            handle,
            self.namespace,
            patch,
            missing_ok=True,
        )

    def logs(self, handle: str, offset: int = 0) -> tuple[str, int]:
        """The job container's output from byte `offset` on (empty once its pod is gone)."""
        _, core = self._apis()
        pod = self._pod(handle)
        if pod is None:
            return "", offset
        phase = pod.status.phase if pod.status else None
        if phase == "Pending":
            return "", offset
        text = self._call(
            "read pod log",
            core.read_namespaced_pod_log,
            pod.metadata.name,
            self.namespace,
            container=CONTAINER,
            missing_ok=True,
        )
        if not text:
            return "", offset
        return slice_log(str(text).encode("utf-8")[offset:], offset)

    def find(self, idempotency_key: str) -> str | None:
        """The Job made under this key (checked against its key annotation), if any."""
        batch, _ = self._apis()
        name = self.job_name(idempotency_key)
        obj = self._call(
            "read Job", batch.read_namespaced_job, name, self.namespace, missing_ok=True
        )
        if obj is None:
            return None
        annotations = (obj.metadata.annotations or {}) if obj.metadata else {}
        if annotations.get(ANN_KEY, idempotency_key) != idempotency_key:
            raise BackendError(
                f"Job {name} belongs to another key ({annotations.get(ANN_KEY)!r})",
                hint="two agents share a namespace and a prefix: give each its own prefix",
            )
        return name

    def list_jobs(self) -> dict[str, str]:
        """Key → Job name of every Job labelled for this center in the namespace."""
        batch, _ = self._apis()
        selector = f"{MANAGED_BY}=computenet,{LABEL_CENTER}={label_value(self.center)}"
        listed = self._call(
            "list Jobs", batch.list_namespaced_job, self.namespace, label_selector=selector
        )
        out: dict[str, str] = {}
        for obj in listed.items or []:
            meta = obj.metadata
            annotations = (meta.annotations or {}) if meta else {}
            key = annotations.get(ANN_KEY)
            if (
                key
                and annotations.get(ANN_CENTER, "") == self.center
                and meta.name == self.job_name(key)
            ):
                out[key] = meta.name
        return out

    def capacity(self) -> list[PoolCapacity]:
        """Each pool's allocatable chips on ready nodes and how many pods do not hold."""
        _, core = self._apis()
        nodes = self._call("list nodes", core.list_node).items or []
        pods = (
            self._call(
                "list pods",
                core.list_pod_for_all_namespaces,
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
            ).items
            or []
        )
        used_by_node: dict[str, dict[str, Decimal]] = {}
        for pod in pods:
            node = pod.spec.node_name if pod.spec else None
            if not node:
                continue
            acc = used_by_node.setdefault(node, {})
            for c in pod.spec.containers or []:
                res = c.resources
                req = dict((res.limits or {}) if res else {})
                req.update((res.requests or {}) if res else {})
                for name, q in req.items():
                    acc[name] = acc.get(name, Decimal(0)) + quantity(q)
        out = []
        for chip, resource in self.resources.items():
            sel = self.selectors.get(chip, {})
            total = free = Decimal(0)
            for node in nodes:
                labels = (node.metadata.labels or {}) if node.metadata else {}
                if any(labels.get(k) != v for k, v in sel.items()):
                    continue
                alloc = quantity(
                    ((node.status.allocatable or {}) if node.status else {}).get(resource, 0)
                )
                total += alloc
                if self._node_ready(node):
                    used = used_by_node.get(node.metadata.name, {}).get(resource, Decimal(0))
                    free += max(Decimal(0), alloc - used)
            # The network planned with what it declared; offer no more than that.
            t = min(math.floor(total), self.pools[chip])
            out.append(PoolCapacity(chip=chip, total=t, free=min(t, math.floor(free))))
        return out

    def service_address(self, handle: str) -> tuple[str, int] | None:
        """Where a replica's pod listens: its pod IP and ``$PORT``; None until it runs with an IP.

        The optional backend method of `computenet.backends.base.service_address`.
        """
        pod = self._pod(handle)
        if pod is None or pod.status is None:
            return None
        status = pod.status
        if status.phase != "Running" or not status.pod_ip:
            return None
        for c in (pod.spec.containers or []) if pod.spec else []:
            if c.name != CONTAINER:
                continue
            env = {e.name: e.value for e in c.env or []}
            for name in PORT_ENVS:
                if str(env.get(name) or "").isdigit():
                    return str(status.pod_ip), int(env[name])
        return None

    def close(self, keep_jobs: bool = False) -> None:
        """Nothing to release: the Jobs belong to the cluster."""

    # ------------------------------------------------------------------ helpers

    def _job_body(self, job: BackendJob, key: str, name: str) -> Any:
        from kubernetes import client

        resource = self.resources[job.chip]
        env = job_env(job)
        ids = ",".join(str(i) for i in range(job.count))
        env.setdefault("CNET_CHIP_IDS", ids)
        env.setdefault("CNET_VISIBLE_DEVICES", ids)
        labels = {
            LABEL_JOB: label_value(job.job_id),
            LABEL_ATTEMPT: str(job.attempt),
            LABEL_KEY: hashlib.sha256(key.encode()).hexdigest()[:40],
            LABEL_HANDLE: name,
            LABEL_CENTER: label_value(self.center),
            MANAGED_BY: "computenet",
        }
        limits = {resource: str(job.count)}
        # A job is a stranger's code: no token, no root, no new privileges, no capabilities.
        container = client.V1Container(
            name=CONTAINER,
            image=self.image,
            command=[self.shell, "-c", job.command],
            env=[client.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())],
            working_dir=job.workdir,
            resources=client.V1ResourceRequirements(limits=limits, requests=dict(limits)),
            security_context=client.V1SecurityContext(
                run_as_non_root=True,
                run_as_user=self.run_as_user,
                run_as_group=self.run_as_group,
                allow_privilege_escalation=False,
                privileged=False,
                read_only_root_filesystem=self.read_only_root,
                capabilities=client.V1Capabilities(drop=["ALL"]),
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
            ),
            volume_mounts=(
                [client.V1VolumeMount(name="scratch", mount_path="/tmp")]
                if self.read_only_root
                else None
            ),
        )
        pod_spec = client.V1PodSpec(
            containers=[container],
            automount_service_account_token=False,
            security_context=client.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=self.run_as_user,
                run_as_group=self.run_as_group,
                seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
            ),
            volumes=(
                [client.V1Volume(name="scratch", empty_dir=client.V1EmptyDirVolumeSource())]
                if self.read_only_root
                else None
            ),
            restart_policy="Never",
            node_selector=self.selectors.get(job.chip) or None,
            service_account_name=self.service_account,
            image_pull_secrets=(
                [client.V1LocalObjectReference(name=self.image_pull_secret)]
                if self.image_pull_secret
                else None
            ),
        )
        return client.V1Job(
            api_version="batch/v1",
            kind="Job",
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=self.namespace,
                labels=labels,
                annotations={
                    ANN_KEY: key,
                    ANN_CENTER: self.center,
                    "computenet.io/job": job.job_id,
                },
            ),
            spec=client.V1JobSpec(
                backoff_limit=0,
                completions=1,
                parallelism=1,
                ttl_seconds_after_finished=self.ttl_s,
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec
                ),
            ),
        )

    @staticmethod
    def _finished(obj: Any) -> Any | None:
        """The Job's Complete or Failed condition (status True), if it has one."""
        for cond in (obj.status.conditions or []) if obj.status else []:
            if cond.type in ("Complete", "Failed") and cond.status == "True":
                return cond
        return None

    @staticmethod
    def _node_ready(node: Any) -> bool:
        if node.spec is not None and node.spec.unschedulable:
            return False
        conditions = (node.status.conditions or []) if node.status else []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def _pod(self, handle: str) -> Any | None:
        """The Job's newest pod, if it has one."""
        _, core = self._apis()
        pods = (
            self._call(
                "list pods",
                core.list_namespaced_pod,
                self.namespace,
                label_selector=f"{LABEL_HANDLE}={handle}",
            ).items
            or []
        )
        if not pods:
            return None

        def created(p: Any) -> datetime:
            return _utc(p.metadata.creation_timestamp) or datetime.min.replace(tzinfo=UTC)

        return max(pods, key=created)

    def _status(self, handle: str, obj: Any) -> BackendStatus:
        annotations = (obj.metadata.annotations or {}) if obj.metadata else {}
        st = obj.status
        started = _utc(st.start_time) if st else None
        cond = self._finished(obj)
        if cond is None and annotations.get(ANN_CANCELLED):
            return BackendStatus(
                handle,
                BackendState.CANCELLED,
                None,
                started,
                _utc(annotations[ANN_CANCELLED]),
                "cancelled",
            )
        if cond is not None:
            ended = _utc(st.completion_time) or _utc(cond.last_transition_time)
            if cond.type == "Complete":
                return BackendStatus(handle, BackendState.SUCCEEDED, 0, started, ended)
            code, reason = self._exit(handle)
            message = reason or cond.reason or cond.message or "failed"
            return BackendStatus(handle, BackendState.FAILED, code, started, ended, message)
        pod = self._pod(handle)
        running = None
        if pod is not None and pod.status is not None and pod.status.phase == "Running":
            for cs in pod.status.container_statuses or []:
                if cs.name == CONTAINER and cs.state is not None and cs.state.running is not None:
                    running = _utc(cs.state.running.started_at) or started
        if running is not None:
            return BackendStatus(handle, BackendState.RUNNING, None, running)
        reason = ""
        if pod is not None and pod.status is not None:
            for c in pod.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False":
                    reason = ": ".join(x for x in (c.reason, c.message) if x)
        return BackendStatus(handle, BackendState.PENDING, message=reason)

    def _exit(self, handle: str) -> tuple[int | None, str]:
        """The job container's exit code and reason, from its terminated state."""
        pod = self._pod(handle)
        if pod is None or pod.status is None:
            return None, ""
        for cs in pod.status.container_statuses or []:
            term = cs.state.terminated if cs.state is not None else None
            if cs.name == CONTAINER and term is not None:
                return term.exit_code, term.reason or ""
        return None, ""
