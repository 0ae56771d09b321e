"""The center protocol's version rule: a field added to v1 is off the wire while unset."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from computenet.protocol import center

# Every message with a field added after v1's release (`center.added`).
MESSAGES: list[tuple[type[BaseModel], dict[str, object]]] = [
    (center.PoolCapacity, {"chip": "H100", "total": 2, "free": 1}),
    (center.HeartbeatRequest, {"center_id": "east"}),
    (center.UsageReport, {"attempt": 1, "run_real_s": 1.0}),
]


def _added(model: type[BaseModel]) -> list[str]:
    return [n for n, f in model.model_fields.items() if f.exclude_if is not None]


@pytest.mark.parametrize(("model", "body"), MESSAGES, ids=lambda m: getattr(m, "__name__", ""))
def test_an_added_field_is_absent_until_set(
    model: type[BaseModel], body: dict[str, object]
) -> None:
    added = _added(model)
    assert added, f"{model.__name__} has no added field"
    sent = model.model_validate(body).model_dump(mode="json")
    assert not set(added) & set(sent), sent
    assert set(sent) <= set(model.model_fields)
