"""The supervisor that `cnet up` and `cnet demo` use: it stops every process it started."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from computenet.cli.supervise import Supervisor, free_port, wait_http
from computenet.errors import ComputeNetError

# A child that starts a grandchild in its own process group and then ignores SIGTERM.
STUBBORN = (
    "import signal, subprocess, sys, time;"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "print('ready', flush=True); time.sleep(60)"
)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z"


def wait_for_line(path: Path, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{path} never said {text!r}"
        time.sleep(0.05)


def test_stop_all_ends_children_and_their_groups(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path)
    polite = sup.start("polite", [sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = sup.start("stubborn", [sys.executable, "-c", STUBBORN])
    wait_for_line(stubborn.log_path, "ready")
    grandchildren = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _pgid(int(p.name)) == stubborn.pid and int(p.name) != stubborn.pid
    ]
    assert grandchildren
    t0 = time.monotonic()
    sup.stop_all(grace_s=1.0)
    assert time.monotonic() - t0 < 10
    for pid in (polite.pid, stubborn.pid, *grandchildren):
        assert gone(pid), pid
    assert sup.children == []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_context_manager_stops_children_on_sigterm(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), Supervisor(tmp_path) as sup:
        child = sup.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        os.kill(os.getpid(), signal.SIGTERM)
        # Not a wait: the handler raises KeyboardInterrupt at once; 5 s only bounds a broken one.
        time.sleep(5)
    assert gone(child.pid)
    assert signal.getsignal(signal.SIGTERM) is not None


def test_dead_children_are_reported_with_their_log(tmp_path: Path) -> None:
    with Supervisor(tmp_path) as sup:
        child = sup.start("crasher", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
        child.proc.wait(timeout=10)
        assert sup.dead() == [child]
        assert "boom" in child.log_tail()
        with pytest.raises(ComputeNetError) as info:
            wait_http(f"http://127.0.0.1:{free_port()}/", child, timeout_s=5)
        assert info.value.field == "crasher"
        assert "status 3" in info.value.message
