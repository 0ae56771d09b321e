"""Job files out of bounds: one line on stderr naming the field, exit 2, nothing sent."""

from __future__ import annotations

import pytest

from computenet.sdk.testing import FakeAPI
from tests.unit.cli.test_cli import GOOD, Cnet, JobFile, assert_one_line_error

CASES = [
    ("cu_hours .inf", GOOD.replace("cu_hours: 4", "cu_hours: .inf"), "work.cu_hours"),
    ("cu_hours -.inf", GOOD.replace("cu_hours: 4", "cu_hours: -.inf"), "work.cu_hours"),
    ("cu_hours .nan", GOOD.replace("cu_hours: 4", "cu_hours: .nan"), "work.cu_hours"),
    ("cu_hours 1e308", GOOD.replace("cu_hours: 4", "cu_hours: 1.0e+308"), "work.cu_hours"),
    ("deadline 99999999999d", GOOD.replace("deadline: 12h", "deadline: 99999999999d"), "deadline"),
    ("a billion chips", GOOD.replace("{count: 4}", "{count: 1000000000}"), "chips.count"),
    ("env name with =", GOOD + "env: {'A=B': '1'}\n", "env"),
]


@pytest.mark.parametrize("command", ["submit", "quote"])
@pytest.mark.parametrize(("what", "text", "field"), CASES, ids=[c[0] for c in CASES])
def test_a_job_file_out_of_bounds_is_one_line_exit_2(
    fake: FakeAPI, cnet: Cnet, job_file: JobFile, command: str, what: str, text: str, field: str
) -> None:
    r = cnet(command, str(job_file(text)))
    assert_one_line_error(r, field)
    assert fake.jobs == {}
