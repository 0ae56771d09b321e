"""Delivering a held job's outbox to the control plane, in order.

Status, usage and replica reports go in the order they were queued; the job's
log text goes before any usage or final state (so a final job's log is
complete), and otherwise at most every log interval. A report is removed only
once delivered, so a control plane that is down loses nothing.

`ServerUnavailable` propagates (try again later). A status report refused
with one of `LOST` means the job is no longer this center's (cancelled, or
leased elsewhere after a lost lease): that propagates too, and the caller
stops the job. A usage report refused for what only a region may send
(`REGION_ONLY`: its own bill line, its path) goes again without it. Any
other refusal drops that one report, with a warning.
"""

from __future__ import annotations

import logging

from computenet.agent.client import CenterClient, ServerUnavailable
from computenet.agent.jobs import FINAL_STATES, HeldJob
from computenet.errors import ComputeNetError, ConflictError, ForbiddenError, NotFoundError
from computenet.model.limits import MAX_LOG_APPEND_CHARS
from computenet.protocol import LogAppend, ReplicaReport, StatusReport, UsageReport

logger = logging.getLogger(__name__)

LOST = (ConflictError, NotFoundError, ForbiddenError)
LOG_CHUNK_CHARS = MAX_LOG_APPEND_CHARS  # what the server accepts per append
# What a usage report carries only from a region (docs/federation.md): refused, it is left out.
REGION_ONLY = ("metered", "path")


def deliver(client: CenterClient, held: HeldJob, *, logs_due: bool) -> None:
    """Send `held`'s queued reports (and its logs when due or final); see module doc."""
    while held.outbox:
        item = held.outbox[0]
        kind = item["kind"]
        if kind == "usage" or (kind == "status" and item["state"] in FINAL_STATES):
            ship_logs(client, held)
        try:
            if kind == "status":
                client.status(
                    held.job_id,
                    StatusReport(
                        attempt=held.attempt,
                        state=item["state"],
                        exit_code=item.get("exit_code"),
                        message=item.get("message", ""),
                        at=item.get("at"),
                        endpoint=item.get("endpoint"),
                    ),
                )
            elif kind == "usage":
                client.usage(held.job_id, UsageReport(attempt=held.attempt, **item["usage"]))
            elif kind == "replica":
                client.replica(
                    item["dataset"], ReplicaReport(path=item["path"], sha256=item["sha256"])
                )
        except ComputeNetError as exc:
            if isinstance(exc, ServerUnavailable) or (kind == "status" and isinstance(exc, LOST)):
                raise
            if kind == "usage" and exc.field in REGION_ONLY and exc.field in item["usage"]:
                # A control plane that does not take a region's own bill line or path from
                # this center (docs/federation.md) meters the run itself: send it without.
                logger.warning("%s: usage sent without %s: %s", held.job_id, exc.field, exc.message)
                del item["usage"][exc.field]
                continue
            logger.warning("%s: %s report refused, dropped: %s", held.job_id, kind, exc.one_line())
        held.outbox.pop(0)
    if logs_due or held.phase == "finished":
        ship_logs(client, held)


def ship_logs(client: CenterClient, held: HeldJob) -> None:
    """Send the job's buffered output; offsets are UTF-8 bytes of this attempt's log."""
    while held.log_buffer:
        text = held.log_buffer[:LOG_CHUNK_CHARS]
        append = LogAppend(attempt=held.attempt, offset=held.log_sent, text=text)
        try:
            client.logs(held.job_id, append)
        except ServerUnavailable:
            raise
        except ComputeNetError as exc:
            # Whether the job is still ours is the status report's business, not the logs'.
            logger.warning("%s: logs refused, dropped: %s", held.job_id, exc.one_line())
        held.log_sent += len(text.encode())
        held.log_buffer = held.log_buffer[len(text) :]
