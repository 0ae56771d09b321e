"""An agent SIGKILLed and restarted with its state file deleted: its orphan never runs on.

The restarted agent holds nothing, so before it registers it asks its backend for
the jobs labelled for its center and stops every one it does not hold; the control
plane requeues the job and it runs again, once. (tests/faults/ runs the same
scenario under load; this is the plain case, on the local backend.)
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

from computenet.model import JobState
from tests.integration.test_agent_server import Net, job, until
from tests.integration.test_agent_server import net as net  # the fixture

FIRST_RUN_S = 8  # long enough that "end-1" would appear if the orphan were left running


def test_a_restarted_agent_without_its_state_file_stops_its_orphan_and_the_job_runs_once(
    net: Net,
) -> None:
    marks = Path(tempfile.mkdtemp(prefix="cnet-orphan-"))
    marks.chmod(0o1777)  # each run may be its own unprivileged user: one file per mark
    command = (
        f"touch {marks}/start-$CNET_ATTEMPT; "
        f"sleep $(( CNET_ATTEMPT == 1 ? {FIRST_RUN_S} : 1 )); "
        f"touch {marks}/end-$CNET_ATTEMPT"
    )
    view = net.user.submit(job(command, ["A100"]))  # only east has A100s
    until("the first run", lambda: (marks / "start-1").exists(), net)
    first_started = time.monotonic()

    east = net.agents["east"]
    east.send_signal(signal.SIGKILL)
    east.wait(timeout=10)
    (net.tmp / "east" / "state" / "agent-state.json").unlink()
    net.start_agent("east")

    done = net.user.wait(view.id, poll_s=0.2, timeout_s=90)
    assert done.state is JobState.SUCCEEDED, net.logs()
    assert done.attempts == 2, net.logs()
    # Let the first run's sleep pass: had it been left running, it would now write end-1.
    time.sleep(max(0.0, FIRST_RUN_S + 1 - (time.monotonic() - first_started)))
    seen = sorted(p.name for p in marks.iterdir())
    assert seen == ["end-2", "start-1", "start-2"], (seen, net.logs())
    finals = [e.state for e in done.events if e.state is JobState.SUCCEEDED]
    assert finals == [JobState.SUCCEEDED]
    shutil.rmtree(marks)
