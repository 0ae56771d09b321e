"""The fuzz suite's tally: requests sent and 5xx answers, printed in the terminal summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest


@dataclass
class Tally:
    """What the fuzzed server answered, over the whole session."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def count(self, status: int) -> None:
        """Count one answer."""
        self.statuses[status] += 1

    @property
    def requests(self) -> int:
        """Requests sent."""
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """Answers 5xx."""
        return sum(n for s, n in self.statuses.items() if s >= 500)


FUZZ = Tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how many requests the fuzzing sent and how many got a 5xx."""
    if not FUZZ.requests:
        return
    by_status = ", ".join(f"{s}: {n}" for s, n in sorted(FUZZ.statuses.items()))
    terminalreporter.write_sep("-", "API fuzzing")
    terminalreporter.write_line(
        f"fuzz requests: {FUZZ.requests}, 5xx: {FUZZ.server_errors},"
        f" operations failing their document: {len(FUZZ.failures)} ({by_status})"
    )
