"""Scoring profiles: how feasible options are ranked.

Contract: a profile maps arrays of option features (cost ¥, finish h, carbon
kg) to one score per option; lower is better. Pure and deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Profile:
    """Weights over normalized objectives, and whether starts may shift to cheaper hours."""

    name: str
    cost: float = 1.0
    time: float = 0.0
    carbon: float = 0.0
    shift: bool = True
    # Whether a much shorter waiting job may preempt preemptible running ones
    # (scheduler/preemption.py): completion time first, so only `fastest`.
    preempt: bool = False

    def score(self, cost: np.ndarray, finish_h: np.ndarray, co2: np.ndarray) -> np.ndarray:
        """Weighted sum of each objective divided by its best value (so 1.0 = best)."""

        def norm(x: np.ndarray) -> np.ndarray:
            lo = float(x.min()) if x.size else 0.0
            return x / lo if lo > 0 else x - lo + 1.0

        s = self.cost * norm(cost) + self.time * norm(finish_h) + self.carbon * norm(co2)
        # Tie-break on finish, then cost, so equal scores pick the earlier option.
        return s + 1e-9 * finish_h + 1e-12 * cost


PROFILES: dict[str, Profile] = {
    # The default: cheapest option that meets the deadline and the budget.
    "min-cost": Profile("min-cost", cost=1.0),
    "fastest": Profile("fastest", cost=0.0, time=1.0, shift=False, preempt=True),
    "balanced": Profile("balanced", cost=1.0, time=0.5),
    "green": Profile("green", cost=0.2, carbon=1.0),
}
