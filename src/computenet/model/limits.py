"""Bounds on everything a user or a center sends, defined once.

The wire schemas (`computenet.protocol`), the job spec, the server's body
limit and paging, the SDK and the CLI all read these. A bound is generous
for any real use and small enough that no arithmetic downstream (the
scheduler's arrays, `timedelta`, a database integer) can overflow on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field

# Names and ids (jobs, datasets, centers, chips, classes, tenants).
MAX_NAME_CHARS = 128
MAX_ID_CHARS = 128
# A job's command line and its environment.
MAX_COMMAND_CHARS = 16_384
MAX_ENV_VARS = 128
MAX_ENV_NAME_CHARS = 256
MAX_ENV_VALUE_CHARS = 16_384
MAX_ENV_TOTAL_CHARS = 65_536
# Lists in a job spec.
MAX_INPUTS = 64
MAX_CHIP_TYPES = 32
# Sizes of a job: chips, work, memory, money. 1e7 CU·h is about a hundred
# times the largest training runs published; 1e6 h is over a century.
MAX_CHIPS = 4096
MAX_CU_HOURS = 1e7
MAX_HOURS = 1e6
MAX_MEMORY_GB = 1e5
MAX_BUDGET_CNY = Decimal("1e12")
MAX_PRIORITY = 10
# Deadlines and durations: at most about ten years ahead.
MAX_AHEAD = timedelta(days=3660)
MAX_DURATION_S = MAX_AHEAD.total_seconds()
# Instants anyone sends (deadlines, report times) lie within these years.
MIN_YEAR = 2000
MAX_YEAR = 2200
# Free text: a status message, an error, a path, a URL.
MAX_TEXT_CHARS = 4096
# Center protocol: one log append (the agent sends at most this many characters
# per call), exit codes (a 32-bit integer, as the database stores them),
# measured seconds and bytes, and the lists in a heartbeat.
MAX_LOG_APPEND_CHARS = 256 * 1024
# A job's whole log (all attempts) kept by the control plane; output past it is dropped.
MAX_JOB_LOG_BYTES = 64 << 20
MIN_EXIT_CODE = -(2**31)
MAX_EXIT_CODE = 2**31 - 1
MAX_ATTEMPT = 2**31 - 1
MAX_SECONDS = 1e9
MAX_BYTES = 2**62
MAX_POOLS = 256
MAX_RUNNING = 100_000
# Federation roll-up (docs/federation.md): a job's path down the levels (this
# plane's hop included), one hop's reason, and the jobs one heartbeat reports on.
MAX_PATH_HOPS = 8
MAX_REASON_CHARS = 512
MAX_PROGRESS = 1000
# Request bodies, in bytes: the user API, and the center protocol (whose log
# appends are up to MAX_LOG_APPEND_CHARS characters, each up to 6 bytes as JSON).
MAX_BODY_BYTES = 1 << 20
MAX_CENTER_BODY_BYTES = 8 << 20
# Pages of lists.
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def in_year_range(v: datetime | None) -> datetime | None:
    """`v` unchanged when its year is within [MIN_YEAR, MAX_YEAR]; ValueError otherwise."""
    if v is not None and not MIN_YEAR <= v.year <= MAX_YEAR:
        raise ValueError(f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return v


# An instant within the years above (an aware or naive datetime, as the field says).
BoundedInstant = Annotated[datetime, AfterValidator(in_year_range)]
# A short free text.
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
# An id or name.
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
