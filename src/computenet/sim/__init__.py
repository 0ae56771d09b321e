"""The simulator: the production scheduler on a virtual clock, with simulated centers and links.

`Simulation` runs one policy over a `Workload` (synthetic, or loaded from a
Gavel or Alibaba trace); `runner.compare` runs several and bounds them with
the LP relaxation; `report` draws the plots and the HTML page.
"""

from computenet.sim.engine import Environment
from computenet.sim.metrics import PolicyMetrics, summarize
from computenet.sim.policies import ALL_POLICIES, Baseline, SchedulerPolicy, make_policy
from computenet.sim.results import Outage, SimConfig, SimResult
from computenet.sim.simulator import Simulation
from computenet.sim.workload import Workload, synthetic

__all__ = [
    "ALL_POLICIES",
    "Baseline",
    "Environment",
    "Outage",
    "PolicyMetrics",
    "SchedulerPolicy",
    "SimConfig",
    "SimResult",
    "Simulation",
    "Workload",
    "make_policy",
    "summarize",
    "synthetic",
]
