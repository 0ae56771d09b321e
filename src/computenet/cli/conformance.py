"""`cnet conformance -- COMMAND...`: drive a center implementation through the center protocol."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from types import FrameType
from typing import Annotated

import typer

from computenet.cli.app import app


@app.command(
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def conformance(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- COMMAND...",
            help="the center to test, e.g. -- python -m computenet.agent --backend local",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="longest wait, seconds, within one scenario")
    ] = 60.0,
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", help="run only this scenario (repeatable; register always)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Play a control plane, start the center with COMMAND, print PASS/FAIL per scenario.

    The center gets CNET_SERVER_URL, CNET_CENTER_ID, CNET_CENTER_TOKEN_FILE and
    CNET_POOLS in its environment and runs in a fresh directory (relative paths
    in COMMAND that exist are made absolute). Scenarios: see
    docs/center-protocol.md, "Conformance". Exit 0 only when every scenario
    passes, 1 when one fails, 2 for bad usage.
    """
    from computenet.conformance import SCENARIOS, run_kit

    if not command:
        sys.stderr.write(
            "error: command: give the center to test after --, e.g."
            " cnet conformance -- python -m computenet.agent --backend local\n"
        )
        raise typer.Exit(2)
    if shutil.which(command[0]) is None:
        sys.stderr.write(
            f"error: command: {command[0]!r} is not a program that can be run; give its path"
            " or a name on PATH\n"
        )
        raise typer.Exit(2)
    unknown = [name for name in scenario or () if name not in SCENARIOS]
    if unknown:
        sys.stderr.write(
            f"error: --scenario: no scenario {unknown[0]!r}; one of {', '.join(SCENARIOS)}\n"
        )
        raise typer.Exit(2)
    if not timeout > 0:
        sys.stderr.write("error: --timeout: must be a positive number of seconds\n")
        raise typer.Exit(2)

    def show(res: object) -> None:
        if not as_json:
            print(res.line(), flush=True)  # type: ignore[attr-defined]

    # SIGTERM unwinds like Ctrl-C, so that the server and the center started are stopped.
    old = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results, work = run_kit(command, timeout_s=timeout, only=scenario or (), on_result=show)
    finally:
        signal.signal(signal.SIGTERM, old)
    passed = all(r.passed for r in results)
    if as_json:
        print(
            json.dumps(
                {
                    "passed": passed,
                    "scenarios": [
                        {
                            "name": r.name,
                            "passed": r.passed,
                            "detail": r.detail,
                            "seconds": r.seconds,
                        }
                        for r in results
                    ],
                    "logs": None if passed else str(work),
                },
                ensure_ascii=False,
            )
        )
    n_ok = sum(r.passed for r in results)
    where = "" if passed else f"; the center's and control plane's logs are in {work}"
    sys.stderr.write(f"conformance: {n_ok} of {len(results)} scenarios passed{where}\n")
    if not passed:
        raise typer.Exit(1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
