"""A region's member centers, as its network agent reports them: kept in memory for display.

A center the network file tags `region` may list its own centers with its
heartbeat (`HeartbeatRequest.members`, docs/federation.md); the centers view
(`GET /api/v1/centers`) shows the last list as `CenterView.members`, and the
dashboard draws them inside the region's group. Nothing schedules by it: the
region's capacity (`largest_free`, per chip) does that. Like the regions'
quotes (`server.quotes`), it lives in this server's memory only: it is
redrawn by the next heartbeat, and a server that restarts or a replica that
got no heartbeat from the region shows none until the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from computenet.protocol.api import MemberView


class MemberBook:
    """Region center id → the member centers its last heartbeat listed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._members: dict[str, list[MemberView]] = {}

    def keep(self, center_id: str, members: Sequence[MemberView] | None) -> None:
        """What `center_id`'s heartbeat said: a list replaces the last; None forgets it
        (an agent that sends none has none to show)."""
        with self._lock:
            if members is None:
                self._members.pop(center_id, None)
            else:
                self._members[center_id] = list(members)

    def of(self, center_id: str) -> list[MemberView] | None:
        """The member centers last reported by `center_id`, or None."""
        with self._lock:
            got = self._members.get(center_id)
            return list(got) if got is not None else None
