"""A center is checked, not believed: what an agent says about itself, against the network.

The network file declares each center's chip pools (`model.center.Center.pools`).
An agent's ``register`` and ``heartbeat`` report capacity and (on register) the
URL of its data endpoint; the scheduler plans with that capacity and other
agents fetch from that URL, so nothing of it is taken on trust:

- every reported chip must be a pool the network declares for this center
  (``capacity[i].chip``), and appear once (``capacity[i].chip``);
- ``total`` may not exceed the declared count (``capacity[i].total``) and
  ``free`` may not exceed ``total`` (``capacity[i].free``);
- ``data_url`` must be an ``http`` or ``https`` URL with a host, and nothing
  else: no credentials, query or fragment (``data_url``).

A job's reports are checked too (`check_status`): a final state must agree with
its exit code (SUCCEEDED with 0 or none; FAILED with a non-zero code, or a
message that says why there is none), and only a job whose user asked for it
may end CANCELLED. Log appends may not leave a gap (`check_log_offset`).

What only a region may say (a center the network file tags ``region``,
docs/federation.md) is refused from any other center: its own bill line
(`check_metered`) and the jobs' paths below it (`check_progress`); its
queue, used chips and rate card in a pool (`REGION_POOL_FIELDS`) are not
stored from any other center (`own_capacity`). A
region's declared service fee (a ``fee:P%`` tag) is read by `fee_rate`, and a
region's replica of a dataset is named ``region:ID`` (`check_region_replica`).

Each check raises `ValidationError` (HTTP 422) naming the field, or, for a
state the job may not take now, `ConflictError` (409, field ``state``), before
anything is stored. The functions are pure: they read what they are given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from computenet.errors import ConflictError, ValidationError
from computenet.model.center import Center
from computenet.protocol import PoolCapacity, StatusReport
from computenet.protocol.api import MemberView
from computenet.protocol.center import REGION_PATH_PREFIX, JobProgress

_MAX_URL = 2048


def check_capacity(center: Center, capacity: Sequence[PoolCapacity]) -> None:
    """Refuse capacity that the network does not declare for `center` (422 naming the item)."""
    declared = {p.chip: p.count for p in center.pools}
    seen: set[str] = set()
    for i, pool in enumerate(capacity):
        where = f"capacity[{i}]"
        if pool.chip not in declared:
            raise ValidationError(
                f"center '{center.id}' has no {pool.chip!r} pool in the network",
                field=f"{where}.chip",
                hint=f"report only the declared pools: {_pools(declared)}",
            )
        if pool.chip in seen:
            raise ValidationError(
                f"{pool.chip} is reported twice",
                field=f"{where}.chip",
                hint="report each pool once",
            )
        seen.add(pool.chip)
        if pool.total > declared[pool.chip]:
            raise ValidationError(
                f"{pool.total} {pool.chip} chips reported but the network declares "
                f"{declared[pool.chip]} at center '{center.id}'",
                field=f"{where}.total",
                hint=f"report at most {declared[pool.chip]}, or change the network file",
            )
        if pool.free > pool.total:
            raise ValidationError(
                f"{pool.free} free {pool.chip} chips of {pool.total}",
                field=f"{where}.free",
                hint="free chips are at most the total",
            )


# What only a region says about a pool (docs/federation.md): its chips busy and jobs
# waiting inside it, and its rate card.
REGION_POOL_FIELDS = ("used", "queued", "quote_cny_per_cuh", "quote_wait_s")


def own_capacity(center: Center, capacity: Sequence[PoolCapacity]) -> list[dict[str, Any]]:
    """The capacity to store: as reported, less what only a region may say, from any other
    center (`REGION_POOL_FIELDS`: not believed, and not refused either, so that a region
    the network file does not tag still runs as an ordinary center)."""
    drop = set() if REGION_TAG in center.tags else set(REGION_POOL_FIELDS)
    return [p.model_dump(mode="json", exclude=drop) for p in capacity]


def check_data_url(url: str | None) -> None:
    """Refuse a data endpoint URL other agents must not be sent to (422 ``data_url``).

    None means the center serves no data (it can still run jobs without inputs).
    """
    if url is None:
        return
    hint = "the agent's data endpoint, e.g. http://HOST:PORT"
    if len(url) > _MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise ValidationError("data_url is not a plain URL", field="data_url", hint=hint)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 — raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise ValidationError(
            f"data_url is not a valid URL: {exc}", field="data_url", hint=hint
        ) from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError(
            f"data_url must be http or https, not {parts.scheme or 'schemeless'!r}",
            field="data_url",
            hint=hint,
        )
    if not host:
        raise ValidationError("data_url has no host", field="data_url", hint=hint)
    if parts.username is not None or parts.password is not None:
        raise ValidationError("data_url may not carry credentials", field="data_url", hint=hint)
    if parts.query or parts.fragment:
        raise ValidationError(
            "data_url may not carry a query or fragment", field="data_url", hint=hint
        )


def check_status(rep: StatusReport, *, cancel_requested: bool) -> None:
    """Refuse a status report that contradicts itself or the job (see module doc).

    A report of FAILED for a job whose cancel was asked is taken as CANCELLED by
    the caller, so it passes here.
    """
    if rep.state == "SUCCEEDED" and rep.exit_code not in (None, 0):
        raise ValidationError(
            f"SUCCEEDED with exit code {rep.exit_code}",
            field="exit_code",
            hint="a job that exits non-zero is FAILED; SUCCEEDED carries exit code 0 (or none)",
        )
    if (
        rep.state == "FAILED"
        and not cancel_requested
        and not rep.exit_code
        and not rep.message.strip()
    ):
        raise ValidationError(
            "FAILED without a non-zero exit code or a message",
            field="exit_code",
            hint="give the command's exit code (128+N for signal N), or a message saying why"
            " it has none (staging failed, could not start it)",
        )
    if rep.state == "CANCELLED" and not cancel_requested:
        raise ConflictError(
            "CANCELLED, but nobody cancelled this job",
            field="state",
            hint="a job the center stopped on its own is FAILED with a message; to give a job"
            " back, stop it and leave it out of the heartbeat's `running`",
        )


# A center whose runs are billed as it metered them (a region: docs/federation.md)
# carries this tag in the network file; any other center is billed by this
# network's own meter, so a center cannot set its own prices.
REGION_TAG = "region"


def check_metered(center: Center, metered: object | None) -> None:
    """Refuse a usage report's own bill line (`metered`) from a center that is not a region."""
    if metered is not None and REGION_TAG not in center.tags:
        raise ValidationError(
            f"center '{center.id}' is not a region: its runs are billed by this network's meter",
            field="metered",
            hint=f"leave metered out, or tag the center '{REGION_TAG}' in the network file",
        )


def check_progress(
    center: Center, progress: Sequence[JobProgress] | None, field: str = "progress"
) -> None:
    """Refuse a heartbeat's job paths (`progress`) from a center that is not a region.

    A path says where a job runs below this plane; only a region has a below.
    Each path's depth is bounded by its schema (`limits.MAX_PATH_HOPS`).
    """
    if progress is not None and REGION_TAG not in center.tags:
        raise ValidationError(
            f"center '{center.id}' is not a region: it has no path below it to report",
            field=field,
            hint=f"leave {field} out, or tag the center '{REGION_TAG}' in the network file",
        )


def check_members(center: Center, members: Sequence[MemberView] | None) -> None:
    """Refuse a heartbeat's member centers (`members`) from a center that is not a region
    (422 ``members``): only a region has centers of its own. Their number is bounded by
    the schema (`center.MAX_MEMBERS`), each one's pools by `limits.MAX_POOLS`."""
    if members is not None and REGION_TAG not in center.tags:
        raise ValidationError(
            f"center '{center.id}' is not a region: it has no member centers to list",
            field="members",
            hint=f"leave members out, or tag the center '{REGION_TAG}' in the network file",
        )


def check_region_replica(path: str) -> None:
    """Refuse a region's replica path other than ``region:ID`` (422 ``path``).

    A region holds its copy inside itself, under the dataset's id there; nothing
    of it is a file under an agent's data root that a job or a fetch could open.
    """
    rest = path[len(REGION_PATH_PREFIX) :] if path.startswith(REGION_PATH_PREFIX) else ""
    if not rest or "/" in rest or len(rest) > 128 or any(c.isspace() for c in rest):
        raise ValidationError(
            f"a region's replica path is {REGION_PATH_PREFIX}ID, not '{path[:80]}'",
            field="path",
            hint=f"report {REGION_PATH_PREFIX} and the dataset's id in the region",
        )


# A region's declared service fee on what it bills (docs/federation.md): a center tag
# such as ``fee:5%`` or ``fee:2.5%``, at most one, with at most two decimals, 0-100 %.
FEE_PREFIX = "fee:"
_FEE = re.compile(r"^(\d{1,3})(\.\d{1,2})?%$")


def fee_rate(center: Center) -> Decimal:
    """The region's declared fee as a fraction (``fee:5%`` → 0.05); 0 without one.

    ValidationError (field ``tags``) for a malformed tag, two fee tags, or a fee
    on a center that is not a region (only a region's own bill line is marked up).
    """
    tags = [t for t in center.tags if t.startswith(FEE_PREFIX)]
    if not tags:
        return Decimal(0)
    hint = "declare the region's fee as one tag fee:P% with 0 <= P <= 100, e.g. fee:5%"
    if len(tags) > 1:
        raise ValidationError(
            f"center '{center.id}' has {len(tags)} fee tags", field="tags", hint=hint
        )
    text = tags[0][len(FEE_PREFIX) :]
    if not _FEE.match(text) or Decimal(text[:-1]) > 100:
        raise ValidationError(
            f"center '{center.id}': fee '{text}' is not a percentage from 0% to 100%",
            field="tags",
            hint=hint,
        )
    if REGION_TAG not in center.tags:
        raise ValidationError(
            f"center '{center.id}' declares a fee but is not a region",
            field="tags",
            hint=f"tag it '{REGION_TAG}' too, or drop {tags[0]}",
        )
    return Decimal(text[:-1]) / 100


def check_log_offset(offset: int, have: int) -> None:
    """Refuse a log append that would leave a gap: it starts past the `have` bytes stored."""
    if offset > have:
        raise ValidationError(
            f"log append at byte {offset}, but this attempt's log has {have} bytes",
            field="offset",
            hint=f"send the output from byte {have} on (offsets are UTF-8 bytes of this attempt)",
        )


def _pools(declared: dict[str, int]) -> str:
    return ", ".join(f"{chip}={n}" for chip, n in declared.items()) or "none"
