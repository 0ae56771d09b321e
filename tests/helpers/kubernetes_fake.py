"""An in-process fake of the Kubernetes API calls the Kubernetes backend makes.

No API server can run where ComputeNet is built, so this fake stands in for
one, together with the parts of the control plane those calls observe: the Job
controller, the scheduler and the kubelet. It is deliberately narrow — only the
methods `KubernetesBackend` calls exist, with the official client's signatures —
and deliberately faithful in what they do:

- request bodies are serialized as the client would send them
  (``ApiClient.sanitize_for_serialization``) and answers are deserialized into
  the client's own models, so the backend never sees an object it built itself;
- the server's validation that matters here is applied (DNS names, label
  values, restart policy, integer extended resources with requests == limits),
  with ``ApiException`` 404 / 409 / 422 / 400 as the API server answers;
- a Job gets one pod (backoffLimit 0), the pod is scheduled only onto a ready,
  schedulable node that matches its nodeSelector and has the requested
  resources free, else it stays Pending with ``PodScheduled=False, Unschedulable``;
- a scheduled pod runs its container's command as a real local process (the
  image is ignored) with only the container's environment; its output is the
  pod log, its exit code the container's terminated ``exitCode``;
- a running pod's ``status.podIP`` (and ``hostIP``) is ``127.0.0.1``: the process
  runs on this host, so a server in it (a service replica on ``$PORT``) is
  really reached at ``podIP:PORT``, as a pod's is from inside the cluster;
- ``delete_namespaced_pod`` kills the pod's process and removes it; a Job whose
  active pod is deleted counts it failed (pod failure tracking, Kubernetes
  ≥1.26), and with ``backoffLimit: 0`` it fails (``BackoffLimitExceeded``);
- Jobs end with the conditions Kubernetes ≥1.31 sets (``SuccessCriteriaMet`` then
  ``Complete``; ``FailureTarget`` then ``Failed``, reason ``BackoffLimitExceeded``);
- the pod's ``securityContext.runAsUser``/``runAsGroup`` are honoured when the
  fake runs as root (the process runs as that user);
- ``spec.suspend: true`` deletes the Job's active pods (their processes are
  killed), resets ``startTime`` and adds ``Suspended``; ``ttlSecondsAfterFinished``
  deletes finished Jobs with their pods; reading the log of a waiting container
  is a 400, of a deleted pod a 404.

`calls` records every API call (method, namespace, name) for tests.
What the fake does not model: watches, retries of failed pods, preemption,
quotas and admission webhooks, image pulls, RBAC, multiple containers, and of
the security context anything beyond the user (read-only root, capabilities,
seccomp, the service-account token mount: tests assert those in the manifest).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from computenet.backends.kubernetes import quantity

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_STANDARD = {"cpu", "memory", "ephemeral-storage", "pods"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_exception(status: int, reason: str, message: str) -> Exception:
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status, reason=reason)
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status,
    }
    exc.body = json.dumps(body)
    return exc


def _model(data: Any, type_name: str) -> Any:
    """`data` (JSON as the server sends it) as the client's model `type_name`."""
    from kubernetes.client import ApiClient

    api: Any = ApiClient()
    text = json.dumps(data)
    try:
        return api.deserialize(text, type_name, "application/json")
    except TypeError:  # clients before the pydantic models take a response object

        class _Response:
            def __init__(self, payload: str) -> None:
                self.data = payload

        return api.deserialize(_Response(text), type_name)


def _serialize(body: Any) -> Any:
    from kubernetes.client import ApiClient

    api: Any = ApiClient()
    return json.loads(json.dumps(api.sanitize_for_serialization(body)))


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386), which is what a strategic merge does to maps and scalars."""
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def _labels_match(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = (s.strip() for s in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(k) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _fields_match(obj: dict[str, Any], selector: str | None) -> bool:
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if _field(obj, k.strip()) == v.strip():
                return False
        else:
            k, v = term.replace("==", "=").split("=", 1)
            if _field(obj, k.strip()) != v.strip():
                return False
    return True


def _requests(pod: dict[str, Any]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for c in pod["spec"].get("containers", []):
        res = c.get("resources") or {}
        req = dict(res.get("limits") or {})
        req.update(res.get("requests") or {})
        for k, q in req.items():
            out[k] = out.get(k, Decimal(0)) + quantity(q)
    return out


@dataclass
class FakeNode:
    """A node of the fake cluster: allocatable resources, labels, readiness."""

    name: str
    allocatable: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    ready: bool = True
    unschedulable: bool = False


@dataclass
class _Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    started: str


class FakeKubernetes:
    """The fake API server with its Job controller, scheduler and kubelet (see module doc)."""

    def __init__(
        self,
        nodes: Iterable[FakeNode] | None = None,
        namespaces: Iterable[str] = ("default",),
        workdir: str | Path | None = None,
        grace_s: float = 2.0,
    ) -> None:
        self.nodes = {n.name: n for n in (nodes or [FakeNode("node-1", {"cpu": "8"})])}
        self.namespaces = set(namespaces)
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.grace_s = grace_s
        self._procs: dict[tuple[str, str], _Proc] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-k8s-") if workdir is None else None
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self._lock = threading.RLock()
        self._rv = 0

    def batch_api(self) -> FakeBatchV1Api:
        """A stand-in for ``kubernetes.client.BatchV1Api``."""
        return FakeBatchV1Api(self)

    def core_api(self) -> FakeCoreV1Api:
        """A stand-in for ``kubernetes.client.CoreV1Api``."""
        return FakeCoreV1Api(self)

    def close(self) -> None:
        """Kill every container process still running."""
        with self._lock:
            for key in list(self._procs):
                self._kill(key)
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    # ------------------------------------------------------------ API server

    def _record(self, method: str, namespace: str = "", name: str = "") -> None:
        self.calls.append((method, namespace, name))

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _check_namespace(self, namespace: str) -> None:
        if namespace not in self.namespaces:
            raise _api_exception(404, "NotFound", f'namespaces "{namespace}" not found')

    def _validate_job(self, job: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        meta = job.get("metadata") or {}
        name = meta.get("name") or ""
        if not name or len(name) > 63 or not _DNS_LABEL.fullmatch(name):
            errors.append(
                f"metadata.name: Invalid value: {name!r}: must be a DNS-1123 label "
                "of at most 63 characters"
            )
        for where, labels in (
            ("metadata.labels", meta.get("labels") or {}),
            (
                "spec.template.metadata.labels",
                ((job.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels")
                or {},
            ),
        ):
            for k, v in labels.items():
                key_name = k.rsplit("/", 1)[-1]
                if len(key_name) > 63 or not _LABEL_NAME.fullmatch(key_name):
                    errors.append(f"{where}: Invalid value: {k!r}: bad label key")
                if len(str(v)) > 63 or not _LABEL_VALUE.fullmatch(str(v)):
                    errors.append(
                        f"{where}: Invalid value: {v!r}: a valid label must be at most "
                        "63 characters, alphanumeric at both ends"
                    )
        if len(json.dumps(meta.get("annotations") or {})) > 256 * 1024:
            errors.append("metadata.annotations: Too long: must have at most 262144 bytes")
        spec = job.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append(
                f"spec.template.spec.restartPolicy: Unsupported value: "
                f'{pod.get("restartPolicy")!r}: supported values: "OnFailure", "Never"'
            )
        containers = pod.get("containers") or []
        if not containers:
            errors.append("spec.template.spec.containers: Required value")
        for i, c in enumerate(containers):
            where = f"spec.template.spec.containers[{i}]"
            if not _DNS_LABEL.fullmatch(c.get("name") or ""):
                errors.append(f"{where}.name: Invalid value: {c.get('name')!r}")
            if not c.get("image"):
                errors.append(f"{where}.image: Required value")
            for e in c.get("env") or []:
                if not _ENV_NAME.fullmatch(e.get("name") or ""):
                    errors.append(f"{where}.env.name: Invalid value: {e.get('name')!r}")
            res = c.get("resources") or {}
            limits, requests = res.get("limits") or {}, res.get("requests") or {}
            for r in set(limits) | set(requests):
                if r in _STANDARD or r.startswith(("requests.", "hugepages-")):
                    continue
                if "/" not in r:
                    errors.append(
                        f"{where}.resources: Invalid value: {r!r}: must be a standard "
                        "resource or fully qualified"
                    )
                    continue
                for kind, q in (("limits", limits.get(r)), ("requests", requests.get(r))):
                    if q is not None and quantity(q) != int(quantity(q)):
                        errors.append(
                            f"{where}.resources.{kind}[{r}]: Invalid value: {q!r}: "
                            "must be an integer"
                        )
                if r not in limits:
                    errors.append(
                        f"{where}.resources.limits: Required value: Limit must be set "
                        f"for non overcommitable resources ({r})"
                    )
                elif r in requests and quantity(requests[r]) != quantity(limits[r]):
                    errors.append(
                        f"{where}.resources.requests: Invalid value: {requests[r]!r}: "
                        f"must be equal to {r} limit"
                    )
            for r, q in requests.items():
                if r in limits and quantity(q) > quantity(limits[r]):
                    errors.append(
                        f"{where}.resources.requests: Invalid value: {q!r}: must be "
                        f"less than or equal to {r} limit"
                    )
        return errors

    def create_job(self, namespace: str, body: Any) -> Any:
        """POST /apis/batch/v1/namespaces/{ns}/jobs."""
        with self._lock:
            job = _serialize(body)
            name = (job.get("metadata") or {}).get("name", "")
            self._record("create_namespaced_job", namespace, name)
            self._check_namespace(namespace)
            meta_ns = (job.get("metadata") or {}).get("namespace")
            if meta_ns not in (None, namespace):
                raise _api_exception(
                    400,
                    "BadRequest",
                    "the namespace of the provided object "
                    "does not match the namespace sent on the request",
                )
            errors = self._validate_job(job)
            if errors:
                raise _api_exception(
                    422, "Invalid", f'Job.batch "{name}" is invalid: ' + "; ".join(errors)
                )
            self._reconcile()
            if (namespace, name) in self.jobs:
                raise _api_exception(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            uid = str(uuid.uuid4())
            meta = job["metadata"]
            meta.update(
                namespace=namespace,
                uid=uid,
                creationTimestamp=_now(),
                resourceVersion=self._next_rv(),
                generation=1,
            )
            spec = job.setdefault("spec", {})
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("suspend", False)
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            tmeta = spec["template"].setdefault("metadata", {})
            tlabels = tmeta.setdefault("labels", {})
            tlabels.update(
                {
                    "batch.kubernetes.io/controller-uid": uid,
                    "controller-uid": uid,
                    "batch.kubernetes.io/job-name": name,
                    "job-name": name,
                }
            )
            job["status"] = {}
            job.setdefault("apiVersion", "batch/v1")
            job.setdefault("kind", "Job")
            self.jobs[(namespace, name)] = job
            self._reconcile()
            return _model(job, "V1Job")

    def read_job(self, name: str, namespace: str) -> Any:
        """GET /apis/batch/v1/namespaces/{ns}/jobs/{name}."""
        with self._lock:
            self._record("read_namespaced_job", namespace, name)
            self._check_namespace(namespace)
            self._reconcile()
            job = self.jobs.get((namespace, name))
            if job is None:
                raise _api_exception(404, "NotFound", f'jobs.batch "{name}" not found')
            return _model(job, "V1Job")

    def list_jobs(self, namespace: str, label_selector: str | None) -> Any:
        """GET /apis/batch/v1/namespaces/{ns}/jobs with a label selector."""
        with self._lock:
            self._record("list_namespaced_job", namespace, label_selector or "")
            self._check_namespace(namespace)
            self._reconcile()
            items = [
                j
                for (ns, _), j in self.jobs.items()
                if ns == namespace
                and _labels_match(j["metadata"].get("labels", {}), label_selector)
            ]
            return _model(
                {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items},
                "V1JobList",
            )

    def patch_job(self, name: str, namespace: str, body: Any) -> Any:
        """PATCH /apis/batch/v1/namespaces/{ns}/jobs/{name} (merge semantics)."""
        with self._lock:
            self._record("patch_namespaced_job", namespace, name)
            self._check_namespace(namespace)
            self._reconcile()
            job = self.jobs.get((namespace, name))
            if job is None:
                raise _api_exception(404, "NotFound", f'jobs.batch "{name}" not found')
            patch = _serialize(body)
            if not isinstance(patch, dict):
                raise _api_exception(415, "UnsupportedMediaType", "only merge patches are faked")
            allowed = {"metadata", "spec"}
            if set(patch) - allowed or set(patch.get("spec", {})) - {
                "suspend",
                "parallelism",
                "activeDeadlineSeconds",
                "ttlSecondsAfterFinished",
            }:
                raise _api_exception(
                    422,
                    "Invalid",
                    f'Job.batch "{name}" is invalid: '
                    "spec: Forbidden: only suspend, parallelism, "
                    "activeDeadlineSeconds and ttlSecondsAfterFinished are mutable",
                )
            _merge(job, patch)
            job["metadata"]["resourceVersion"] = self._next_rv()
            self._reconcile()
            return _model(job, "V1Job")

    def list_pods(
        self, namespace: str | None, label_selector: str | None, field_selector: str | None
    ) -> Any:
        """GET /api/v1/[namespaces/{ns}/]pods with label and field selectors."""
        with self._lock:
            self._record("list_pods", namespace or "*", label_selector or field_selector or "")
            if namespace is not None:
                self._check_namespace(namespace)
            self._reconcile()
            items = [
                p
                for (ns, _), p in self.pods.items()
                if (namespace is None or ns == namespace)
                and _labels_match(p["metadata"].get("labels", {}), label_selector)
                and _fields_match(p, field_selector)
            ]
            return _model(
                {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}, "V1PodList"
            )

    def delete_pod(self, name: str, namespace: str) -> Any:
        """DELETE /api/v1/namespaces/{ns}/pods/{name}: the pod goes; its Job counts a failure."""
        with self._lock:
            self._record("delete_namespaced_pod", namespace, name)
            self._check_namespace(namespace)
            self._reconcile()
            pod = self.pods.get((namespace, name))
            if pod is None:
                raise _api_exception(404, "NotFound", f'pods "{name}" not found')
            active = pod["status"].get("phase") in ("Pending", "Running")
            self._delete_pod((namespace, name))
            job = self.jobs.get((namespace, pod["metadata"]["labels"].get("job-name", "")))
            if job is not None and active and not job["spec"].get("suspend"):
                status = job["status"]
                if not (_cond_true(status, "Complete") or _cond_true(status, "Failed")):
                    status["failed"] = int(status.get("failed") or 0) + 1
                    status["active"] = 0
                    for kind in ("FailureTarget", "Failed"):
                        _set_cond(
                            status,
                            kind,
                            "BackoffLimitExceeded",
                            "Job has reached the specified backoff limit",
                        )
            self._reconcile()
            return _model(pod, "V1Pod")

    def pod_log(self, name: str, namespace: str, container: str | None) -> str:
        """GET /api/v1/namespaces/{ns}/pods/{name}/log."""
        with self._lock:
            self._record("read_namespaced_pod_log", namespace, name)
            self._check_namespace(namespace)
            self._reconcile()
            pod = self.pods.get((namespace, name))
            if pod is None:
                raise _api_exception(404, "NotFound", f'pods "{name}" not found')
            cname = pod["spec"]["containers"][0]["name"]
            if container not in (None, cname):
                raise _api_exception(
                    400, "BadRequest", f"container {container} is not valid for pod {name}"
                )
            proc = self._procs.get((namespace, name))
            log = proc.log if proc else self.workdir / f"{namespace}-{name}.log"
            if not log.exists():
                raise _api_exception(
                    400,
                    "BadRequest",
                    f'container "{cname}" in pod "{name}" is waiting to start: ContainerCreating',
                )
            return log.read_bytes().decode("utf-8", errors="replace")

    def list_nodes(self, label_selector: str | None) -> Any:
        """GET /api/v1/nodes."""
        with self._lock:
            self._record("list_node", "", label_selector or "")
            items = [
                self._node_json(n)
                for n in self.nodes.values()
                if _labels_match(n.labels, label_selector)
            ]
            return _model(
                {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items},
                "V1NodeList",
            )

    @staticmethod
    def _node_json(n: FakeNode) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n.name, "labels": {"kubernetes.io/hostname": n.name, **n.labels}},
            "spec": {"unschedulable": True} if n.unschedulable else {},
            "status": {
                "allocatable": dict(n.allocatable),
                "capacity": dict(n.allocatable),
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True" if n.ready else "False",
                        "reason": "KubeletReady" if n.ready else "KubeletNotReady",
                    }
                ],
            },
        }

    # -------------------------------------------- controller, scheduler, kubelet

    def _reconcile(self) -> None:
        """Move the world forward: what the controllers would have done by now."""
        now = time.time()
        for key, job in list(self.jobs.items()):
            ns, name = key
            spec, status = job["spec"], job["status"]
            pods = [
                p
                for (pns, _), p in self.pods.items()
                if pns == ns and p["metadata"]["labels"].get("job-name") == name
            ]
            finished = any(
                c["type"] in ("Complete", "Failed") and c["status"] == "True"
                for c in status.get("conditions", [])
            )
            if finished:
                ttl = spec.get("ttlSecondsAfterFinished")
                done = status.get("completionTime") or _cond_time(status, "Failed")
                if ttl is not None and done and _epoch(done) + ttl <= now:
                    for p in pods:
                        self._delete_pod((ns, p["metadata"]["name"]))
                    del self.jobs[key]
                continue
            if spec.get("suspend"):
                for p in pods:
                    if p["status"].get("phase") in ("Pending", "Running"):
                        self._delete_pod((ns, p["metadata"]["name"]))
                status["active"] = 0
                status.pop("startTime", None)
                _set_cond(status, "Suspended", "JobSuspended", "Job suspended")
                continue
            if _cond_true(status, "Suspended"):
                _set_cond(status, "Suspended", "JobResumed", "Job resumed", value="False")
            if not pods and not status.get("failed") and not status.get("succeeded"):
                pods = [self._create_pod(ns, job)]
                status["startTime"] = status.get("startTime") or _now()
            for p in pods:
                self._schedule(ns, p)
                self._kubelet(ns, p)
            phases = [p["status"].get("phase") for p in pods]
            status["active"] = sum(1 for ph in phases if ph in ("Pending", "Running"))
            if "Succeeded" in phases:
                status["succeeded"] = 1
                status["completionTime"] = _now()
                _set_cond(
                    status,
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
                _set_cond(
                    status,
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
            elif "Failed" in phases:
                status["failed"] = 1
                _set_cond(
                    status,
                    "FailureTarget",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )
                _set_cond(
                    status,
                    "Failed",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                )

    def _create_pod(self, ns: str, job: dict[str, Any]) -> dict[str, Any]:
        template = json.loads(json.dumps(job["spec"]["template"]))
        name = f"{job['metadata']['name'][:57]}-{uuid.uuid4().hex[:5]}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "uid": str(uuid.uuid4()),
                "labels": template.get("metadata", {}).get("labels", {}),
                "creationTimestamp": _now(),
                "resourceVersion": self._next_rv(),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "controller": True,
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                    }
                ],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": []},
        }
        self.pods[(ns, name)] = pod
        return pod

    def _schedule(self, ns: str, pod: dict[str, Any]) -> None:
        if pod["spec"].get("nodeName") or pod["status"].get("phase") != "Pending":
            return
        want = _requests(pod)
        selector = pod["spec"].get("nodeSelector") or {}
        reasons: list[str] = []
        for node in self.nodes.values():
            if not node.ready or node.unschedulable:
                reasons.append("node(s) were unschedulable or not ready")
                continue
            labels = {"kubernetes.io/hostname": node.name, **node.labels}
            if any(labels.get(k) != v for k, v in selector.items()):
                reasons.append("node(s) didn't match Pod's node affinity/selector")
                continue
            used = self._used(node.name)
            short = [
                r
                for r, q in want.items()
                if quantity(node.allocatable.get(r, 0)) - used.get(r, Decimal(0)) < q
            ]
            if short:
                reasons.append(f"Insufficient {short[0]}")
                continue
            pod["spec"]["nodeName"] = node.name
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "True"}]
            return
        msg = f"0/{len(self.nodes)} nodes are available: " + ", ".join(sorted(set(reasons)))
        pod["status"]["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg}
        ]

    def _used(self, node: str) -> dict[str, Decimal]:
        used: dict[str, Decimal] = {}
        for p in self.pods.values():
            if p["spec"].get("nodeName") == node and p["status"].get("phase") in (
                "Pending",
                "Running",
            ):
                for r, q in _requests(p).items():
                    used[r] = used.get(r, Decimal(0)) + q
        return used

    def _kubelet(self, ns: str, pod: dict[str, Any]) -> None:
        key = (ns, pod["metadata"]["name"])
        phase = pod["status"].get("phase")
        if phase == "Pending" and pod["spec"].get("nodeName"):
            self._start(key, pod)
        elif phase == "Running":
            proc = self._procs.get(key)
            if proc is None:
                return
            code = proc.popen.poll()
            if code is None:
                return
            # A signal death reads as 128+N, as the container runtime reports it.
            exit_code = code if code >= 0 else 128 - code
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            container = pod["spec"]["containers"][0]["name"]
            pod["status"]["containerStatuses"] = [
                {
                    "name": container,
                    "ready": False,
                    "restartCount": 0,
                    "image": pod["spec"]["containers"][0]["image"],
                    "imageID": "",
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "startedAt": proc.started,
                            "finishedAt": _now(),
                        }
                    },
                }
            ]
            del self._procs[key]

    def _start(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        c = pod["spec"]["containers"][0]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOSTNAME": key[1],
            "HOME": str(self.workdir),
        }
        env.update({e["name"]: e.get("value", "") for e in c.get("env") or []})
        # No command: the image's entrypoint would run; the fake has no image, so it exits 0.
        argv = list(c.get("command") or []) + list(c.get("args") or []) or ["true"]
        log = self.workdir / f"{key[0]}-{key[1]}.log"
        cwd = c.get("workingDir")
        if not cwd or not Path(cwd).is_dir():
            cwd = str(self.workdir)
        # The pod's securityContext.runAsUser/runAsGroup, honoured where the fake can
        # switch users (it runs as root): the process then cannot read root's files.
        sc = pod["spec"].get("securityContext") or {}
        csc = c.get("securityContext") or {}
        uid = csc.get("runAsUser", sc.get("runAsUser"))
        gid = csc.get("runAsGroup", sc.get("runAsGroup", uid))
        ids: dict[str, Any] = {}
        if uid is not None and os.geteuid() == 0 and int(uid) != 0:
            ids = {"user": int(uid), "group": int(gid if gid is not None else uid)}
            ids["extra_groups"] = []
            if not c.get("workingDir"):
                cwd = "/"  # the fake's own folder is root's; a real pod starts in the image's
        # Pod logs live on the node, where no pod can read them: 0600, the fake's own.
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
                start_new_session=True,
                **ids,
            )
        started = _now()
        self._procs[key] = _Proc(popen, log, started)
        pod["status"].update(
            phase="Running",
            startTime=started,
            hostIP="127.0.0.1",
            podIP="127.0.0.1",
            containerStatuses=[
                {
                    "name": c["name"],
                    "ready": True,
                    "restartCount": 0,
                    "image": c["image"],
                    "imageID": "",
                    "started": True,
                    "state": {"running": {"startedAt": started}},
                }
            ],
        )

    def _kill(self, key: tuple[str, str]) -> None:
        proc = self._procs.pop(key, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()

    def _delete_pod(self, key: tuple[str, str]) -> None:
        self._kill(key)
        self.pods.pop(key, None)
        with contextlib.suppress(OSError):
            (self.workdir / f"{key[0]}-{key[1]}.log").unlink()


def _cond_true(status: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions", []))


def _cond_time(status: dict[str, Any], kind: str) -> str | None:
    for c in status.get("conditions", []):
        if c["type"] == kind:
            return str(c.get("lastTransitionTime"))
    return None


def _set_cond(
    status: dict[str, Any], kind: str, reason: str, message: str, value: str = "True"
) -> None:
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c["type"] == kind:
            if c["status"] != value:
                c.update(
                    status=value,
                    reason=reason,
                    message=message,
                    lastTransitionTime=_now(),
                    lastProbeTime=_now(),
                )
            return
    conds.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": _now(),
            "lastProbeTime": _now(),
        }
    )


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class FakeBatchV1Api:
    """The ``BatchV1Api`` methods the backend calls, with the client's signatures."""

    def __init__(self, cluster: FakeKubernetes) -> None:
        self.cluster = cluster

    def create_namespaced_job(self, namespace: str, body: Any, **_: Any) -> Any:
        """Create a Job."""
        return self.cluster.create_job(namespace, body)

    def read_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        """Read a Job."""
        return self.cluster.read_job(name, namespace)

    def patch_namespaced_job(self, name: str, namespace: str, body: Any, **_: Any) -> Any:
        """Patch a Job (merge semantics)."""
        return self.cluster.patch_job(name, namespace, body)

    def list_namespaced_job(
        self, namespace: str, label_selector: str | None = None, **_: Any
    ) -> Any:
        """Jobs of one namespace."""
        return self.cluster.list_jobs(namespace, label_selector)


class FakeCoreV1Api:
    """The ``CoreV1Api`` methods the backend calls, with the client's signatures."""

    def __init__(self, cluster: FakeKubernetes) -> None:
        self.cluster = cluster

    def list_namespaced_pod(
        self,
        namespace: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        **_: Any,
    ) -> Any:
        """Pods of one namespace."""
        return self.cluster.list_pods(namespace, label_selector, field_selector)

    def list_pod_for_all_namespaces(
        self, label_selector: str | None = None, field_selector: str | None = None, **_: Any
    ) -> Any:
        """Pods of every namespace."""
        return self.cluster.list_pods(None, label_selector, field_selector)

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str | None = None, **_: Any
    ) -> str:
        """A pod's container log."""
        return self.cluster.pod_log(name, namespace, container)

    def delete_namespaced_pod(self, name: str, namespace: str, **_: Any) -> Any:
        """Delete a pod (``kubectl delete pod``)."""
        return self.cluster.delete_pod(name, namespace)

    def list_node(self, label_selector: str | None = None, **_: Any) -> Any:
        """Nodes."""
        return self.cluster.list_nodes(label_selector)
