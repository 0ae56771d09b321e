"""Slurm and Ray backends without their services: parsing, mapping, and Slurm's edge cases.

The real-service behaviour is checked by the contract suite (params ``slurm``
and ``ray``); here stub Slurm commands stand in where a real cluster cannot be
made to misbehave on cue (accounting lagging behind, slurmctld down).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from computenet.backends import _external
from computenet.backends._external import is_local_host, key_name, parse_mapping, slice_log
from computenet.backends.base import BackendJob, BackendState
from computenet.backends.ray import RayBackend, _default_resource
from computenet.backends.slurm import SlurmBackend, _exit_code, _gres_count
from computenet.errors import BackendError, ValidationError


def test_readable_keys_stay_in_the_name_and_odd_ones_are_hashed() -> None:
    assert key_name("cnet", "j-12ab:2") == "cnet-j-12ab:2"
    odd = key_name("cnet", "has space, and comma")
    assert odd.startswith("cnet-h") and " " not in odd and "," not in odd
    assert key_name("cnet", "a b") != key_name("cnet", "a  b")


def test_logs_stop_before_a_split_utf8_character() -> None:
    data = "你好".encode()
    assert slice_log(data[:4], 10) == ("你", 13)
    assert slice_log(data, 10) == ("你好", 16)


def test_chip_mappings_parse_and_name_the_field_when_malformed() -> None:
    assert parse_mapping("A100=gpu:a100, H100=gpu:h100", "chip_gres") == {
        "A100": "gpu:a100",
        "H100": "gpu:h100",
    }
    with pytest.raises(ValidationError) as err:
        parse_mapping("A100", "chip_gres")
    assert err.value.field == "chip_gres"


def test_slurm_exit_codes_read_code_and_signal() -> None:
    assert _exit_code("3:0") == 3
    assert _exit_code("0:0") == 0
    assert _exit_code("0:15") == 143  # killed by SIGTERM, as a shell reports it
    assert _exit_code("garbage") is None


def test_gres_counts_by_name_and_type() -> None:
    gres = "gpu:a100:4(S:0-1),gpu:v100:2,npu:8"
    assert _gres_count(gres, "gpu", None) == 6
    assert _gres_count(gres, "gpu", "a100") == 4
    assert _gres_count(gres, "npu", None) == 8
    assert _gres_count("", "gpu", None) == 0


def test_slurm_maps_chips_to_gres_or_cpus_and_partitions(tmp_path: Path) -> None:
    b = SlurmBackend(
        tmp_path,
        {"A100": 8, "H100": 8},
        partition="gpu",
        account="lab",
        chip_gres="A100=gpu:a100",
        chip_partitions="H100=hopper",
        cpus_per_chip=4,
    )
    a100 = BackendJob("j", 1, "true", "A100", 2)
    h100 = BackendJob("j", 1, "true", "H100", 1)
    assert b._resource_args(a100) == [
        "--partition=gpu",
        "--account=lab",
        "--gres=gpu:a100:2",
        "--cpus-per-task=8",
    ]
    assert b._resource_args(h100)[:1] == ["--partition=hopper"]
    assert "--gres=gpu:1" in b._resource_args(h100)
    cpus = SlurmBackend(tmp_path, {"CPU-node": 8}, chips_as="cpus")
    assert cpus._resource_args(BackendJob("j", 1, "true", "CPU-node", 3)) == ["--cpus-per-task=3"]
    with pytest.raises(ValidationError):
        SlurmBackend(tmp_path, {"A100": 1}, chips_as="tpus")


def test_slurm_batch_script_quotes_the_environment_and_execs_the_command(tmp_path: Path) -> None:
    b = SlurmBackend(tmp_path, {"A100": 8})
    script = b._script(
        BackendJob(
            "j-1", 3, "echo 'it''s' && exit 4", "A100", 2, env={"MSG": "a b$c'd", "bad-name": "x"}
        )
    )
    assert "export MSG='a b$c'\"'\"'d'" in script
    assert "bad-name" not in script
    assert "export CNET_ATTEMPT=3" in script
    assert script.rstrip().endswith(
        "exec /bin/bash -c 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"' && exit 4'"
    )


def test_slurm_capacity_from_sinfo_json_skips_drained_nodes() -> None:
    nodes = SlurmBackend._nodes_from_json(
        {
            "nodes": [
                {
                    "name": "g1",
                    "partitions": ["gpu"],
                    "state": "mixed",
                    "state_flags": [],
                    "cpus": 64,
                    "idle_cpus": 32,
                    "gres": "gpu:a100:8",
                    "gres_used": "gpu:a100:3(IDX:0-2)",
                },
                {
                    "name": "g2",
                    "partitions": ["gpu"],
                    "state": "idle",
                    "state_flags": ["DRAIN"],
                    "cpus": 64,
                    "idle_cpus": 64,
                    "gres": "gpu:a100:8",
                    "gres_used": "",
                },
            ]
        }
    )
    assert [(n.name, n.usable) for n in nodes] == [("g1", True), ("g2", False)]


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def test_slurm_poll_takes_the_exit_from_scontrol_while_accounting_lags(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir, "squeue", "echo '5|FAILED|2026-01-01T10:00:00|2026-01-01T10:00:05|NonZeroExitCode'"
    )
    _stub(bin_dir, "sacct", "echo '5|RUNNING|0:0|2026-01-01T10:00:00|Unknown'")
    _stub(
        bin_dir,
        "scontrol",
        "echo 'JobId=5 JobName=x JobState=FAILED Reason=NonZeroExitCode "
        "ExitCode=2:0 StartTime=2026-01-01T10:00:00 EndTime=2026-01-01T10:00:05'",
    )
    b = SlurmBackend(tmp_path / "state", {"CPU-node": 1}, chips_as="cpus", bin_dir=str(bin_dir))
    status = b.poll(["5"])["5"]
    assert (status.state, status.exit_code) == (BackendState.FAILED, 2)
    assert status.ended_at is not None


def test_slurm_refuses_to_say_not_found_when_slurmctld_is_down(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir,
        "squeue",
        "echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2; exit 1",
    )
    _stub(bin_dir, "sacct", "exit 0")
    b = SlurmBackend(tmp_path / "state", {"CPU-node": 1}, chips_as="cpus", bin_dir=str(bin_dir))
    with pytest.raises(BackendError, match="squeue failed"):
        b.find("k:1")  # "not found" here would start the job a second time
    with pytest.raises(BackendError):
        b.poll(["7"])


def test_slurm_cancel_of_a_finished_or_unknown_job_is_a_no_op(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir,
        "scancel",
        "echo 'scancel: error: Kill job error on job id 9: Invalid job id specified' >&2; exit 1",
    )
    b = SlurmBackend(tmp_path / "state", {"CPU-node": 1}, chips_as="cpus", bin_dir=str(bin_dir))
    b.cancel("9")
    b.cancel("not-a-slurm-id")


def test_ray_resources_follow_the_chip_stack() -> None:
    assert _default_resource("A100") == "GPU"
    assert _default_resource("Hygon-DCU") == "GPU"
    assert _default_resource("Ascend-910B") == "NPU"
    assert _default_resource("CPU-node") == "CPU"
    b = RayBackend(
        pools={"A100": 8, "MLU370-X8": 4}, address="127.0.0.1:8265", chip_resources="MLU370-X8=MLU"
    )
    assert b.resources == {"A100": "GPU", "MLU370-X8": "MLU"}
    assert b.address == "http://127.0.0.1:8265"


def test_ray_needs_an_http_jobs_api_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ValidationError) as err:
        RayBackend(pools={"A100": 1})
    assert err.value.field == "address"
    with pytest.raises(ValidationError):
        RayBackend(pools={"A100": 1}, address="ray://head:10001")
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert RayBackend(pools={"A100": 1}).address == "http://head:8265"


def test_ray_reports_an_unreachable_cluster_as_a_backend_error() -> None:
    with pytest.raises(BackendError, match="cluster resources"):
        RayBackend(pools={"CPU-node": 1}, address="http://127.0.0.1:9", timeout_s=2).capacity()


def test_slurm_submits_with_export_none_its_label_and_a_private_output_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    args = tmp_path / "sbatch-args"
    _stub(bin_dir, "sbatch", f'printf "%s\\n" "$@" > {args}; echo "42;cluster"')
    _stub(bin_dir, "squeue", "exit 0")
    _stub(bin_dir, "sacct", "exit 0")
    monkeypatch.setenv("CNET_CENTER_TOKEN", "cnc_secret")  # the agent's env: never passed on
    b = SlurmBackend(
        tmp_path / "state", {"CPU-node": 2}, chips_as="cpus", bin_dir=str(bin_dir),
        center="east", run_as="agent", output_dir=tmp_path / "out",
    )  # fmt: skip
    handle = b.submit(BackendJob("j-1", 2, "true", "CPU-node", 1, env={"A": "x,y"}), "j-1:2")
    assert handle == "42"
    sent = args.read_text().splitlines()
    assert "--export=NONE" in sent
    assert "--comment=computenet center=east key=j-1%3A2" in sent
    assert not any(a.startswith("--uid") for a in sent)  # run_as=agent
    (output,) = [a.removeprefix("--output=") for a in sent if a.startswith("--output=")]
    folder = Path(output).parent
    assert folder.parent == tmp_path / "out" and len(folder.name) == 32
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o711
    script = Path(sent[-1]).read_text()
    assert "export A=x,y" in script and "cnc_secret" not in script
    assert "export PATH=" in script and "export SLURM_EXPORT_ENV=ALL" in script
    assert Path(sent[-1]).stat().st_mode & 0o777 == 0o600


def test_slurm_list_jobs_reads_only_this_centers_labels(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(
        bin_dir,
        "squeue",
        "echo '7|cnet-j-1:2|computenet center=east key=j-1%3A2'; "
        "echo '8|cnet-j-2:1|computenet center=west key=j-2%3A1'; "
        "echo '9|cnet-j-3:1|(null)'; "
        "echo '10|other-j-4:1|computenet center=east key=j-4%3A1'",
    )
    b = SlurmBackend(tmp_path / "state", {"CPU-node": 1}, chips_as="cpus", bin_dir=str(bin_dir))
    b.center = "east"
    assert b.list_jobs() == {"j-1:2": "7"}  # 10's name does not match its key: not ours


def test_slurm_run_as_resolves_users_and_refuses_root(tmp_path: Path) -> None:
    b = SlurmBackend(tmp_path, {"A100": 1}, run_as="nobody")
    assert b.run_as is not None and b.run_as[0] == 65534
    with pytest.raises(ValidationError) as err:
        SlurmBackend(tmp_path, {"A100": 1}, run_as="root")
    assert err.value.field == "run_as"
    with pytest.raises(ValidationError):
        SlurmBackend(tmp_path, {"A100": 1}, run_as="no-such-user-here")


def test_is_local_host_looks_up_this_machines_names_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Slurm replica's submit asks it for every node's address: the reverse DNS lookup
    # of this machine's own name (getfqdn) must not be repeated per node.
    lookups: list[str] = []
    real = socket.getfqdn

    def counted(name: str = "") -> str:
        lookups.append(name)
        return real(name)

    monkeypatch.setattr(_external.socket, "getfqdn", counted)
    _external._local_names.cache_clear()
    try:
        assert is_local_host("127.0.0.1") and is_local_host(socket.gethostname())
        assert not is_local_host("203.0.113.7") and not is_local_host("")
        assert len(lookups) == 1
    finally:
        _external._local_names.cache_clear()
