"""Run the conformance kit: set up, run the chosen scenarios, clean up, return the verdicts."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from computenet.conformance.kit import Failed, Kit, Result, absolute_paths
from computenet.conformance.scenarios import BATCH, RUNNERS, SCENARIOS, submit_batch
from computenet.errors import ComputeNetError

log = logging.getLogger(__name__)


def run_kit(
    command: Sequence[str],
    *,
    timeout_s: float = 60.0,
    only: Sequence[str] = (),
    on_result: Callable[[Result], None] | None = None,
) -> tuple[list[Result], Path]:
    """Run the scenarios (`only`: a subset; register always runs) against `command`.

    Returns the results and the work directory (kept, with the center's and the
    control plane's logs, when a scenario failed). `on_result` sees each result
    as soon as it is known.
    """
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        raise ComputeNetError(
            f"unknown scenario {unknown[0]!r}",
            field="--scenario",
            hint="one of " + ", ".join(SCENARIOS),
        )
    wanted = [s for s in SCENARIOS if not only or s in only or s == SCENARIOS[0]]
    command = absolute_paths(command)
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="cnet-conformance-"))
    kit = Kit(command=command, timeout_s=timeout_s, work=work)

    def record(name: str, started: float, passed: bool, detail: str) -> None:
        res = Result(name, passed, detail, round(time.monotonic() - started, 1))
        results.append(res)
        if on_result is not None:
            on_result(res)

    try:
        try:
            kit.start_server()
            kit.start_center()
        except (Failed, ComputeNetError, OSError) as exc:
            for name in wanted:
                record(name, time.monotonic(), False, f"the kit could not start: {exc}")
            return results, work
        batch_sent = False
        for name in wanted:
            started = time.monotonic()
            try:
                if name in BATCH and not batch_sent:
                    submit_batch(kit)
                    batch_sent = True
                detail = RUNNERS[name](kit)
            except Failed as exc:
                record(name, started, False, str(exc))
            except Exception as exc:  # the kit's own trouble still ends in a FAIL line
                log.debug("scenario %s", name, exc_info=True)
                record(name, started, False, f"{type(exc).__name__}: {exc}")
            else:
                record(name, started, True, detail)
            if name == SCENARIOS[0] and not results[-1].passed:
                for rest in wanted[1:]:
                    record(rest, time.monotonic(), False, "skipped: the center never joined")
                break
    finally:
        kit.close()
        if all(r.passed for r in results):
            shutil.rmtree(work, ignore_errors=True)
    return results, work
