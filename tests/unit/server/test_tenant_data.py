"""Data that belongs to its tenant: the tenant's area, reserved names, conflicts, report ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.server.conftest import Net, make_net

SHA = "ab" * 32


def dataset(**over: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": "corpus",
        "center": "shanghai",
        "size_bytes": 10,
        "sha256": SHA,
    }
    body.update(over)
    return body


def test_a_dataset_without_a_path_lives_in_its_tenants_area(net: Net) -> None:
    r = net.client.post("/api/v1/datasets", json=dataset(), headers=net.user("ann", "acme"))
    assert r.status_code == 201, r.text
    assert r.json()["replicas"] == [{"center": "shanghai", "path": "tenants/acme/corpus"}]
    r = net.client.post(
        "/api/v1/datasets",
        json=dataset(id="lake", path="tenants/acme/lake/./part-0.csv"),
        headers=net.user("ann", "acme"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["replicas"][0]["path"] == "tenants/acme/lake/part-0.csv"


@pytest.mark.parametrize(
    "path",
    [
        "tenants/acme/corpus",  # another tenant's file
        "tenants/rival/../acme/corpus",
        "tenants/rival/../../etc/passwd",
        "/etc/passwd",
        "corpus.bin",  # the data root itself is the agent's, not a tenant's
        "tenants/rival",  # the area itself, not a file in it
        "tenants/rival/.cnet-index.json",
        "tenants/rival/.hidden/x",
        "tenants\\rival\\x",
    ],
)
def test_a_tenant_cannot_register_a_path_outside_its_area(net: Net, path: str) -> None:
    r = net.client.post(
        "/api/v1/datasets", json=dataset(id="stolen", path=path), headers=net.user("bo", "rival")
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "path"
    assert "tenants/rival/" in r.json()["hint"]
    assert net.client.get("/api/v1/datasets", headers=net.user("bo", "rival")).json() == []


@pytest.mark.parametrize("dataset_id", [".cnet-index.json", ".cnet-staging", ".x", "..", "."])
def test_reserved_dataset_ids_are_refused_naming_the_field(net: Net, dataset_id: str) -> None:
    r = net.client.post("/api/v1/datasets", json=dataset(id=dataset_id), headers=net.user())
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "id"


def test_a_taken_dataset_id_does_not_say_whose_it_is(net: Net) -> None:
    assert (
        net.client.post(
            "/api/v1/datasets", json=dataset(id="secret-merger"), headers=net.user("ann", "acme")
        ).status_code
        == 201
    )
    r = net.client.post(
        "/api/v1/datasets", json=dataset(id="secret-merger"), headers=net.user("bo", "rival")
    )
    assert r.status_code == 409 and r.json()["field"] == "id"
    assert "acme" not in r.text and "ann" not in r.text and "tenants/" not in r.text
    mine = net.client.post(
        "/api/v1/datasets", json=dataset(id="secret-merger"), headers=net.user("ann", "acme")
    )
    assert mine.status_code == 409 and "you already registered" in mine.json()["error"]


# ------------------------------------------------------------- simulation reports


@pytest.fixture
def reports(db_url: str, tmp_path: Path) -> Iterator[tuple[Net, Path]]:
    folder = tmp_path / "work" / "reports"
    folder.mkdir(parents=True)
    # What a traversal would reach: the server's working directory's results.json.
    (tmp_path / "work" / "results.json").write_text(json.dumps({"name": "cwd", "secret": 1}))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "results.json").write_text(json.dumps({"name": "outside"}))
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    inner = folder / "ok"
    inner.mkdir()
    (inner / "results.json").write_text(json.dumps({"name": "ok"}))
    (inner / "report.html").symlink_to(tmp_path / "work" / "results.json")
    yield from ((n, folder) for n in make_net(db_url, sim_reports_dir=folder))


@pytest.mark.parametrize(
    "report_id", ["%2E%2E", "%2e%2e", "%2E", ".hidden", "linked", "..%2Fwork", "%2Fetc"]
)
def test_a_report_id_cannot_leave_the_reports_folder(
    reports: tuple[Net, Path], report_id: str
) -> None:
    net, _ = reports
    for suffix in ("", "/html"):
        r = net.client.get(f"/api/v1/sim/reports/{report_id}{suffix}", headers=net.user())
        assert r.status_code == 404, (report_id, suffix, r.text)
        assert "secret" not in r.text and "outside" not in r.text


def test_reports_list_only_real_folders_inside_and_no_symlinked_html(
    reports: tuple[Net, Path],
) -> None:
    net, _ = reports
    listed = net.client.get("/api/v1/sim/reports", headers=net.user()).json()
    assert [x["id"] for x in listed] == ["ok"]
    assert net.client.get("/api/v1/sim/reports/ok/html", headers=net.user()).status_code == 404


@pytest.mark.parametrize("ttl", [0.0, -5.0, 86_401.0, float("nan")])
def test_a_ticket_lifetime_outside_a_second_to_a_day_is_refused(ttl: float) -> None:
    from computenet.errors import ValidationError
    from computenet.server import Settings

    with pytest.raises(ValidationError) as err:
        Settings(ticket_ttl_s=ttl, run_loop=False)
    assert err.value.field == "ticket_ttl_s"
