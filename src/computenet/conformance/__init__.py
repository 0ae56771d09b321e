"""The center protocol's conformance kit: `cnet conformance -- COMMAND...`.

`run_kit` plays a control plane (a real server, a recording proxy, a peer
center), starts a center implementation with COMMAND and drives it through
`SCENARIOS`; docs/center-protocol.md ("Conformance") lists what each checks.
"""

from __future__ import annotations

from computenet.conformance.driver import run_kit
from computenet.conformance.kit import Result
from computenet.conformance.scenarios import SCENARIOS

__all__ = ["SCENARIOS", "Result", "run_kit"]
