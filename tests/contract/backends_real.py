"""Contract-suite harnesses for the backends that drive external schedulers.

Imported by tests/contract/conftest.py (above its ``harness`` fixture), this
module registers three more params of that fixture:

- ``slurm`` and ``ray`` talk to the real services scripts/services.sh starts;
  without them the tests fail under ``CI=true`` and are skipped elsewhere
  (tests/helpers/services.py);
- ``kubernetes-fake`` runs the Kubernetes backend against the in-process fake
  API server (tests/helpers/kubernetes_fake.py): no real cluster is involved.

Every harness uses its own job-name prefix, so the contract's fixed keys
("k-success", ...) never meet jobs of an earlier test or run that Slurm's
accounting or Ray's job table still remember, and so teardown can cancel
exactly the jobs the test started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.conftest import Harness, backend_harness
from tests.helpers.services import require_service


def _prefix() -> str:
    return f"ct{uuid.uuid4().hex[:8]}"


@backend_harness("slurm", marks=[pytest.mark.services])
def _slurm(tmp_path: Path) -> Iterator[Harness]:
    env = require_service("slurm")
    from computenet.backends.slurm import SlurmBackend

    conf, prefix = env["SLURM_CONF"], _prefix()
    # Jobs run as nobody when the tests run as root: their output folder must be reachable
    # by that user, and pytest's own tmp folders are not (0700).
    output = Path(tempfile.mkdtemp(prefix="cnet-slurm-out-"))
    output.chmod(0o711)
    harness = Harness(
        make=lambda: SlurmBackend(
            state_dir=tmp_path / "slurm-state",
            pools={"CPU-node": 8},
            chips_as="cpus",
            partition="debug",
            account="cnet",
            slurm_conf=conf,
            prefix=prefix,
            center="ct-center",
            output_dir=output,
        ),
        chip="CPU-node",
        poll_s=0.2,
        timeout_s=90.0,
    )
    yield harness
    # Cancel whatever this test left queued or running (only our prefix's jobs).
    slurm_env = {**os.environ, "SLURM_CONF": conf}
    with contextlib.suppress(Exception):
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i %j"],
            env=slurm_env,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
        ids = [
            i
            for i, _, name in (ln.partition(" ") for ln in out.splitlines())
            if name.startswith(prefix + "-")
        ]
        if ids:
            subprocess.run(["scancel", *ids], env=slurm_env, timeout=20, check=False)
    shutil.rmtree(output, ignore_errors=True)


@backend_harness("ray", marks=[pytest.mark.services])
def _ray(tmp_path: Path) -> Iterator[Harness]:
    env = require_service("ray")
    from computenet.backends.ray import RayBackend

    address, prefix = env["RAY_ADDRESS"], _prefix()
    harness = Harness(
        make=lambda: RayBackend(
            state_dir=tmp_path / "ray-state",
            pools={"CPU-node": 8},
            address=address,
            prefix=prefix,
            center="ct-center",
        ),
        chip="CPU-node",
        poll_s=0.25,
        timeout_s=120.0,
    )
    yield harness
    with contextlib.suppress(Exception):
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient(address)
        for job in client.list_jobs():
            sid = job.submission_id or ""
            if sid.startswith(prefix + "-") and not job.status.is_terminal():
                client.stop_job(sid)
        # A stopped job's supervisor holds its CPUs a few seconds after the job reads
        # STOPPED; wait for them, so the next test measures capacity on an idle cluster.
        probe = RayBackend(pools={"CPU-node": 8}, address=address)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pool = probe.capacity()[0]
            if pool.free == pool.total:
                break
            time.sleep(0.5)


@backend_harness("kubernetes-fake")
def _kubernetes_fake(tmp_path: Path) -> Iterator[Harness]:
    from computenet.backends.kubernetes import KubernetesBackend
    from tests.helpers.kubernetes_fake import FakeKubernetes, FakeNode

    cluster = FakeKubernetes(
        nodes=[FakeNode("cpu-1", {"cpu": "8", "memory": "32Gi"})], workdir=tmp_path / "k8s"
    )
    (tmp_path / "k8s").mkdir()
    yield Harness(
        make=lambda: KubernetesBackend(
            pools={"CPU-node": 8},
            namespace="default",
            center="ct-center",
            batch_api=cluster.batch_api(),
            core_api=cluster.core_api(),
        ),
        chip="CPU-node",
        poll_s=0.05,
    )
    cluster.close()
