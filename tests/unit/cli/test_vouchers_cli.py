"""`cnet admin voucher issue|list` on a database: terms, one-line errors, the audit log."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.unit.cli.conftest import Result

Cnet = Callable[..., Result]

TERMS = ("--issuer", "Shanghai", "--pct", "50", "--cap", "10000", "--from", "2026-12-01")


def test_a_voucher_is_issued_listed_and_audited(cnet: Cnet, db_url: str) -> None:
    db = ("--db", db_url)
    assert cnet("admin", "create-tenant", "lab", *db).code == 0
    r = cnet("admin", "voucher", "issue", "--tenant", "lab", *TERMS, "--until", "2027-06-30",
             "--centers", "zhongwei,shanghai", "--classes", "llm-train", "--network", "demo",
             "--json", *db)  # fmt: skip
    assert r.code == 0, r.err
    v = json.loads(r.out)
    assert v["tenant"] == "lab" and v["pct"] == "50.00" and v["cap_cny"] == "10000.00"
    assert v["centers"] == ["zhongwei", "shanghai"] and v["classes"] == ["llm-train"]
    assert v["valid_until"].startswith("2027-07-01T00:00:00+08:00")  # through June 30, CST
    listed = json.loads(cnet("admin", "voucher", "list", "--tenant", "lab", "--json", *db).out)
    assert [x["id"] for x in listed] == [v["id"]]
    assert listed[0]["remaining_cny"] == "10000.00"
    table = cnet("admin", "voucher", "list", *db)
    assert table.code == 0 and "Shanghai" in table.out and "10000.00" in table.out
    audit = cnet("admin", "audit", *db)
    assert "voucher.issue" in audit.out and f"voucher:{v['id']}" in audit.out
    assert (
        json.loads(cnet("admin", "voucher", "list", "--tenant", "other", "--json", *db).out) == []
    )


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("--pct", "0"), "--pct"),
        (("--pct", "abc"), "--pct"),
        (("--cap", "-5"), "--cap"),
        (("--until", "2026-11-01"), "--until"),
        (("--from", "someday"), "--from"),
        (("--centers", "mars", "--network", "demo"), "--centers"),
        (("--classes", "poetry", "--network", "demo"), "--classes"),
        (("--tenant", "nobody"), "--tenant"),
    ],
)
def test_bad_terms_are_one_line_naming_the_option_exit_2(
    cnet: Cnet, db_url: str, args: tuple[str, ...], option: str
) -> None:
    db = ("--db", db_url)
    assert cnet("admin", "create-tenant", "lab", *db).code == 0
    base = {"--tenant": "lab", "--until": "2027-06-30"}
    terms = dict(zip(TERMS[::2], TERMS[1::2], strict=True)) | base
    extra = dict(zip(args[::2], args[1::2], strict=True))
    flat = [x for kv in (terms | extra).items() for x in kv]
    r = cnet("admin", "voucher", "issue", *flat, *db)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {option}:"), r.err
