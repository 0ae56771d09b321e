"""HiGHS instances that never write to the process's stdout (pure scheduler: no side effects).

`highspy.Highs()` logs its banner while it is being built, before any option
can be set, and scipy's bundled HiGHS prints debugging lines from its MIP
solver; so the scheduler turns HiGHS's output off through its own options
before its first log line, and solves MIPs with it rather than with
`scipy.optimize.milp`.
"""

from __future__ import annotations

import highspy


class QuietHighs(highspy.Highs):
    """A HiGHS solver whose log goes nowhere, from its construction on."""

    def enableCallbacks(self) -> None:
        """Silence the solver first: `highspy.Highs.__init__` logs its banner from here."""
        self.setOptionValue("output_flag", False)
        self.setOptionValue("log_to_console", False)
        # HiGHS keeps one thread pool per process; a pool started before a fork (the
        # simulator's sweeps fork workers) hangs the child. One thread starts none.
        self.setOptionValue("threads", 1)
        super().enableCallbacks()  # type: ignore[no-untyped-call]


def quiet_highs() -> highspy.Highs:
    """A HiGHS solver that prints nothing (see `QuietHighs`)."""
    return QuietHighs()  # type: ignore[no-untyped-call]
