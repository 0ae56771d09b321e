"""The Kubernetes backend against the in-process fake API server.

The contract suite (tests/contract, param ``kubernetes-fake``) checks the common
contract; these tests check what is Kubernetes-specific: chips become resource
limits, labels and annotations carry the job, scheduling respects capacity and
node selectors, cancel suspends, and the fake answers as the API server would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from computenet.backends.base import BackendJob, BackendState, BackendStatus
from computenet.backends.kubernetes import (
    ANN_CANCELLED,
    ANN_KEY,
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_KEY,
    KubernetesBackend,
    quantity,
)
from computenet.errors import BackendError, ValidationError
from tests.helpers.kubernetes_fake import FakeKubernetes, FakeNode

FINAL = {BackendState.SUCCEEDED, BackendState.FAILED, BackendState.CANCELLED}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[FakeKubernetes]:
    """Two GPU nodes (A100 ×4 and H100 ×2, labelled), one Ascend node and one CPU node."""
    fake = FakeKubernetes(
        nodes=[
            FakeNode(
                "a100-1", {"cpu": "64", "nvidia.com/gpu": "4"}, labels={"gpu.product": "A100"}
            ),
            FakeNode(
                "h100-1", {"cpu": "64", "nvidia.com/gpu": "2"}, labels={"gpu.product": "H100"}
            ),
            FakeNode("ascend-1", {"cpu": "64", "huawei.com/Ascend910": "8"}),
            FakeNode("cpu-1", {"cpu": "16"}),
        ],
        namespaces=("default", "center-a"),
        workdir=tmp_path,
    )
    yield fake
    fake.close()


def backend(cluster: FakeKubernetes, **options: Any) -> KubernetesBackend:
    """A backend over the fake with the given options."""
    options.setdefault("pools", {"A100": 4, "H100": 2, "Ascend-910B": 8, "CPU-node": 16})
    options.setdefault("chip_node_selectors", "A100=gpu.product=A100,H100=gpu.product=H100")
    return KubernetesBackend(batch_api=cluster.batch_api(), core_api=cluster.core_api(), **options)


def job(command: str, chip: str = "A100", count: int = 1, job_id: str = "j-1") -> BackendJob:
    """A job for the tests."""
    return BackendJob(job_id=job_id, attempt=2, command=command, chip=chip, count=count)


def wait(b: KubernetesBackend, handle: str, until: set[BackendState]) -> BackendStatus:
    """Poll until the job is in one of `until` (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        status = b.poll([handle])[handle]
        if status.state in until or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def stored(cluster: FakeKubernetes, name: str, ns: str = "default") -> dict[str, Any]:
    """The Job as the fake API server stores it (JSON, as sent over the wire)."""
    return cluster.jobs[(ns, name)]


def test_gpu_chips_become_nvidia_gpu_limits_with_equal_requests(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    handle = b.submit(job("true", count=3), "j-1:2")
    container = stored(cluster, handle)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "3"}
    assert container["resources"]["requests"] == {"nvidia.com/gpu": "3"}
    assert container["command"] == ["/bin/sh", "-c", "true"]


def test_ascend_chips_become_huawei_ascend910_limits(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    handle = b.submit(job("true", chip="Ascend-910B", count=8), "asc:1")
    container = stored(cluster, handle)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"huawei.com/Ascend910": "8"}
    assert wait(b, handle, FINAL).state is BackendState.SUCCEEDED


def test_chip_resources_option_overrides_the_stack_default(cluster: FakeKubernetes) -> None:
    cluster.nodes["cpu-1"].allocatable["example.com/npu"] = "2"
    b = backend(
        cluster,
        pools={"Ascend-910B": 2},
        chip_resources="Ascend-910B=example.com/npu",
        chip_node_selectors=None,
    )
    handle = b.submit(job("true", chip="Ascend-910B", count=2), "npu:1")
    limits = stored(cluster, handle)["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert limits["limits"] == {"example.com/npu": "2"}
    assert wait(b, handle, FINAL).state is BackendState.SUCCEEDED


def test_the_job_carries_its_id_attempt_and_key_in_labels_and_annotations(
    cluster: FakeKubernetes,
) -> None:
    b = backend(cluster)
    handle = b.submit(job("true", job_id="J_42/odd id"), "J_42/odd id:2")
    meta = stored(cluster, handle)["metadata"]
    assert meta["annotations"][ANN_KEY] == "J_42/odd id:2"
    assert meta["labels"][LABEL_ATTEMPT] == "2"
    assert meta["labels"][LABEL_JOB] == "J_42-odd-id"  # made a valid label value
    assert len(meta["labels"][LABEL_KEY]) <= 63
    pod_labels = next(iter(cluster.pods.values()))["metadata"]["labels"]
    assert pod_labels[LABEL_JOB] == "J_42-odd-id"


def test_pods_get_no_token_no_root_no_privileges_and_only_the_jobs_env(
    cluster: FakeKubernetes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNET_CENTER_TOKEN", "cnc_agent_secret")  # the agent's own env
    b = backend(cluster, center="east")
    handle = b.submit(BackendJob("j-9", 1, "id -u", "CPU-node", 1, env={"OWN": "x"}), "j-9:1")
    pod = stored(cluster, handle)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp"}]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["OWN"] == "x" and "CNET_CENTER_TOKEN" not in env
    assert set(env) == {
        "OWN", "CNET_JOB_ID", "CNET_ATTEMPT", "CNET_PLANNED_RUN_S", "CNET_CHIP",
        "CNET_CHIP_COUNT", "CNET_CHIP_IDS", "CNET_VISIBLE_DEVICES",
    }  # fmt: skip
    meta = stored(cluster, handle)["metadata"]
    assert meta["labels"]["computenet.io/center"] == "east"
    assert meta["annotations"]["computenet.io/center"] == "east"
    status = wait(b, handle, FINAL)
    assert status.state is BackendState.SUCCEEDED
    if os.geteuid() == 0:  # the fake switches to runAsUser only when it can
        assert b.logs(handle)[0] == "65534\n"


def test_run_as_options_and_a_root_user_is_refused(cluster: FakeKubernetes) -> None:
    b = backend(cluster, run_as_user="1000", run_as_group="2000", read_only_root="false")
    handle = b.submit(job("true", chip="CPU-node"), "r:1")
    pod = stored(cluster, handle)["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert (sc["runAsUser"], sc["runAsGroup"], sc["readOnlyRootFilesystem"]) == (1000, 2000, False)
    assert "volumes" not in pod
    with pytest.raises(ValidationError) as err:
        backend(cluster, run_as_user=0)
    assert err.value.field == "run_as_user"


def test_list_jobs_finds_only_this_centers_jobs(cluster: FakeKubernetes) -> None:
    east, west = backend(cluster, center="east"), backend(cluster, center="west")
    e = east.submit(job("sleep 30", chip="CPU-node"), "e:1")
    w = west.submit(job("sleep 30", chip="CPU-node", job_id="j-2"), "w:1")
    assert backend(cluster, center="east").list_jobs() == {"e:1": e}
    assert backend(cluster, center="west").list_jobs() == {"w:1": w}
    east.cancel(e)
    west.cancel(w)


def test_job_names_are_dns_labels_even_for_long_odd_keys(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    name = b.job_name("A very/LONG key with spaces and ünïcode, " * 5)
    assert len(name) <= 63 and name == name.lower() and name.startswith("cnet-")
    assert b.job_name("a:1") != b.job_name("a-1")  # the hash tells similar keys apart


def test_node_selector_pins_a_chip_to_its_nodes(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    handle = b.submit(job("sleep 30", chip="H100", count=2), "h:1")
    assert wait(b, handle, {BackendState.RUNNING}).state is BackendState.RUNNING
    pod = next(iter(cluster.pods.values()))
    assert pod["spec"]["nodeSelector"] == {"gpu.product": "H100"}
    assert pod["spec"]["nodeName"] == "h100-1"
    b.cancel(handle)


def test_a_job_that_does_not_fit_is_pending_with_the_schedulers_reason(
    cluster: FakeKubernetes,
) -> None:
    b = backend(cluster)
    first = b.submit(job("sleep 30", chip="H100", count=2), "h:1")
    wait(b, first, {BackendState.RUNNING})
    second = b.submit(job("true", chip="H100", count=1, job_id="j-2"), "h:2")
    status = b.poll([second])[second]
    assert status.state is BackendState.PENDING
    assert "Insufficient nvidia.com/gpu" in status.message
    assert b.logs(second) == ("", 0)  # a waiting container has no log yet
    b.cancel(first)
    assert wait(b, second, FINAL).state is BackendState.SUCCEEDED


def test_capacity_counts_allocatable_on_ready_nodes_minus_requests(
    cluster: FakeKubernetes,
) -> None:
    b = backend(cluster)
    before = {p.chip: (p.total, p.free) for p in b.capacity()}
    # 208 allocatable CPUs, but the network declares 16: the center offers no more than that.
    assert before == {"A100": (4, 4), "H100": (2, 2), "Ascend-910B": (8, 8), "CPU-node": (16, 16)}
    handle = b.submit(job("sleep 30", count=3), "a:1")
    wait(b, handle, {BackendState.RUNNING})
    after = {p.chip: (p.total, p.free) for p in b.capacity()}
    assert after["A100"] == (4, 1)
    cluster.nodes["h100-1"].ready = False
    assert {p.chip: (p.total, p.free) for p in b.capacity()}["H100"] == (2, 0)
    b.cancel(handle)


def test_a_failed_job_reports_its_exit_code_and_reason(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    handle = b.submit(job("echo broken >&2; exit 5"), "f:1")
    status = wait(b, handle, FINAL)
    assert (status.state, status.exit_code) == (BackendState.FAILED, 5)
    assert status.message == "Error"
    assert status.ended_at is not None
    conditions = [c["type"] for c in stored(cluster, handle)["status"]["conditions"]]
    assert conditions == ["FailureTarget", "Failed"]
    assert b.logs(handle)[0] == "broken\n"


def test_cancel_suspends_the_job_deletes_its_pod_and_keeps_the_job(
    cluster: FakeKubernetes,
) -> None:
    b = backend(cluster)
    handle = b.submit(job("sleep 600"), "c:1")
    wait(b, handle, {BackendState.RUNNING})
    b.cancel(handle)
    job_json = stored(cluster, handle)
    assert job_json["spec"]["suspend"] is True
    assert ANN_CANCELLED in job_json["metadata"]["annotations"]
    assert not cluster.pods  # the controller deleted the pod (and killed its process)
    status = b.poll([handle])[handle]
    assert status.state is BackendState.CANCELLED and status.ended_at is not None
    patches = [c for c in cluster.calls if c[0] == "patch_namespaced_job"]
    b.cancel(handle)
    assert [c for c in cluster.calls if c[0] == "patch_namespaced_job"] == patches


def test_cancel_of_a_finished_job_changes_nothing(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    handle = b.submit(job("true"), "done:1")
    assert wait(b, handle, FINAL).state is BackendState.SUCCEEDED
    b.cancel(handle)
    assert not [c for c in cluster.calls if c[0] == "patch_namespaced_job"]
    assert b.poll([handle])[handle].state is BackendState.SUCCEEDED


def test_a_racing_submit_under_the_same_key_returns_the_existing_job(
    cluster: FakeKubernetes,
) -> None:
    a, other = backend(cluster), backend(cluster)
    handle = other.submit(job("sleep 30"), "race:1")
    a.find = lambda key: None  # type: ignore[method-assign]  # lost the race after its lookup
    assert a.submit(job("sleep 30"), "race:1") == handle
    assert sum(1 for c in cluster.calls if c[0] == "create_namespaced_job") == 2
    assert len(cluster.jobs) == 1
    other.cancel(handle)


def test_find_refuses_a_job_of_another_key_with_the_same_name(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    handle = b.submit(job("true"), "mine:1")
    stored(cluster, handle)["metadata"]["annotations"][ANN_KEY] = "someone-else"
    with pytest.raises(BackendError, match="another key"):
        b.find("mine:1")


def test_jobs_go_to_the_configured_namespace(cluster: FakeKubernetes) -> None:
    b = backend(cluster, namespace="center-a")
    handle = b.submit(job("true"), "ns:1")
    assert ("center-a", handle) in cluster.jobs
    assert wait(b, handle, FINAL).state is BackendState.SUCCEEDED
    with pytest.raises(BackendError, match="not found"):
        backend(cluster, namespace="missing").submit(job("true"), "ns:1")


def test_finished_jobs_go_after_their_ttl_and_then_read_unknown(cluster: FakeKubernetes) -> None:
    b = backend(cluster, ttl_s=0)
    handle = b.submit(job("true"), "ttl:1")
    wait(b, handle, FINAL | {BackendState.UNKNOWN})
    assert b.poll([handle])[handle].state is BackendState.UNKNOWN
    assert b.find("ttl:1") is None


def test_the_job_sees_its_environment_and_chip_variables(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    j = BackendJob(
        "j-env",
        1,
        'echo "$CNET_JOB_ID $CNET_CHIP $CNET_CHIP_COUNT $CNET_CHIP_IDS $X"',
        "A100",
        2,
        env={"X": "y z"},
    )
    handle = b.submit(j, "env:1")
    wait(b, handle, FINAL)
    assert b.logs(handle)[0] == "j-env A100 2 0,1 y z\n"


def test_an_unknown_chip_is_refused_before_any_api_call(cluster: FakeKubernetes) -> None:
    b = backend(cluster)
    with pytest.raises(ValidationError) as err:
        b.submit(job("true", chip="MLU370-X8"), "x:1")
    assert err.value.field == "chip"
    assert not cluster.calls


def test_the_fake_rejects_what_the_api_server_rejects(cluster: FakeKubernetes) -> None:
    from kubernetes import client

    batch = cluster.batch_api()

    def body(
        name: str,
        limits: dict[str, str],
        labels: dict[str, str] | None = None,
        restart: str = "Never",
    ) -> client.V1Job:
        return client.V1Job(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1JobSpec(
                template=client.V1PodTemplateSpec(
                    spec=client.V1PodSpec(
                        restart_policy=restart,
                        containers=[
                            client.V1Container(
                                name="job",
                                image="busybox",
                                resources=client.V1ResourceRequirements(limits=limits),
                            )
                        ],
                    )
                )
            ),
        )

    for bad in (
        body("Upper_Case", {}),
        body("x" * 64, {}),
        body("ok", {}, labels={"a": "-not-alnum-at-the-ends-"}),
        body("ok", {}, restart="Always"),
        body("ok", {"nvidia.com/gpu": "500m"}),
    ):
        with pytest.raises(ApiException) as err:
            batch.create_namespaced_job("default", bad)
        assert err.value.status == 422
    batch.create_namespaced_job("default", body("ok", {"cpu": "1"}))
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job("default", body("ok", {"cpu": "1"}))
    assert err.value.status == 409
    with pytest.raises(ApiException) as err:
        batch.read_namespaced_job("nope", "default")
    assert err.value.status == 404


def test_quantities_parse_as_kubernetes_writes_them() -> None:
    assert quantity("8") == 8
    assert quantity("500m") == quantity("0.5")
    assert quantity("4Gi") == 4 * 2**30
    assert quantity("1k") == 1000
