"""The control plane warms the scheduler's kernels up as it starts, off its start-up path."""

from __future__ import annotations

import pytest

from computenet.scheduler import kernel
from tests.unit.server.conftest import make_net


def test_the_server_starts_warming_up_the_kernels(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(kernel, "warm_up_in_background", lambda: started.append("warm-up"))
    gen = make_net(db_url)
    net = next(gen)
    try:
        assert started == ["warm-up"]  # once, as the app's lifespan began
        assert net.client.get("/healthz").json()["ok"] is True
    finally:
        gen.close()
