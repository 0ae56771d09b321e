"""`cnet admin tenant|quota` on a database and `cnet bill` with or without tenancy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from computenet.sdk.testing import FakeAPI
from tests.unit.cli.conftest import Result

Cnet = Callable[..., Result]


def test_bill_prints_without_tenancy_from_a_server_that_has_none(fake: FakeAPI, cnet: Cnet) -> None:
    r = cnet("bill")
    assert r.code == 0, r.err
    assert "bill of" in r.out


def test_admin_quota_and_tenant_commands(
    cnet: Cnet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNET_DB", str(tmp_path / "cnet.db"))
    monkeypatch.setenv("COLUMNS", "200")
    assert cnet("admin", "create-tenant", "acme").code == 0
    r = cnet("admin", "quota", "set", "acme", "--kind", "chips", "--limit", "16", "--chip", "H100")
    assert (r.code, r.out.strip()) == (0, "tenant acme: quota 16 H100 in use")
    r = cnet("admin", "tenant", "set", "acme", "--weight", "2", "--priority-ceiling", "5")
    assert "weight 2, priority ceiling 5" in r.out
    listed = cnet("admin", "quota", "list", "acme").out
    assert "16 H100 in use" in listed
    shown = cnet("admin", "tenant", "show", "acme").out
    assert "fair-share weight 2" in shown and "priority ceiling 5" in shown
    for argv, field in (
        (("quota", "set", "acme", "--kind", "chips", "--limit", "2", "--chip", "H999"), "--chip"),
        (("quota", "set", "acme", "--kind", "cny", "--limit", "2"), "--period"),
        (("quota", "clear", "acme", "--kind", "gpus"), "--kind"),
        (("tenant", "set", "acme", "--weight", "0"), "--weight"),
    ):
        r = cnet("admin", *argv)
        assert r.code == 2, argv
        assert r.err.count("\n") == 1 and field in r.err, (argv, r.err)
    assert "1 quota removed" in cnet("admin", "quota", "clear", "acme").out
