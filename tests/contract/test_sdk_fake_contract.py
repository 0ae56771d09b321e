"""One contract for the user API: the SDK's shipped `FakeAPI` and the real server agree.

Every test runs twice through the same `computenet.Client` calls: once against
`computenet.sdk.testing.FakeAPI` (in memory) and once against a real ``cnet
server`` on 127.0.0.1 with one real ``cnet agent``. A user's test written against
the fake then means what it says about the server: submit, the idempotency key
(one per tenant), get, list, cancel (twice, and of a finished job), logs, and the
errors of submit and quote, with their status and field.

The network has two centers: ``run`` (A100, with an agent: its jobs run to the
end) and ``hold`` (H100, no agent ever: its jobs stay PENDING, as the fake's do).
The fake places nothing, so a job that must finish is finished by `Side.finish`:
on the server it is a job the agent really runs; on the fake the test moves it.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from computenet.catalog import load_network
from computenet.cli.supervise import cnet_argv, write_secret
from computenet.errors import AuthError, ConflictError, NotFoundError, ValidationError
from computenet.model import JobState
from computenet.sdk import Client
from computenet.sdk.testing import FakeAPI
from tests.helpers.processes import log_tail, start_server, stop_process

NETWORK = """
name: sdk-contract
time_scale: 600
data_scale: 1
centers:
  - id: run
    region: east
    lat: 31.0
    lon: 121.0
    pools: [{chip: A100, count: 2}]
    pue: 1.3
    tariff: {flat: 0.9, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.5
    service_price_per_cuh: 3
  - id: hold
    region: west
    lat: 37.5
    lon: 105.2
    pools: [{chip: H100, count: 2}]
    pue: 1.15
    tariff: {flat: 0.3, peak: 1, valley: 1}
    carbon_kg_per_kwh: 0.6
    service_price_per_cuh: 1
links:
  - {a: run, b: hold, bandwidth_gbps: 1, latency_ms: 20, price_per_gb: 0.05}
"""

WAIT_S = 60.0


def spec(name: str = "contract", chip: str = "H100", **extra: Any) -> dict[str, Any]:
    """A job: on H100 it waits (no agent at `hold`); on A100 it runs at `run`."""
    return {
        "name": name,
        "class": "llm-train",
        "command": "echo hello",
        "chips": {"count": 1, "types": [chip]},
        "work": {"cu_hours": 0.1},
        **extra,
    }


def key() -> str:
    """An idempotency key no other test uses (the server is shared by the module)."""
    return f"contract-{uuid.uuid4().hex}"


@dataclass
class Side:
    """One implementation of the user API, as two tenants' clients see it."""

    name: str
    alice: Client  # tenant acme
    bob: Client  # tenant other
    # Submit a job that ends in SUCCEEDED with `output` as its log; returns its id.
    finish: Callable[[Client, str], str]
    bad_token: Client
    closers: list[Callable[[], None]] = field(default_factory=list)


def fake_side(tmp: Path) -> Iterator[Side]:
    net_file = tmp / "network.yaml"
    net_file.write_text(NETWORK)
    fake = FakeAPI(network=load_network(net_file), tenant="acme")
    bob_token = fake.add_tenant("other")

    def client(token: str) -> Client:
        return Client("http://fake", token, transport=fake.transport())

    def finish(c: Client, output: str) -> str:
        view = c.submit(spec("done", chip="A100", command=f"printf {output!r}"))
        fake.finish(view.id, JobState.SUCCEEDED, output)
        return view.id

    yield Side("fake", client(fake.token), client(bob_token), finish, client("nope"))


def server_side(tmp: Path) -> Iterator[Side]:
    net_file = tmp / "network.yaml"
    net_file.write_text(NETWORK)
    url, admin_token, server = start_server(
        tmp, str(net_file), cycle_interval=0.2, heartbeat_interval=0.3
    )
    admin = Client(url, admin_token)
    agent = None
    try:
        for tenant in ("acme", "other"):
            admin.create_tenant(tenant)
        alice = Client(url, admin.create_user("alice", "acme").token)
        bob = Client(url, admin.create_user("bob", "other").token)
        token_file = write_secret(tmp / "secrets" / "run.token", admin.center_token("run").token)
        log = tmp / "agent-run.log"
        with log.open("ab") as out:
            agent = subprocess.Popen(
                cnet_argv(
                    "agent", "--center", "run", "--server", url,
                    "--token-file", str(token_file), "--network", str(net_file),
                    "--state-dir", str(tmp / "run" / "state"),
                    "--data-root", str(tmp / "run" / "data"),
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

        def finish(c: Client, output: str) -> str:
            view = c.submit(spec("done", chip="A100", command=f"printf {output!r}"))
            done = c.wait(view.id, poll_s=0.1, timeout_s=WAIT_S)
            assert done.state is JobState.SUCCEEDED, log_tail(log) + log_tail(tmp / "server.log")
            return view.id

        side = Side("server", alice, bob, finish, Client(url, "cnu_not-a-token"))
        side.closers += [alice.close, bob.close]
        yield side
    finally:
        if agent is not None:
            stop_process(agent)
        stop_process(server)
        admin.close()


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("fake", id="fake"),
        pytest.param("server", id="server", marks=[pytest.mark.integration, pytest.mark.own_db]),
    ],
)
def side(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Side]:
    """The fake, or a real server and agent shared by the module's tests."""
    make = fake_side if request.param == "fake" else server_side
    gen = make(tmp_path_factory.mktemp(f"sdk-contract-{request.param}"))
    s = next(gen)
    yield s
    for close in s.closers:
        close()
    gen.close()


# -- submit and the idempotency key ------------------------------------------------------


def test_a_submitted_job_is_pending_and_reads_back_the_same(side: Side) -> None:
    view = side.alice.submit(spec("first"))
    assert (view.state, view.name, view.tenant) == (JobState.PENDING, "first", "acme")
    got = side.alice.job(view.id)
    assert (got.id, got.state, got.name, got.tenant) == (view.id, JobState.PENDING, "first", "acme")
    assert got.spec is not None and got.spec.command == "echo hello"
    assert got.events and got.events[0].state is JobState.PENDING


def test_the_same_key_twice_gives_the_first_job(side: Side) -> None:
    k = key()
    first = side.alice.submit(spec("a"), idempotency_key=k)
    again = side.alice.submit(spec("b"), idempotency_key=k)
    assert again.id == first.id and again.name == "a"


def test_the_same_key_in_another_tenant_is_another_job(side: Side) -> None:
    k = key()
    mine = side.alice.submit(spec("mine"), idempotency_key=k)
    theirs = side.bob.submit(spec("theirs"), idempotency_key=k)
    assert theirs.id != mine.id
    assert (theirs.name, theirs.tenant) == ("theirs", "other")
    assert side.alice.job(mine.id).name == "mine"  # bob's submit changed nothing of alice's


def test_a_key_seen_returns_the_first_job_even_if_this_spec_is_invalid(side: Side) -> None:
    k = key()
    first = side.alice.submit(spec("ok"), idempotency_key=k)
    again = side.alice.submit(spec("bad", chip="NoSuchChip"), idempotency_key=k)
    assert again.id == first.id


# -- get and list ------------------------------------------------------------------------


def test_an_unknown_job_and_another_tenants_job_are_not_found(side: Side) -> None:
    theirs = side.bob.submit(spec("theirs"))
    for job_id in ("j-does-not-exist", theirs.id):
        for call in (side.alice.job, side.alice.cancel, side.alice.logs):
            with pytest.raises(NotFoundError) as err:
                call(job_id)
            assert err.value.field == "job_id"


def test_list_is_newest_first_the_callers_own_and_filters_by_state(side: Side) -> None:
    a = side.alice.submit(spec("list-a"))
    b = side.alice.submit(spec("list-b"))
    theirs = side.bob.submit(spec("list-theirs"))
    side.alice.cancel(a.id)
    ids = [j.id for j in side.alice.jobs()]
    assert ids.index(b.id) < ids.index(a.id)
    assert theirs.id not in ids
    assert all(j.tenant == "acme" for j in side.alice.jobs())
    pending = {j.id for j in side.alice.jobs(state="PENDING")}
    cancelled = {j.id for j in side.alice.jobs(state=JobState.CANCELLED)}
    assert (b.id in pending, a.id in pending) == (True, False)
    assert (a.id in cancelled, b.id in cancelled) == (True, False)
    both = {j.id for j in side.alice.jobs(state="pending,cancelled")}
    assert {a.id, b.id} <= both
    assert len(side.alice.jobs(limit=1)) == 1


def test_an_unknown_state_in_the_list_filter_names_the_field(side: Side) -> None:
    with pytest.raises(ValidationError) as err:
        side.alice.jobs(state="SLEEPING")
    assert err.value.field == "state"


# -- cancel ------------------------------------------------------------------------------


def test_cancel_a_pending_job_and_cancel_it_again(side: Side) -> None:
    view = side.alice.submit(spec("to-cancel"))
    first = side.alice.cancel(view.id)
    assert first.state is JobState.CANCELLED
    again = side.alice.cancel(view.id)  # idempotent: the job stays cancelled, no error
    assert (again.id, again.state) == (view.id, JobState.CANCELLED)
    assert side.alice.job(view.id).state is JobState.CANCELLED


def test_cancel_a_finished_job_is_a_conflict_on_its_state(side: Side) -> None:
    job_id = side.finish(side.alice, "done\n")
    with pytest.raises(ConflictError) as err:
        side.alice.cancel(job_id)
    assert err.value.field == "state"
    assert side.alice.job(job_id).state is JobState.SUCCEEDED


# -- logs --------------------------------------------------------------------------------


def test_logs_of_a_waiting_job_are_empty_and_not_complete(side: Side) -> None:
    view = side.alice.submit(spec("quiet"))
    chunk = side.alice.logs(view.id)
    assert (chunk.text, chunk.offset, chunk.next_offset, chunk.complete) == ("", 0, 0, False)
    side.alice.cancel(view.id)
    assert side.alice.logs(view.id).complete is True


def test_logs_of_a_finished_job_read_from_an_offset(side: Side) -> None:
    job_id = side.finish(side.alice, "hello world\n")
    whole = side.alice.logs(job_id)
    assert (whole.text, whole.next_offset, whole.complete) == ("hello world\n", 12, True)
    tail = side.alice.logs(job_id, offset=6)
    assert (tail.text, tail.offset, tail.next_offset) == ("world\n", 6, 12)
    assert "".join(side.alice.follow_logs(job_id)) == "hello world\n"


# -- errors of submit and quote ----------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "field_name"),
    [
        (spec(chip="NoSuchChip"), "chips.types"),
        (spec(deadline="2001-01-01T00:00:00+08:00"), "deadline"),
        (spec(inputs=["no-such-dataset"]), "inputs"),
    ],
    ids=["unknown-chip", "past-deadline", "unknown-dataset"],
)
def test_submit_and_quote_refuse_a_bad_spec_naming_the_field(
    side: Side, bad: dict[str, Any], field_name: str
) -> None:
    before = {j.id for j in side.alice.jobs(limit=500)}
    for call in (side.alice.submit, side.alice.quote):
        with pytest.raises(ValidationError) as err:
            call(bad)
        assert (err.value.field or "").startswith(field_name), (call, err.value)
    assert {j.id for j in side.alice.jobs(limit=500)} == before  # nothing was stored


def test_a_quote_submits_nothing_and_offers_the_center_with_the_chip(side: Side) -> None:
    before = {j.id for j in side.alice.jobs(limit=500)}
    q = side.alice.quote(spec("q", chip="A100"))
    assert {o.center for o in q.options} == {"run"}
    assert {j.id for j in side.alice.jobs(limit=500)} == before


def test_an_unknown_token_is_refused(side: Side) -> None:
    with pytest.raises(AuthError):
        side.bad_token.jobs()


def test_whoami_names_the_tenant_of_the_token(side: Side) -> None:
    assert (side.alice.whoami().tenant, side.bob.whoami().tenant) == ("acme", "other")
