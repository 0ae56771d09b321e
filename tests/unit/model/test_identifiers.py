"""Compute identifiers: format and parse round-trip, one parse per text, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from computenet.catalog import load_network
from computenet.catalog.loader import network_from_dict
from computenet.errors import ValidationError
from computenet.model import Dataset, Network
from computenet.model.center import Center
from computenet.model.identifiers import (
    DATASET_ID,
    PART,
    RESERVED,
    Identifier,
    Kind,
    center_identifier,
    check_prefix,
    dataset_identifier,
    default_prefix,
    job_identifier,
    network_prefix,
    parse,
    pool_identifier,
)

part = st.from_regex(r"\A[a-z0-9][a-z0-9\-]{0,15}\Z").filter(lambda p: p not in RESERVED)
prefix = st.lists(part, min_size=1, max_size=4).map(".".join)
chip = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_\-]{0,15}\Z")
dataset_id = st.from_regex(r"\A[A-Za-z0-9_.\-]{1,30}\Z").filter(
    lambda d: not d.startswith(".") and not d.endswith(".") and ".." not in d
)
identifiers = st.one_of(
    st.builds(lambda p, c: Identifier(p, Kind.CENTER, c), prefix, part),
    st.builds(lambda p, c, k: Identifier(p, Kind.POOL, c, k), prefix, part, chip),
    st.builds(lambda p, c, k: Identifier(p, Kind.DATASET, c, k), prefix, part, dataset_id),
    st.builds(lambda p, k: Identifier(p, Kind.JOB, None, k), prefix, chip),
)


@given(identifiers)
def test_format_then_parse_gives_the_same_identifier(ident: Identifier) -> None:
    assert parse(str(ident)) == ident
    assert str(parse(str(ident))) == str(ident)


@given(prefix, part)
def test_an_identifier_is_under_its_own_prefix_and_its_parents(p: str, c: str) -> None:
    ident = parse(f"{p}.{c}.pool.H100")
    assert ident.under(p) and ident.next_level(p) is None
    top = p.split(".")[0]
    if top != p:
        assert ident.under(top)
        assert ident.next_level(top) == p.split(".")[1]
    assert not ident.under(p + "x")


def test_the_documented_examples() -> None:
    assert pool_identifier("cn.gba", "shenzhen-1", "H100") == "cn.gba.shenzhen-1.pool.H100"
    assert parse("cn.gba.shenzhen-1.pool.H100") == Identifier(
        "cn.gba", Kind.POOL, "shenzhen-1", "H100"
    )
    assert center_identifier("cn", "gba") == "cn.gba"
    assert parse("cn.gba") == Identifier("cn", Kind.CENTER, "gba")
    # The dataset id may hold dots and reserved words: it is always last.
    d = parse(dataset_identifier("cn.gba", "sz", "corpus.job.v1"))
    assert (d.kind, d.center, d.key, d.prefix) == (Kind.DATASET, "sz", "corpus.job.v1", "cn.gba")
    # A job is named by its plane: `gba` here is part of the prefix, not a center.
    j = parse(job_identifier("cn.gba", "j-0123456789ab"))
    assert (j.kind, j.center, j.prefix) == (Kind.JOB, None, "cn.gba")
    assert j.next_level("cn") == "gba"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("shanghai", "no network prefix"),
        ("cn..gba", "empty"),
        (".cn.gba", "empty"),
        ("cn.gba.", "empty"),
        ("cn.GBA", "lower-case"),
        ("cn.gb a", "white space"),
        ("job.j-1", "network prefix comes first"),
        ("cn.pool.H100", "needs a network prefix and a center"),
        ("cn.sz.pool", "followed by an id"),
        ("cn.sz.pool.H1.00", "chip 'H1.00'"),
        ("cn.job.j.1", "job id 'j.1'"),
        ("cn.sz.dataset.a/b", "dataset id"),
        ("cn." + "a" * 70, "longer than 64"),
        ("c." * 250 + "x", "longer than 400"),
    ],
)
def test_bad_identifiers_say_which_part_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse(text, field="identifier")
    assert err.value.field == "identifier"
    assert words in err.value.message
    assert err.value.hint


def test_a_prefix_is_checked_part_by_part() -> None:
    assert check_prefix("cn.gba") == "cn.gba"
    for bad, words in (("cn.Gba", "'Gba'"), ("cn.job", "reserved"), ("", "empty")):
        with pytest.raises(ValidationError) as err:
            check_prefix(bad, "identifier")
        assert err.value.field == "identifier" and words in err.value.message


def test_the_default_prefix_comes_from_the_network_name() -> None:
    assert network_prefix(load_network("china")) == "china"
    assert default_prefix("Greater Bay Area") == "greater-bay-area"
    assert default_prefix("CN.GBA") == "cn.gba"
    assert default_prefix("job") == "job-net"
    assert default_prefix("粤港澳") == "net"


def test_the_patterns_match_the_models() -> None:
    # One meaning: a center id and a dataset id are valid identifier parts.
    assert PART.pattern == Center.model_fields["id"].metadata[-1].pattern
    assert DATASET_ID.pattern == Dataset.model_fields["id"].metadata[-1].pattern


def _raw(**over: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "gba",
        "centers": [
            {
                "id": "shenzhen-1",
                "lat": 22.5,
                "lon": 114.0,
                "pools": [{"chip": "H100", "count": 2}],
                "pue": 1.2,
                "tariff": {"flat": 0.6},
                "carbon_kg_per_kwh": 0.5,
                "service_price_per_cuh": 1,
            }
        ],
    }
    raw.update(over)
    return raw


def test_a_network_file_sets_the_prefix_and_a_bad_one_names_the_field() -> None:
    net: Network = network_from_dict(_raw(identifier="cn.gba"))
    assert network_prefix(net) == "cn.gba"
    assert network_prefix(network_from_dict(_raw())) == "gba"
    with pytest.raises(ValidationError) as err:
        network_from_dict(_raw(identifier="CN.gba"))
    assert err.value.field == "identifier"
    bad_center = _raw()
    bad_center["centers"][0]["id"] = "job"  # type: ignore[index]
    with pytest.raises(ValidationError) as err:
        network_from_dict(bad_center)
    assert err.value.field == "centers[0].id" and "reserved" in err.value.message
