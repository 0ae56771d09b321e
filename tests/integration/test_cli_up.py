"""`cnet up demo` as a real process, then `cnet` commands against it as a user types them."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.processes import wait_http
from tests.integration.test_cli_demo import processes_marked

pytestmark = [pytest.mark.integration, pytest.mark.own_db]

UP = [sys.executable, "-m", "computenet.cli", "up", "demo"]


@dataclass
class Up:
    """A running `cnet up` and the environment that makes `cnet` talk to it."""

    proc: subprocess.Popen[str]
    env: dict[str, str]
    config: dict[str, object]
    marker: str
    tmp: Path

    def cnet(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "computenet.cli", *argv],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if check:
            assert r.returncode == 0, (argv, r.stdout, r.stderr)
        return r

    def json(self, *argv: str) -> object:
        return json.loads(self.cnet(*argv, "--json", check=True).stdout)

    def job_file(self, name: str, text: str) -> str:
        p = self.tmp / name
        p.write_text(text)
        return str(p)


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    tmp = tmp_path_factory.mktemp("up")
    marker = f"CNET_TEST_UP={tmp}"
    env = dict(
        os.environ,
        CNET_CONFIG=str(tmp / "config.json"),
        CNET_HOME=str(tmp / "home"),
        COLUMNS="200",
        CNET_TEST_UP=str(tmp),
    )
    env.pop("CNET_URL", None)
    env.pop("CNET_TOKEN", None)
    # Its output goes to a file: a pipe nobody reads while the tests run could fill and
    # block `cnet up` on a write, so that it never got to stopping on Ctrl-C.
    out_path = tmp / "up.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            [*UP, "--port", "0", "--gateway-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    deadline = time.monotonic() + 120
    cfg_path = tmp / "config.json"
    while not cfg_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"cnet up did not start: {out_path.read_text()}")
        time.sleep(0.2)
    config = json.loads(cfg_path.read_text())  # written whole (os.replace) once all is up
    wait_http(f"{config['url']}/healthz", proc, timeout=30, log=out_path)
    u = Up(proc, env, config, marker, tmp)
    try:
        yield u
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


QUICK = """\
name: hello
class: cpu-batch
command: echo "hello from $CNET_CENTER"; sleep "$CNET_PLANNED_RUN_S"
chips: {count: 1}
work: {cu_hours: 0.002}
"""


def assert_one_line(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_up_writes_a_config_that_later_commands_use(up: Up) -> None:
    assert str(up.config["url"]).startswith("http://127.0.0.1:")
    me = up.json("whoami")
    assert me == {"subject": "me", "role": "user", "tenant": "default", "center": None}
    centers = up.json("centers")
    assert isinstance(centers, list)
    assert {c["id"] for c in centers} == {"shanghai", "zhongwei", "guian", "chongqing"}
    assert all(c["online"] for c in centers)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name: x\nclass: [cpu-batch\n", ["malformed YAML", "line"]),
        (QUICK.replace("{count: 1}", "{count: 1, types: [Z9000]}"), ["chips.types[0]", "Z9000"]),
        (QUICK.replace("{count: 1}", "{count: -2}"), ["chips.count"]),
        (QUICK + "deadline: 2020-01-01T00:00:00+08:00\n", ["deadline", "past"]),
        (QUICK + "inputs: [no-such-data]\n", ["inputs[0]", "no-such-data"]),
        (QUICK + "colour: blue\n", ["colour"]),
    ],
    ids=[
        "malformed-yaml",
        "unknown-chip",
        "negative-count",
        "past-deadline",
        "unknown-dataset",
        "unknown-field",
    ],
)
def test_bad_job_is_one_line_exit_2_and_nothing_is_stored(
    up: Up, text: str, words: list[str]
) -> None:
    before = up.json("jobs")
    assert_one_line(up.cnet("submit", up.job_file("bad.yaml", text)), *words)
    assert up.json("jobs") == before


def test_quote_lists_options_marks_cheapest_and_fastest_and_submits_nothing(up: Up) -> None:
    f = up.job_file(
        "train.yaml",
        QUICK.replace("cpu-batch", "llm-train")
        .replace("{count: 1}", "{count: 4}")
        .replace("0.002", "2")
        + "deadline: 12h\n",
    )
    before = up.json("jobs")
    r = up.cnet("quote", f, check=True)
    assert "cheapest" in r.stdout and "fastest" in r.stdout
    for col in (
        "center",
        "start",
        "finish",
        "energy ¥",
        "service ¥",
        "transfer ¥",
        "total ¥",
        "kWh",
        "kg CO2",
    ):
        assert col in r.stdout
    q = up.json("quote", f)
    assert isinstance(q, dict)
    assert sum(o["cheapest"] for o in q["options"]) == 1
    assert sum(o["fastest"] for o in q["options"]) == 1
    assert up.json("jobs") == before


def test_submit_wait_then_status_logs_jobs_and_bill(up: Up) -> None:
    f = up.job_file("hello.yaml", QUICK)
    r = up.cnet("submit", f, "--wait", "--key", "hello-1", "--timeout", "90")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "SUCCEEDED" in r.stdout
    jobs = up.json("jobs", "--state", "SUCCEEDED")
    assert isinstance(jobs, list)
    (job,) = [j for j in jobs if j["name"] == "hello"]
    again = up.json("submit", f, "--key", "hello-1")
    assert isinstance(again, dict) and again["id"] == job["id"]
    assert "hello from chongqing" in up.cnet("logs", job["id"], check=True).stdout
    status = up.cnet("status", job["id"], check=True).stdout
    assert "SUCCEEDED" in status and "chongqing" in status and "timeline" in status
    bill = up.json("bill")
    assert isinstance(bill, dict)
    assert job["id"] in {line["job_id"] for line in bill["lines"]}


def test_cancel_stops_a_running_job(up: Up) -> None:
    f = up.job_file("long.yaml", QUICK.replace("0.002", "0.5").replace("name: hello", "name: long"))
    job = up.json("submit", f)
    assert isinstance(job, dict)
    r = up.cnet("cancel", job["id"], "--wait", check=True)
    assert "CANCELLED" in r.stdout
    assert "CANCELLED" in up.cnet("cancel", job["id"], check=True).stdout  # idempotent
    assert_one_line(up.cnet("status", "j-does-not-exist"), "j-does-not-exist")


def test_dataset_added_from_a_file_is_read_by_a_job(up: Up) -> None:
    data = up.tmp / "table.csv"
    data.write_bytes(b"a,b\n1,2\n" * 1000)
    up.cnet("datasets", "add", str(data), "--id", "table", "--center", "shanghai", check=True)
    listed = up.json("datasets", "list")
    assert isinstance(listed, list)
    (ds,) = [d for d in listed if d["id"] == "table"]
    assert ds["size_bytes"] == 8000
    reader = (
        QUICK.replace('echo "hello from $CNET_CENTER"', 'wc -c < "$CNET_INPUT_TABLE"').replace(
            "name: hello", "name: reader"
        )
        + "inputs: [table]\n"
    )
    r = up.cnet("submit", up.job_file("reader.yaml", reader), "--wait", "--json", "--timeout", "90")
    assert r.returncode == 0, (r.stdout, r.stderr)
    detail = json.loads(r.stdout)
    assert "8000" in up.cnet("logs", detail["id"], check=True).stdout


def test_admin_makes_a_second_tenant_that_cannot_see_the_first(up: Up) -> None:
    db = str(up.config["db"])
    up.cnet("admin", "create-tenant", "other", "--db", db, check=True)
    token = up.cnet(
        "admin", "create-user", "bob", "--tenant", "other", "--db", db, check=True
    ).stdout.strip()
    mine = up.json("jobs")
    assert isinstance(mine, list) and mine
    r = up.cnet("status", mine[0]["id"], "--token", token)
    assert_one_line(r, mine[0]["id"])
    assert json.loads(up.cnet("jobs", "--json", "--token", token, check=True).stdout) == []


def test_no_agent_or_job_sees_a_token(up: Up) -> None:
    base = Path(up.env["CNET_HOME"]) / "demo"
    token_files = sorted((base / "secrets").glob("*.token"))
    assert len(token_files) == 4
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in token_files)
    private = (base, base / "computenet.db", base / "logs")
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in private}
    assert list(modes.values()) == [0o711, 0o600, 0o700], modes
    secrets = [p.read_text().strip() for p in token_files]
    secrets += [str(up.config["token"]), str(up.config["admin_token"])]
    agents = [
        pid for pid in processes_marked(up.marker)
        if b"agent" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]  # fmt: skip
    assert len(agents) == 4
    for pid in agents:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert not [s for s in secrets if s.encode() in environ or s.encode() in cmdline]
        assert b"CNET_CONFIG=" not in environ
    printer = QUICK.replace('echo "hello from $CNET_CENTER"', "env").replace("hello", "printenv")
    r = up.cnet("submit", up.job_file("env.yaml", printer), "--wait", "--json", "--timeout", "90")
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = up.cnet("logs", json.loads(r.stdout)["id"], check=True).stdout
    assert "CNET_JOB_ID=" in out
    assert not [s for s in secrets if s in out] and "CNET_CONFIG" not in out


def test_up_starts_a_gateway_that_serves_a_deployed_service(up: Up) -> None:
    import httpx

    from computenet.cli.demo import job_python
    from computenet.demo_models import tinygen

    gw = up.config["gateway"]
    assert isinstance(gw, dict) and gw["site"] == "shanghai-users"
    assert httpx.get(f"{gw['url']}/healthz").json()["ok"] is True
    # The gateway holds no token in its argv or environment (it reads a 0600 file).
    pids = [
        pid for pid in processes_marked(up.marker)
        if b"gateway" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]  # fmt: skip
    assert len(pids) == 1
    proc = Path(f"/proc/{pids[0]}")
    blobs = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
    assert str(up.config["token"]).encode() not in blobs
    spec = {
        "name": "tiny",
        "command": f"{job_python()} {Path(tinygen.__file__).resolve()}",
        "chips": {"count": 1},
        "readiness_path": "/healthz",
    }
    up.cnet("serve", "deploy", up.job_file("tiny.yaml", json.dumps(spec)), check=True)
    try:
        deadline = time.monotonic() + 90
        while httpx.get(f"{gw['url']}/healthz").json()["services"].get("tiny", 0) < 1:
            assert time.monotonic() < deadline, up.cnet("serve", "status", "tiny").stdout
            time.sleep(0.5)
        r = httpx.post(
            f"{gw['url']}/services/tiny/v1/completions", json={"prompt": "hi", "max_tokens": 3}
        )
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 3
    finally:
        up.cnet("serve", "delete", "tiny")


def test_a_bad_gateway_site_or_a_taken_port_is_one_line_exit_2(tmp_path: Path) -> None:
    env = dict(os.environ, CNET_CONFIG=str(tmp_path / "c.json"), CNET_HOME=str(tmp_path / "h"))
    argv = [*UP, "--port", "0", "--gateway-site", "mars"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert_one_line(r, "--gateway-site", "mars")
    # A gateway port already taken: said before anything starts, with the way out.
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = str(taken.getsockname()[1])
        argv = [*UP, "--port", "0", "--gateway-port", busy]
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert_one_line(r, "--gateway-port", busy, "--no-gateway")
    assert not (tmp_path / "c.json").exists()


def test_ctrl_c_stops_every_process_up_started(up: Up) -> None:
    assert processes_marked(up.marker), "the server and agents carry the marker"
    up.proc.send_signal(signal.SIGINT)
    # `cnet up` gives its children 8 s and then SIGKILLs them; the margin is for a loaded machine.
    try:
        up.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        output = (up.tmp / "up.out").read_text()
        pytest.fail("cnet up did not stop on Ctrl-C; its output:\n" + output)
    deadline = time.monotonic() + 10
    while processes_marked(up.marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_marked(up.marker) == []
