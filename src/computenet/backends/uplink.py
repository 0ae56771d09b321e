"""The uplink backend: a region offers its parent network what it cannot run itself.

Overflow up (docs/federation.md, "Overflow up"). Inside a region the parent
network is **one more center**: a center of the region's network file tagged
``parent`` (and ``region``: it bills what the parent metered), run by
``cnet agent --backend uplink``. The region's scheduler places a job there
only when none of its own centers can run it — by its deadline, or at all —
and only when the job may leave (`scheduler/overflow.py`). This backend is
the network backend (`backends/network.py`) pointed up instead of down, as
one user account of the parent, with three differences:

- **The region itself is left out.** `exclude` (default: `origin`, the
  region's name, which is also its center id at the parent) names the
  parent's centers that are this region. The capacity offered is the parent's
  free chips *elsewhere* — so nothing is counted twice — and the shape check
  looks only there.
- **Never back to the region (no loop).** Every job sent up is pinned
  (`JobSpec.center`) to a center of the parent that is not excluded: the
  parent quotes it (`POST /api/v1/quote`, the parent's own scheduler and
  prices) and the uplink takes the parent's best feasible option elsewhere —
  the parent picks, the region only rules itself out. A job the parent could
  only run in this region, or not by its deadline, fails here with the
  parent's reasons instead of coming back.
- **Up, never back down the same way.** The job sent up carries
  ``CNET_ORIGIN_JOB=REGION/JOB`` (as any job handed to another network) and
  ``CNET_ORIGIN_HOP=up``: if the parent cannot run it either, the parent may
  send it further up (pinned away from itself, local first there too); a job
  that came *down* from the parent carries ``CNET_ORIGIN_HOP=down`` and the
  region's scheduler never places it here (the backend refuses it too, should
  it be asked).

A job's inputs go up with it (unless a residency tag keeps them here, which
the region's scheduler already holds to): the agent stages each one the
parent's account lacks from the region's replicas, checksum checked, and the
backend places it at the parent's ``inbox`` center and registers it there
before the parent quotes the job — the network backend's `inputs_to_stage`
and `_import_inputs`, with the options `inbox` and `inbox_root`.

Identity, idempotency, fencing (the watchdog), logs, states and money are the
network backend's: the parent's job is named ``REGION/JOB_ID:ATTEMPT``, its
exit code and log flow back, and the region bills exactly what the parent
metered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from computenet.backends.base import BackendJob
from computenet.backends.network import UPLINK_KIND, NetworkBackend
from computenet.errors import BackendError, ConflictError, ValidationError
from computenet.model import JobSpec
from computenet.protocol import CenterView, JobDetail, JobView, QuoteOption, QuoteView
from computenet.sdk.client import Client, SpecLike, spec_of

URL_ENV = "CNET_PARENT_URL"
TOKEN_FILE_ENV = "CNET_PARENT_TOKEN_FILE"


class ParentClient(Client):
    """The parent's user API; every job submitted through it is pinned away from `exclude`.

    `exclude` is the set of the parent's center ids that are the region itself.
    A spec without a `center` is quoted first and pinned to the parent's best
    feasible option at another center (the quote's order: cheapest, then
    soonest, among those that meet the deadline and the budget).
    """

    def __init__(self, *args: Any, exclude: frozenset[str] = frozenset(), **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.exclude = exclude

    def submit(
        self,
        spec: SpecLike,
        idempotency_key: str | None = None,
        wait: bool = False,
        *,
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        on_update: Callable[[JobDetail], None] | None = None,
    ) -> JobView:
        """Submit `spec`, pinned to a center of the parent that is not the region."""
        s = spec_of(spec)
        if s.center is None or s.center in self.exclude:
            s = s.model_copy(update={"center": self.elsewhere(s).center})
        return super().submit(
            s, idempotency_key, wait, poll_s=poll_s, timeout_s=timeout_s, on_update=on_update
        )

    def quote(self, spec: SpecLike) -> QuoteView:
        """The parent's quote without the options in the region: what the parent offers it.

        The rate card the uplink reports (the network backend's) and the pin of
        every job sent up both read this, so neither counts the region itself.
        The cheapest and fastest marks are left as the parent set them.
        """
        view = super().quote(spec)
        return view.model_copy(
            update={"options": [o for o in view.options if o.center not in self.exclude]}
        )

    def elsewhere(self, spec: JobSpec) -> QuoteOption:
        """The parent's best option for `spec` at a center not excluded; ConflictError if none."""
        quote = self.quote(spec.model_copy(update={"center": None}))
        options = quote.options
        ok = [o for o in options if o.feasible]
        if ok:
            # Local first at the parent too: its own parent (a center run by an uplink)
            # only when none of its own centers can (a job sent up may go further up).
            own = [o for o in ok if o.center not in self._uplinks()] if len(ok) > 1 else ok
            return (own or ok)[0]
        chips = f"{spec.chips.count} × {'/'.join(spec.chips.types) or 'any chip'}"
        where = ", ".join(sorted(self.exclude))
        if options:
            why = "; ".join(options[0].reasons) or "misses the deadline or the budget"
            raise ConflictError(
                f"the parent network cannot run {chips} outside {where} in time: {why}",
                field="deadline",
                hint="relax the deadline or the budget, or set spill: never to wait here",
            )
        why = "; ".join(quote.infeasible_reasons) or "no center has such chips"
        raise ConflictError(
            f"the parent network has no center but {where} for {chips}: {why}",
            field="chips",
            hint="declare at the parent's center in the region's network file only chips"
            " the parent has elsewhere",
        )

    def _uplinks(self) -> set[str]:
        """The parent's centers that are its own parent (backend ``uplink``)."""
        return {c.id for c in self.centers() if c.backend == UPLINK_KIND}


class UplinkBackend(NetworkBackend):
    """Runs a region's overflow at its parent network (see the module doc).

    Options as the network backend's, pointed at the parent: `url` (default
    ``$CNET_PARENT_URL``), `token_file` (a user of the parent, mode 600;
    default ``$CNET_PARENT_TOKEN_FILE``), `origin` (the region's name: the
    first part of every job's identity at the parent), and `exclude` (the
    parent's center ids that are this region, comma-separated; default `origin`);
    `inbox`, `inbox_root` (a parent center outside the region and its agent's data
    root, for jobs with inputs: see the module doc).
    """

    kind = "uplink"
    peer = "parent"
    hop = "up"  # a job sent up may go further up if the parent cannot run it either
    url_env = URL_ENV
    token_env = TOKEN_FILE_ENV
    example_url = "https://cn.example.org"

    def __init__(
        self,
        state_dir: str | Path | None = None,
        pools: Mapping[str, int] | str | None = None,
        *,
        url: str | None = None,
        token_file: str | Path | None = None,
        origin: str = "",
        exclude: str = "",
        center: str = "",
        timeout_s: float | str = 30.0,
        submit_retry_s: float | str = 10.0,
        capacity_ttl_s: float | str = 1.0,
        watchdog: bool | str = True,
        inbox: str | None = None,
        inbox_root: str | Path | None = None,
        client: ParentClient | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not origin:
            raise ValidationError(
                "the uplink backend needs the region's name",
                field="origin",
                hint="--backend-opt origin=gba (the region's center id at the parent)",
            )
        self.exclude = frozenset(x.strip() for x in (exclude or origin).split(",") if x.strip())
        if inbox and inbox in self.exclude:
            raise ValidationError(
                f"inbox '{inbox}' is this region at the parent",
                field="inbox",
                hint="name a center of the parent outside the region, whose data root this"
                " agent can write",
            )
        if client is not None:
            client.exclude = self.exclude
        super().__init__(
            state_dir,
            pools,
            url=url,
            token_file=token_file,
            origin=origin,
            center=center,
            timeout_s=timeout_s,
            submit_retry_s=submit_retry_s,
            capacity_ttl_s=capacity_ttl_s,
            # The network backend's watchdog: it cancels at the parent what a dead agent held.
            watchdog=watchdog,
            inbox=inbox,
            inbox_root=inbox_root,
            client=client,
            transport=transport,
        )

    def _connect(self, url: str, token: str, transport: httpx.BaseTransport | None) -> Client:
        """The parent's user API, every job sent through it pinned away from the region."""
        return ParentClient(
            url, token, timeout=self.timeout_s, transport=transport, exclude=self.exclude
        )

    def submit(self, job: BackendJob, idempotency_key: str) -> str:
        """Send `job` up, pinned away from this region; never a job that may not leave."""
        if job.spec is not None and (why := job.spec.no_spill_reason()):
            raise BackendError(
                f"{job.job_id} is not sent to the parent network: {why}",
                hint="the region's scheduler should not have placed it here (a parent-tagged"
                " center is for jobs that may spill)",
            )
        return super().submit(job, idempotency_key)

    def _centers(self) -> list[CenterView]:
        """The parent's centers but this region's: its capacity is offered nowhere twice.

        The parent's own uplinks count (unlike the network backend's view down, where
        they are the viewer's own chips): a job sent up may go further up from there.
        """
        return [c for c in self._all_centers() if c.id not in self.exclude]
