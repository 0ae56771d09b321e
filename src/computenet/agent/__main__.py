"""``python -m computenet.agent ARGS`` is ``cnet agent ARGS``: one command, one option parser.

The options, their environment variables and their errors live in
`computenet.cli.procs.agent` only, so a center started either way behaves the same.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cnet agent`` with `argv` (default: this process's arguments); its exit status."""
    from computenet.cli.main import main as cnet_main

    return cnet_main(["agent", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
