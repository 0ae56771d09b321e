"""A real server and two real agents: a tenant's data stays its own, a rotated key needs no restart.

East holds acme's dataset; west has the H100s. Rival (another tenant) tries to
name acme's file and to reach it through a symlink in its own area; the admin
rotates east's data key while both agents run; a corrupted local copy is
never read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from computenet.agent.data import create_replica
from computenet.errors import ComputeNetError
from computenet.model import JobState
from computenet.protocol.tickets import CENTER_HEADER, TICKET_HEADER, mint_ticket
from computenet.sdk import Client
from computenet.store import Database
from computenet.store.centers import get_center
from tests.helpers.processes import stop_process
from tests.integration.test_agent_server import all_logs, job, running_net, until

pytestmark = pytest.mark.integration


def test_a_tenants_data_stays_its_own_and_a_rotated_key_needs_no_restart(
    tmp_path: Path, db_url: str
) -> None:
    with running_net(tmp_path, db_url) as net:
        pids = {c: p.pid for c, p in net.agents.items()}
        east_root = net.data_root("east")
        replica = create_replica(east_root, "corpus", 200_000, tenant="acme")
        assert replica.path == "tenants/acme/corpus"
        net.user.add_dataset("corpus", "east", replica.path, replica.size_bytes, replica.sha256)
        admin = Client(net.url, net.admin)
        admin.create_tenant("rival")
        rival = Client(net.url, admin.create_user("bo", "rival").token)
        try:
            # 1. Rival cannot name acme's file, even knowing its size and checksum.
            with pytest.raises(ComputeNetError) as err:
                rival.add_dataset(
                    "stolen", "east", replica.path, replica.size_bytes, replica.sha256
                )
            assert err.value.field == "path"

            # 2. Nor reach it through a link in its own area: the job never reads it.
            link = east_root / "tenants" / "rival" / "stolen"
            link.parent.mkdir(parents=True)
            link.symlink_to(east_root / replica.path)
            rival.add_dataset(
                "stolen", "east", "tenants/rival/stolen", replica.size_bytes, replica.sha256
            )
            view = rival.submit(job('wc -c < "$CNET_INPUT_STOLEN"', ["A100"], inputs=["stolen"]))
            done = rival.wait(view.id, poll_s=0.2, timeout_s=60)
            assert done.state is JobState.FAILED, net.logs()
            assert "stolen" in " ".join(done.reasons)
            assert all_logs(rival, view.id) == ""

            # 3. Rotate east's data key while both agents run.
            database = Database(db_url)
            try:
                with database.read() as s:
                    east = get_center(s, "east")
                    assert east is not None and east.data_url
                    old_key, data_url = east.data_key, east.data_url
            finally:
                database.dispose()
            old_ticket = mint_ticket(
                old_key,
                dataset="corpus",
                path=replica.path,
                center="west",
                expires_unix=int(time.time()) + 120,
            )

            def fetch_with_old_ticket() -> int:
                return httpx.get(
                    f"{data_url}/data/corpus",
                    params={"path": replica.path},
                    headers={TICKET_HEADER: old_ticket, CENTER_HEADER: "west"},
                    timeout=10,
                ).status_code

            assert fetch_with_old_ticket() == 200
            r = httpx.post(
                f"{net.url}/api/v1/admin/centers/east/rotate-data-key",
                headers={"Authorization": f"Bearer {net.admin}"},
                timeout=10,
            )
            assert r.status_code == 200 and r.json()["data_key_version"] == 2
            until("east refuses the old ticket", lambda: fetch_with_old_ticket() == 403, net)
            # A new staging east → west gets a ticket under the new key and succeeds.
            view = net.user.submit(
                job('sha256sum "$CNET_INPUT_CORPUS" | cut -c1-64', ["H100"], inputs=["corpus"])
            )
            done = net.user.wait(view.id, poll_s=0.2, timeout_s=90)
            assert done.state is JobState.SUCCEEDED, net.logs()
            assert done.usage.get("staged_from") == "east"
            assert all_logs(net.user, view.id).strip() == replica.sha256
            assert {c: p.pid for c, p in net.agents.items()} == pids
            assert all(p.poll() is None for p in net.agents.values())  # no restart

            # 4. A corrupted local copy (same size) is refused; the good copy at west is used.
            f = east_root / replica.path
            data = bytearray(f.read_bytes())
            data[1234] ^= 0xFF
            f.write_bytes(bytes(data))
            view = net.user.submit(
                job('sha256sum "$CNET_INPUT_CORPUS" | cut -c1-64', ["A100"], inputs=["corpus"])
            )
            done = net.user.wait(view.id, poll_s=0.2, timeout_s=90)
            assert done.state is JobState.SUCCEEDED, net.logs()
            assert all_logs(net.user, view.id).strip() == replica.sha256
            assert done.usage.get("staged_from") == "west"
            assert "does not match the dataset's sha256" in net.logs()

            # 5. Each admin action is in the audit log.
            audit = httpx.get(
                f"{net.url}/api/v1/admin/audit",
                headers={"Authorization": f"Bearer {net.admin}"},
                timeout=10,
            ).json()
            actions = {e["action"] for e in audit["entries"]}
            assert {"center.rotate-data-key", "tenant.create", "token.create"} <= actions
        finally:
            admin.close()
            rival.close()


def _write_token(path: Path, token: str) -> None:
    """Replace the token file the way an operator should: a 0600 file moved into place."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


def test_a_center_token_is_replaced_and_the_old_one_revoked_without_stopping_the_agent(
    tmp_path: Path, db_url: str
) -> None:
    with running_net(tmp_path, db_url) as net:
        # West's agent reads its token from a file.
        stop_process(net.agents["west"])
        token_file = tmp_path / "west.token"
        _write_token(token_file, net.tokens["west"])
        agent = net.start_agent("west", "--token-file", str(token_file))
        log = tmp_path / "agent-west.log"
        # The old agent's last heartbeat still counts as online: wait for the new one itself.
        until("west registered again", lambda: log.read_text().count("registered (") >= 2, net)
        headers = {"Authorization": f"Bearer {net.admin}"}
        tokens = httpx.get(f"{net.url}/api/v1/admin/tokens", headers=headers, timeout=10).json()
        (old,) = [t for t in tokens if t["center"] == "west"]
        new = httpx.post(
            f"{net.url}/api/v1/admin/centers/west/token", headers=headers, timeout=10
        ).json()
        _write_token(token_file, new["token"])
        r = httpx.post(
            f"{net.url}/api/v1/admin/tokens/{old['id']}/revoke", headers=headers, timeout=10
        )
        assert r.status_code == 200
        until(
            "west uses its new token",
            lambda: "center token replaced" in log.read_text(),
            net,
        )
        view = net.user.submit(job("echo still here", ["H100"]))
        done = net.user.wait(view.id, poll_s=0.2, timeout_s=60)
        assert done.state is JobState.SUCCEEDED and done.center == "west", net.logs()
        assert agent.poll() is None  # never stopped
