"""``python -m computenet.server ARGS`` is ``cnet server ARGS``: one command, one option parser.

The options, their defaults and their errors live in `computenet.cli.procs.server`
only, so a deployment started either way behaves the same (``--help`` lists them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cnet server`` with `argv` (default: this process's arguments); its exit status."""
    from computenet.cli.main import main as cnet_main

    return cnet_main(["server", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
