"""The agent's TCP relay to a replica that listens off its host (agent/relay.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from computenet.agent.relay import Relay


class Upstream:
    """A TCP server on 127.0.0.1 that answers each connection's bytes upper-cased."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closed `sock` (EOF or reset), waiting at most 10 s."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_bytes_go_both_ways_through_the_relay(upstream: Upstream) -> None:
    relay = Relay("127.0.0.1", ("127.0.0.1", upstream.port))
    port = relay.start()
    try:
        assert port > 0 and port != upstream.port
        big = bytes(range(97, 123)) * 40_000  # ~1 MB: more than one read's chunk
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"hello")
            assert _recv_exactly(c, 5) == b"HELLO"
            sender = threading.Thread(target=c.sendall, args=(big,))
            sender.start()
            got = _recv_exactly(c, len(big))
            sender.join()
            assert got == big.upper()
        # Two connections at once are relayed independently.
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as a,
            socket.create_connection(("127.0.0.1", port), timeout=10) as b,
        ):
            a.sendall(b"from a")
            b.sendall(b"from b")
            assert _recv_exactly(b, 6) == b"FROM B"
            assert _recv_exactly(a, 6) == b"FROM A"
    finally:
        relay.close()


def test_closing_the_relay_cuts_its_connections_and_stops_listening(
    upstream: Upstream,
) -> None:
    relay = Relay("127.0.0.1", ("127.0.0.1", upstream.port))
    port = relay.start()
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        c.sendall(b"x")
        assert _recv_exactly(c, 1) == b"X"
        assert relay.active == 1
        relay.close()
        assert relay.closed and relay.active == 0
        assert _closed_by_peer(c)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        relay.close()  # idempotent
    finally:
        c.close()


def test_connections_beyond_the_bound_are_closed_on_accept(upstream: Upstream) -> None:
    relay = Relay("127.0.0.1", ("127.0.0.1", upstream.port), max_connections=2)
    port = relay.start()
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        for s in held:  # both relayed (and counted) before the third comes
            s.sendall(b"k")
            assert _recv_exactly(s, 1) == b"K"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            assert _closed_by_peer(extra)  # the third is over the bound
        assert relay.active == 2
        held.pop().close()  # one ends: room for another (once the relay has seen it end)
        for _ in range(100):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
                again.sendall(b"z")
                again.settimeout(10)
                try:
                    if again.recv(1) == b"Z":
                        break
                except ConnectionResetError:
                    pass
            time.sleep(0.05)
        else:
            pytest.fail("the relay refused a connection below its bound")
    finally:
        for s in held:
            s.close()
        relay.close()


def test_a_replica_that_is_gone_closes_the_client_connection() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])
    relay = Relay("127.0.0.1", ("127.0.0.1", dead), connect_timeout_s=2)
    port = relay.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            assert _closed_by_peer(c)
        assert relay.active == 0
    finally:
        relay.close()


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        Relay("127.0.0.1", ("127.0.0.1", 1), max_connections=0)
    with pytest.raises(ValueError, match="idle_timeout_s"):
        Relay("127.0.0.1", ("127.0.0.1", 1), idle_timeout_s=0)


def test_an_idle_connection_is_closed_and_frees_its_slot(upstream: Upstream) -> None:
    # One slot: an idle client must not hold it for ever.
    relay = Relay("127.0.0.1", ("127.0.0.1", upstream.port), max_connections=1, idle_timeout_s=1)
    port = relay.start()
    try:
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        with busy:
            # Talking keeps it open well past the idle time: a byte every 0.2 s for 3 s.
            for _ in range(15):
                busy.sendall(b"b")
                assert _recv_exactly(busy, 1) == b"B"
                time.sleep(0.2)
            assert relay.active == 1
            # Silent, it is closed (EOF to the client) and the slot is free again.
            assert _closed_by_peer(busy)
        for _ in range(100):
            if relay.active == 0:
                break
            time.sleep(0.05)
        assert relay.active == 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as again:
            again.sendall(b"z")
            assert _recv_exactly(again, 1) == b"Z"
    finally:
        relay.close()


def test_the_agent_relays_to_a_kubernetes_pod_and_closes_it_with_the_replica() -> None:
    # The agent's side end to end, in-process: a replica on the (fake) Kubernetes
    # backend listens at podIP:$PORT; the agent probes it through a relay on its
    # data host and advertises the relay's port; forgetting the replica closes it.
    import httpx

    from computenet.agent import serving
    from computenet.agent.jobs import HeldJob
    from computenet.backends.base import BackendJob, service_address
    from computenet.backends.kubernetes import KubernetesBackend
    from computenet.model.service import SERVICE_ENV
    from tests.helpers.kubernetes_fake import FakeKubernetes, FakeNode

    echo = Path(__file__).resolve().parents[2] / "helpers" / "echo_model.py"
    cluster = FakeKubernetes(nodes=[FakeNode("cpu-1", {"cpu": "8"})])
    backend = KubernetesBackend(
        pools={"CPU-node": 4}, batch_api=cluster.batch_api(), core_api=cluster.core_api()
    )
    port = serving.free_port()
    env = {SERVICE_ENV: "echo", "PORT": str(port)}
    job = BackendJob("j1", 1, f"python3 {echo}", "CPU-node", 1, env=env)
    held = HeldJob("j1", 1, {"spec": {"env": env}}, handle=backend.submit(job, "j1:1"))
    held.service_port = port
    try:
        assert service_address(backend, held.handle or "") == ("127.0.0.1", port)
        assert service_address(object(), "h") is None  # no method: the agent's own host
        endpoint = None
        for _ in range(200):
            endpoint = serving.ready_endpoint(held, "127.0.0.1", backend)
            if endpoint:
                break
            time.sleep(0.05)
        assert endpoint is not None, "the pod never answered through the relay"
        host, _, relay_port = endpoint.rpartition(":")
        assert host == "127.0.0.1" and int(relay_port) != port
        got = httpx.get(f"http://{endpoint}/v1/models", timeout=10).json()
        assert got["path"] == "/v1/models" and got["replica"] is None
        serving.forget(held.key)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{endpoint}/v1/models", timeout=5)
    finally:
        serving.forget(held.key)
        cluster.close()
