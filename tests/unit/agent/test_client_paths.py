"""The agent's reports name their job in one URL path segment, whatever the id holds."""

from __future__ import annotations

import httpx
import pytest

from computenet.agent.client import CenterClient
from computenet.protocol.center import StatusReport


@pytest.mark.parametrize(
    ("job_id", "path"),
    [
        ("job-42", "/center/v1/jobs/job-42/status"),
        ("../admin", "/center/v1/jobs/..%2Fadmin/status"),
        ("..", "/center/v1/jobs/%2E%2E/status"),
        ("a/b?c#d", "/center/v1/jobs/a%2Fb%3Fc%23d/status"),
    ],
)
def test_a_job_id_stays_one_path_segment(job_id: str, path: str) -> None:
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(200, json={})

    client = CenterClient(
        "http://127.0.0.1:9", "token", "c1", transport=httpx.MockTransport(answer)
    )
    client.status(job_id, StatusReport(attempt=1, state="RUNNING"))
    assert seen == [path.encode()]
