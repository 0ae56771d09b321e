"""Backends by name: `make_backend("local", state_dir=..., pools=...)`.

`local` and `fake` live here; `slurm`, `ray` and `kubernetes` are imported only
when asked for, so their client libraries stay optional. Every backend class is
built with keyword options; the agent passes ``state_dir`` (a directory the
backend may keep state in) and ``pools`` (chip type → count, from the network
file or ``--slots``) plus any ``--backend-opt KEY=VALUE``. A backend whose
constructor does not take an option (and has no ``**kwargs``) simply does not get it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, cast

from computenet.backends.base import Backend
from computenet.errors import ValidationError

# kind → (module, class). Local and fake are part of this package; the rest are optional.
BACKENDS: dict[str, tuple[str, str]] = {
    "local": ("computenet.backends.local", "LocalBackend"),
    "fake": ("computenet.backends.fake", "FakeBackend"),
    "slurm": ("computenet.backends.slurm", "SlurmBackend"),
    "ray": ("computenet.backends.ray", "RayBackend"),
    "kubernetes": ("computenet.backends.kubernetes", "KubernetesBackend"),
    # A whole ComputeNet network (a region) joining its parent as one center.
    "network": ("computenet.backends.network", "NetworkBackend"),
    # A region's parent network as one center of the region: its overflow goes up there.
    "uplink": ("computenet.backends.uplink", "UplinkBackend"),
}


def backend_class(kind: str) -> type:
    """The class implementing backend `kind`; ValidationError naming the field if unavailable."""
    if kind not in BACKENDS:
        raise ValidationError(
            f"unknown backend '{kind}'", field="backend", hint=f"one of: {', '.join(BACKENDS)}"
        )
    module_name, class_name = BACKENDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValidationError(
            f"the {kind} backend is not available here: {exc}",
            field="backend",
            hint=f"install its extra, e.g. pip install 'computenet[{kind}]'",
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValidationError(
            f"{module_name} has no {class_name}", field="backend", hint="a broken installation?"
        )
    return cast(type, cls)


def make_backend(kind: str, **options: Any) -> Backend:
    """Build backend `kind` with the options its constructor accepts."""
    cls = backend_class(kind)
    try:
        params: Mapping[str, inspect.Parameter] = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    return cast(Backend, cls(**options))


def parse_pools(pools: Mapping[str, int] | str | None) -> dict[str, int]:
    """Pools from a mapping or text like ``"H100=8,A100=4"``; counts must be ≥ 1."""
    if pools is None:
        return {}
    items: list[tuple[str, Any]]
    if isinstance(pools, str):
        items = []
        for part in filter(None, (p.strip() for p in pools.split(","))):
            chip, sep, count = part.partition("=")
            if not sep:
                raise ValidationError(
                    f"'{part}' is not CHIP=COUNT", field="pools", hint="e.g. H100=8,A100=4"
                )
            items.append((chip.strip(), count.strip()))
    else:
        items = list(pools.items())
    out: dict[str, int] = {}
    for chip, count in items:
        try:
            n = int(count)
        except (TypeError, ValueError):
            n = -1
        if not chip or n < 1:
            raise ValidationError(
                f"pool '{chip}' needs a whole number of chips ≥ 1, got '{count}'", field="pools"
            )
        out[chip] = n
    return out
