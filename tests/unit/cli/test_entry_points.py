"""`python -m computenet.server|agent` and `cnet server|agent` are one command each.

Two option parsers once drifted (`--sim-reports` in one only, `--lease-wait` in the
other, a different default lease timeout); both now run the `cnet` command, and
these tests hold the options each prints in `--help` equal, as a user sees them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from computenet.cli.supervise import cnet_argv

# An option as Rich/Click lists it in a help table: "--name" at a word boundary.
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def help_options(argv: list[str]) -> set[str]:
    """The long options `argv --help` prints (wide terminal, so nothing is wrapped)."""
    env = {**os.environ, "COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
    out = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert out.returncode == 0, out.stderr
    return set(OPTION.findall(out.stdout))


@pytest.mark.parametrize(
    ("command", "module", "must_have"),
    [
        ("server", "computenet.server", {"--sim-reports", "--patience", "--lease-timeout"}),
        ("agent", "computenet.agent", {"--lease-wait", "--keep-jobs", "--token-file"}),
    ],
)
def test_python_m_and_cnet_print_the_same_options(
    command: str, module: str, must_have: set[str]
) -> None:
    via_module = help_options([sys.executable, "-m", module])
    via_cnet = help_options(cnet_argv(command))
    assert via_module == via_cnet
    # Options only one of the old parsers had: both lists carry them now.
    assert must_have <= via_cnet, must_have - via_cnet


def test_python_m_server_reports_bad_options_as_cnet_does() -> None:
    """The same one-line error and exit status 2, whichever way the server is started."""
    bad = ["--log-format", "xml", "--db", "sqlite://"]
    via_module = subprocess.run(
        [sys.executable, "-m", "computenet.server", *bad],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    via_cnet = subprocess.run(
        cnet_argv("server", *bad), capture_output=True, text=True, timeout=60, check=False
    )
    assert (via_module.returncode, via_module.stderr) == (via_cnet.returncode, via_cnet.stderr)
    assert via_cnet.returncode == 2 and "log_format" in via_cnet.stderr
