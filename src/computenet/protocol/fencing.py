"""The fencing rule: a center stops a job before the control plane may lease it again.

One lease timeout ``T`` (real seconds, a server setting) fixes every other number:

- the **agent fences** — stops every job it holds, SIGTERM then SIGKILL within
  ``stop_grace_s`` — once ``fence_after_s = T/2`` have passed since it *sent*
  the last heartbeat the control plane acknowledged;
- the **control plane requeues** a leased job once ``requeue_after_s = T + T/4``
  have passed since it last *received* a heartbeat listing that job (or since
  the lease, or since this replica became leader, whichever is latest);
- so a job is dead at its old center by ``T/2 + stop_grace_s`` after a send that
  precedes the receive the server counts from, and ``clock_slack_s`` — the
  rest of ``requeue_after_s`` — absorbs the agent's loop and poll delays, a
  dead agent's supervisors noticing it, and clock-rate drift between hosts.

The agent never compares its clock with the server's: it measures from its own
send time with its own monotonic clock, the server from its own receive time.
A heartbeat's send precedes its receive, so measuring from the send only ever
fences earlier. docs/center-protocol.md draws the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LEASE_TIMEOUT_S = 30.0
"""The production lease timeout ``T``: tolerate control-plane outages of ``T/2`` = 15 s."""

MAX_STOP_GRACE_S = 5.0
"""The longest SIGTERM → SIGKILL grace a fenced job gets (``T/4`` when that is shorter)."""


@dataclass(frozen=True)
class LeaseRule:
    """The timings derived from one lease timeout (see module doc); all real seconds."""

    lease_timeout_s: float
    fence_after_s: float
    stop_grace_s: float
    requeue_after_s: float

    @property
    def clock_slack_s(self) -> float:
        """What is left between a fenced job's death and its requeue: delays and drift."""
        return self.requeue_after_s - self.fence_after_s - self.stop_grace_s

    @property
    def margin_s(self) -> float:
        """How much later than ``T`` the control plane requeues."""
        return self.requeue_after_s - self.lease_timeout_s


def lease_rule(lease_timeout_s: float) -> LeaseRule:
    """The rule for lease timeout ``T``: fence at T/2, grace ≤ min(5, T/4), requeue at 1.25 T."""
    t = float(lease_timeout_s)
    rule = LeaseRule(
        lease_timeout_s=t,
        fence_after_s=t / 2,
        stop_grace_s=min(MAX_STOP_GRACE_S, t / 4),
        requeue_after_s=t * 1.25,
    )
    # The whole point: a fenced job is gone well before it may be leased again.
    assert rule.fence_after_s + rule.stop_grace_s < rule.requeue_after_s
    return rule
