"""`python -m computenet.cli` runs `cnet`."""

from computenet.cli.main import run

run()
