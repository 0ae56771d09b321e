"""Read network files (YAML) into a validated `Network`, with errors that name the field."""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pydantic
import yaml

from computenet.errors import ValidationError
from computenet.model import Chip, Link, Network, Tariff, ThroughputMatrix
from computenet.model.network import fiber_rtt_ms

BUILTIN_NETWORKS = ("demo", "china", "gavel")


def _data(name: str) -> str:
    return resources.files("computenet.catalog").joinpath("data", name).read_text("utf-8")


@cache
def load_chips() -> dict[str, Chip]:
    """The built-in chip catalog, by name."""
    raw = yaml.safe_load(_data("chips.yaml"))
    return {c["name"]: Chip(**c) for c in raw["chips"]}


@cache
def load_throughput() -> ThroughputMatrix:
    """The built-in throughput matrix."""
    return ThroughputMatrix(**yaml.safe_load(_data("throughput.yaml")))


def pydantic_field_error(exc: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    """Turn pydantic's error into ours, naming the first failing field as a path."""
    err = exc.errors()[0]
    parts: list[str] = []
    for p in err["loc"]:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    path = prefix + "".join(parts)
    msg = str(err["msg"]).removeprefix("Value error, ")
    # Cross-field checks put the path inside the message ("centers[2].id: ...").
    if not path and ": " in msg and not msg.startswith(" "):
        path, _, msg = msg.partition(": ")
    return ValidationError(msg, field=path or None, hint="fix this field in the file and try again")


def _tariff(spec: Any, where: str) -> Tariff:
    if not isinstance(spec, dict):
        raise ValidationError("must be a mapping like {flat: 0.6}", field=where)
    try:
        if "hourly" in spec:
            return Tariff(hourly=tuple(Decimal(str(x)) for x in spec["hourly"]))
        if "flat" not in spec:
            raise ValidationError("needs 'flat' (¥/kWh) or 'hourly' (24 prices)", field=where)
        flat = Decimal(str(spec["flat"]))
        if flat < 0:
            raise ValidationError("flat price must be >= 0", field=f"{where}.flat")
        kwargs: dict[str, Any] = {
            k: spec[k] for k in ("peak", "valley", "peak_hours", "valley_hours") if k in spec
        }
        for k in ("peak_hours", "valley_hours"):
            if k in kwargs:
                kwargs[k] = tuple(int(h) for h in kwargs[k])
        return Tariff.time_of_use(flat, **kwargs)
    except pydantic.ValidationError as exc:
        raise pydantic_field_error(exc, f"{where}.") from exc
    except (ArithmeticError, TypeError, ValueError) as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"not a valid tariff ({exc})", field=where) from exc


def network_from_dict(raw: Any) -> Network:
    """Build and validate a network from the parsed YAML of a network file."""
    if not isinstance(raw, dict):
        raise ValidationError("a network file must be a YAML mapping", field="(file)")
    data = dict(raw)
    unknown = set(data) - {
        "name",
        "time_scale",
        "data_scale",
        "chips",
        "throughput",
        "centers",
        "sites",
        "links",
        "auto_links",
        "identifier",
    }
    if unknown:
        raise ValidationError(
            f"unknown key '{sorted(unknown)[0]}'",
            field=sorted(unknown)[0],
            hint="allowed: name, identifier, time_scale, data_scale, chips, centers, sites, links,"
            " auto_links",
        )
    chips = dict(load_chips())
    for i, c in enumerate(data.get("chips") or []):
        try:
            chip = Chip(**c)
        except pydantic.ValidationError as exc:
            raise pydantic_field_error(exc, f"chips[{i}].") from exc
        except TypeError as exc:
            raise ValidationError("must be a mapping", field=f"chips[{i}]") from exc
        chips[chip.name] = chip
    data["chips"] = chips
    data["throughput"] = data.get("throughput") or load_throughput()
    centers = data.get("centers")
    if not isinstance(centers, list) or not centers:
        raise ValidationError("needs a non-empty list of centers", field="centers")
    fixed = []
    for i, c in enumerate(centers):
        if not isinstance(c, dict):
            raise ValidationError("must be a mapping", field=f"centers[{i}]")
        c = dict(c)
        c["tariff"] = _tariff(c.get("tariff"), f"centers[{i}].tariff")
        fixed.append(c)
    data["centers"] = fixed
    auto = data.pop("auto_links", None)
    try:
        net = Network(**data)
    except pydantic.ValidationError as exc:
        raise pydantic_field_error(exc) from exc
    if auto:
        net = _with_auto_links(net, auto)
    return net


def _with_auto_links(net: Network, auto: dict[str, Any]) -> Network:
    """Fill every missing node pair with a link whose latency comes from coordinates."""
    have = {frozenset((link.a, link.b)) for link in net.links}
    coords = net.coordinates()
    nodes = net.node_ids
    links = list(net.links)
    bw = float(auto.get("bandwidth_gbps", 10))
    price = Decimal(str(auto.get("price_per_gb", "0.03")))
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            if frozenset((a, b)) in have:
                continue
            one_way = max(fiber_rtt_ms(coords[a], coords[b]) / 2, 0.5)
            links.append(
                Link(a=a, b=b, bandwidth_gbps=bw, latency_ms=round(one_way, 2), price_per_gb=price)
            )
    return net.model_copy(update={"links": tuple(links)})


def load_network(name_or_path: str | Path) -> Network:
    """A built-in network by name (`demo`, `china`, `gavel`) or a network YAML file by path."""
    text: str
    if str(name_or_path) in BUILTIN_NETWORKS:
        text = _data(f"{name_or_path}.yaml")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValidationError(
                f"no such network file '{path}'",
                field="network",
                hint=f"give a YAML file or one of: {', '.join(BUILTIN_NETWORKS)}",
            )
        text = path.read_text("utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "(file)"
        raise ValidationError(
            f"malformed YAML: {getattr(exc, 'problem', exc)}", field=where
        ) from exc
    return network_from_dict(raw)
