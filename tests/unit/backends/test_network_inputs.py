"""The network backend's inputs: what the agent stages first, and how a staged input reaches
the child (its ``inbox`` center) — against the SDK's fake API of a region."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from computenet.agent.data import DataRoot, env_name
from computenet.agent.staging import StagingError, place_copy
from computenet.backends.base import BackendJob
from computenet.catalog.loader import load_network
from computenet.errors import BackendError, ValidationError
from computenet.protocol import StagingInput, StagingSource
from tests.unit.backends.test_network import REGION, SPEC, Region, backend_for

DATA = b"the parent's corpus\n" * 100
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def region(tmp_path: Path) -> Region:
    path = tmp_path / "gba.yaml"
    path.write_text(REGION)
    return Region(network=load_network(str(path)))


def item(dataset: str = "corpus", sha: str = SHA, sources: int = 1) -> StagingInput:
    src = [
        StagingSource(center="peer", url="http://peer", ticket="t", bandwidth_gbps=10, latency_ms=5)
    ] * sources
    return StagingInput(dataset=dataset, sha256=sha, size_bytes=len(DATA), sources=src)


def child_has(region: Region, tmp_path: Path, dataset: str, data: bytes) -> None:
    """Register `dataset` in the fake child as the account's, with `data`'s checksum."""
    client = backend_for(region, tmp_path / "setup").client
    client.add_dataset(dataset, "sz", f"tenants/acme/{dataset}", len(data), _sha(data))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def staged_job(tmp_path: Path, inputs: tuple[str, ...] = ("corpus",)) -> BackendJob:
    """A leased job whose inputs the agent staged under tmp_path/agent-data (its env says so)."""
    env = {"CNET_JOB_ID": "j-abc"}
    for d in inputs:
        f = tmp_path / "agent-data" / "tenants" / "acme" / d
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(DATA)
        env[env_name(d)] = str(f)
    spec = SPEC.model_copy(update={"inputs": inputs})
    return BackendJob("j-abc", 1, "echo hi", "H100", 1, env, spec=spec)


def test_only_the_inputs_the_child_lacks_are_staged_first(tmp_path: Path, region: Region) -> None:
    child_has(region, tmp_path, "weights", DATA)
    backend = backend_for(region, tmp_path, inbox="sz", inbox_root=str(tmp_path))
    wanted = backend.inputs_to_stage([item("corpus"), item("weights")])
    assert [i.dataset for i in wanted] == ["corpus"]


def test_an_input_the_child_holds_with_other_bytes_is_refused(
    tmp_path: Path, region: Region
) -> None:
    child_has(region, tmp_path, "corpus", b"other bytes")
    backend = backend_for(region, tmp_path, inbox="sz", inbox_root=str(tmp_path))
    with pytest.raises(BackendError, match="corpus is another file in the child"):
        backend.inputs_to_stage([item("corpus")])


def test_without_an_inbox_a_lacking_input_is_refused_naming_the_option(
    tmp_path: Path, region: Region
) -> None:
    with pytest.raises(BackendError, match="corpus has no copy") as got:
        backend_for(region, tmp_path).inputs_to_stage([item("corpus")])
    assert "inbox" in (got.value.hint or "")


def test_a_staged_input_is_placed_at_the_inbox_and_registered_in_the_child(
    tmp_path: Path, region: Region
) -> None:
    inbox = tmp_path / "sz-data"
    inbox.mkdir()
    backend = backend_for(region, tmp_path, inbox="sz", inbox_root=str(inbox))
    backend.inputs_to_stage([item("corpus")])
    handle = backend.submit(staged_job(tmp_path), "j-abc:1")
    placed = inbox / "tenants" / "acme" / "corpus"
    assert placed.read_bytes() == DATA
    view = region.datasets["corpus"]
    assert (view.sha256, view.size_bytes) == (SHA, len(DATA))
    assert view.replicas == [{"center": "sz", "path": "tenants/acme/corpus"}]
    assert region.jobs[handle].spec.inputs == ("corpus",)  # the child job reads it


def test_a_restarted_agent_reads_the_staged_checksum_from_the_file(
    tmp_path: Path, region: Region
) -> None:
    inbox = tmp_path / "sz-data"
    inbox.mkdir()
    backend = backend_for(region, tmp_path, inbox="sz", inbox_root=str(inbox))
    backend.submit(staged_job(tmp_path), "j-abc:1")  # no inputs_to_stage in this process
    assert region.datasets["corpus"].sha256 == SHA


def test_an_input_neither_in_the_child_nor_staged_is_refused(
    tmp_path: Path, region: Region
) -> None:
    inbox = tmp_path / "sz-data"
    inbox.mkdir()
    job = staged_job(tmp_path)
    job.env.pop(env_name("corpus"))
    backend = backend_for(region, tmp_path, inbox="sz", inbox_root=str(inbox))
    with pytest.raises(BackendError, match="input corpus has no copy in the child"):
        backend.submit(job, "j-abc:1")
    assert region.jobs == {}


@pytest.mark.parametrize(
    ("inbox", "root", "field"), [("sz", None, "inbox_root"), (None, ".", "inbox")]
)
def test_the_inbox_needs_both_options(
    tmp_path: Path, region: Region, inbox: str | None, root: str | None, field: str
) -> None:
    with pytest.raises(ValidationError) as got:
        backend_for(region, tmp_path, inbox=inbox, inbox_root=root and str(tmp_path))
    assert got.value.field == field


def test_an_inbox_root_that_is_no_directory_is_refused(tmp_path: Path, region: Region) -> None:
    with pytest.raises(ValidationError) as got:
        backend_for(region, tmp_path, inbox="sz", inbox_root=str(tmp_path / "nope"))
    assert got.value.field == "inbox_root"


def test_place_copy_links_or_copies_and_checks_the_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "staged"
    src.write_bytes(DATA)
    root = DataRoot(tmp_path / "root")
    assert place_copy(src, root, "tenants/t/a", SHA) == len(DATA)
    assert os.stat(root.root / "tenants/t/a").st_ino == src.stat().st_ino  # a hard link

    def no_link(a: object, b: object) -> None:
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    assert place_copy(src, root, "tenants/t/b", SHA) == len(DATA)
    assert (root.root / "tenants/t/b").read_bytes() == DATA
    with pytest.raises(StagingError, match="does not match its sha256"):
        place_copy(src, root, "tenants/t/c", _sha(b"other"))
    assert not (root.root / "tenants/t/c").exists()
    assert list(root.staging_dir().iterdir()) == []  # no scratch file left
    with pytest.raises(StagingError):
        place_copy(src, root, "../escape", SHA)
