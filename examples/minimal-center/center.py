#!/usr/bin/env python3
"""A minimal ComputeNet compute center, written only from docs/center-protocol.md.

Python standard library only. It registers its chip pools, heartbeats, leases jobs,
stages inputs from other centers (sha256 checked), runs each job's command as a
process group under a small supervisor (this same file, ``--supervise``), ships
logs by byte offset, reports usage and the final state, honours cancels, fences
(stops its jobs) when no heartbeat has been acknowledged for ``fence_after_s``, and
serves its own replicas to other centers on a data endpoint.

Environment: CNET_SERVER_URL (comma-separated for several replicas), CNET_CENTER_ID,
CNET_CENTER_TOKEN_FILE; CNET_POOLS ("H100=8,A100=2") when no --pool is given.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

PROTOCOL = "1"
LOG_CHUNK = 200_000  # bytes read per log append; the protocol allows 262144 characters
JOB_PATH = "/usr/local/bin:/usr/bin:/bin"


def log(msg: str) -> None:
    """The center's own log (stderr): what sources answered, refusals, fences."""
    print(f"{time.strftime('%H:%M:%S')} minimal-center: {msg}", file=sys.stderr, flush=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the doc: never follow redirects (a 3xx surfaces as an HTTPError)


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class Unavailable(Exception):
    """No answer, a 5xx or a 429: the call did not happen (or may have); try again."""


class Refused(Exception):
    """A 4xx answer: an answer, never retried as is."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('field')}: {body.get('error')}")
        self.status, self.field = status, body.get("field")


class ControlPlane:
    """POST JSON to the control plane; moves to the next replica on no answer or 503."""

    def __init__(self, urls: list[str], token_file: str) -> None:
        self.urls, self.i, self.token_file = urls, 0, token_file
        self.token = self.read_token()

    def read_token(self) -> str:
        return Path(self.token_file).read_text().strip()

    def call(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        req = urllib.request.Request(
            self.urls[self.i] + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        try:
            with OPENER.open(req, timeout=max(timeout, 0.2)) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                err = json.loads(e.read() or b"{}")
            except ValueError:
                err = {}
            if e.code == 401:  # the operator may have put a new token in the file
                old, self.token = self.token, self.read_token()
                if self.token != old:
                    raise Unavailable("401: a new token was read from the file") from e
            if e.code == 503:
                self.i = (self.i + 1) % len(self.urls)
            if e.code >= 500 or e.code == 429:
                raise Unavailable(f"HTTP {e.code}") from e
            raise Refused(e.code, err if isinstance(err, dict) else {}) from e
        except (OSError, ValueError) as e:  # refused, timed out, cut off, garbled
            self.i = (self.i + 1) % len(self.urls)
            raise Unavailable(str(e)) from e


class Job:
    """One leased attempt of a job at this center."""

    def __init__(self, lease: dict[str, Any], workdir: Path) -> None:
        self.id: str = lease["job_id"]
        self.attempt: int = lease["attempt"]
        self.lease = lease
        self.dir = workdir
        self.chip: str = lease["placement"]["chip"]
        self.chip_ids: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop: str | None = None  # "cancel" | "fence" | "lost" | "shutdown"
        self.signalled = False
        self.refused: str | None = None  # `field` of the last 4xx refusal of a report
        self.unwanted: list[Path] = []  # copies the control plane refused: deleted at the end
        self.ended = False  # the command has exited (its reports may still be queued)
        self.file_pos = 0  # bytes of output.log already read
        self.log_off = 0  # UTF-8 bytes already acknowledged by the control plane
        self.pending: tuple[int, str] | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")


class Center:
    """The center: a heartbeat thread, a lease thread, one thread per job, a data server."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cid: str = args.center
        self.cp = ControlPlane(args.server.split(","), args.token_file)
        self.pools: dict[str, int] = args.pools
        self.state = Path(args.state_dir).resolve()
        self.data_root = Path(args.data_root or self.state / "data").resolve()
        self.lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self.used: dict[str, set[int]] = {chip: set() for chip in self.pools}
        self.quit = threading.Event()
        self.last_ack: float | None = None  # monotonic send time of the last acked heartbeat
        self.conf: dict[str, Any] = {}
        self.data_key: str | None = None
        self.key_version = 0
        self.data_url: str | None = None
        self.fatal: str | None = None
        self.reregister = False

    # ---- timing (every number from the register / heartbeat replies) ----
    @property
    def fence_s(self) -> float:
        t = float(self.conf.get("lease_timeout_s", 30.0))
        return float(self.conf.get("fence_after_s") or t / 2)

    @property
    def grace_s(self) -> float:
        t = float(self.conf.get("lease_timeout_s", 30.0))
        return float(self.conf.get("stop_grace_s") or min(5.0, t / 4))

    def fence_left(self) -> float:
        if self.last_ack is None:
            return self.fence_s
        return self.last_ack + self.fence_s - time.monotonic()

    def call_timeout(self, usual: float = 10.0) -> float:
        return min(usual, max(0.5, self.fence_left()))

    # ---- registration and capacity ----
    def capacity(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"chip": c, "total": n, "free": max(0, n - len(self.used[c]))}
                for c, n in self.pools.items()
            ]

    def register(self, once: bool = False) -> bool:
        """Register (idempotent); False when it did not happen. `once`: try only once,
        so a heartbeat or report thread never blocks on it (the fence must still fire)."""
        body = {
            "center_id": self.cid,
            "protocol_version": PROTOCOL,
            "agent_version": "minimal-center/1",
            "backend": "minimal",
            "data_url": self.data_url,
            "capacity": self.capacity(),
        }
        delay = 0.2
        while not self.quit.is_set():
            try:
                reply = self.cp.call("/center/v1/register", body, timeout=self.call_timeout())
                break
            except Unavailable as e:
                log(f"register: {e}; retrying")
                if once:
                    return False
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Refused as e:
                return self.die(f"registration failed: {e.field}: {e}")
        else:
            return False
        if str(reply.get("protocol_version", PROTOCOL)).split(".")[0] != PROTOCOL:
            return self.die(
                f"registration failed: protocol_version: the control plane speaks "
                f"{reply.get('protocol_version')!r}, this center speaks {PROTOCOL!r}"
            )
        with self.lock:
            self.conf.update(reply)
            self.data_key = reply["data_key"]
            self.key_version = int(reply.get("data_key_version", 1))
        log(f"registered {self.cid}: fence {self.fence_s}s, grace {self.grace_s}s")
        return True

    def die(self, why: str) -> bool:
        """A refusal that retrying cannot fix: stop the center (exit status 2)."""
        log(why)
        self.fatal = why
        self.quit.set()
        return False

    # ---- heartbeat and fencing ----
    def heartbeat_loop(self) -> None:
        next_beat = 0.0
        while not self.quit.is_set():
            now = time.monotonic()
            if now >= next_beat:
                interval = min(float(self.conf.get("heartbeat_interval_s", 2.0)), self.fence_s / 3)
                next_beat = now + interval
                self.heartbeat(now)
            time.sleep(0.05)

    def heartbeat(self, sent: float) -> None:
        if self.reregister:
            if not self.register(once=True):
                return
            self.reregister = False
        with self.lock:
            running = [j.id for j in self.jobs.values() if j.stop not in ("fence", "lost")]
        body = {"center_id": self.cid, "capacity": self.capacity(), "running": running}
        try:
            reply = self.cp.call("/center/v1/heartbeat", body, timeout=self.call_timeout(5.0))
        except Unavailable as e:
            log(f"heartbeat: {e}")
            return
        except Refused as e:
            if e.status == 409:  # not registered (a control plane that lost us): again
                log(f"heartbeat refused ({e}); registering again")
                self.register(once=True)
            else:
                self.die(f"heartbeat refused: {e}")
            return
        self.last_ack = sent
        with self.lock:
            for k in ("lease_timeout_s", "fence_after_s", "stop_grace_s"):
                if reply.get(k) is not None:
                    self.conf[k] = reply[k]
            for job_id in reply.get("cancel", []):
                job = self.jobs.get(job_id)
                if job is not None and job.stop is None:
                    log(f"{job_id}: the control plane says stop")
                    self.stop_job(job, "cancel")
        kv = reply.get("data_key_version")
        if kv is not None and int(kv) != self.key_version:
            log(f"data key rotated ({self.key_version} → {kv}); registering again")
            self.register(once=True)

    def fence(self) -> None:
        """No heartbeat acknowledged for fence_after_s: stop every job that still runs."""
        self.reregister = True  # "send it again whenever in doubt": after a fence
        with self.lock:
            for job in self.jobs.values():
                if not job.ended and job.stop not in ("fence", "lost"):
                    log(f"{job.id}: fenced (no acknowledged heartbeat for {self.fence_s}s)")
                    self.stop_job(job, "fence")

    def stop_job(self, job: Job, why: str) -> None:
        """Mark the job stopped; its supervisor SIGTERMs the group, SIGKILLs after the grace."""
        with self.lock:
            if job.stop in (None, "cancel"):
                job.stop = why
            if job.proc is not None and job.proc.poll() is None and not job.signalled:
                job.signalled = True
                with contextlib.suppress(ProcessLookupError):
                    job.proc.send_signal(signal.SIGTERM)

    # ---- leasing ----
    def lease_loop(self) -> None:
        while not self.quit.is_set():
            window = self.fence_s / 2 - (time.monotonic() - (self.last_ack or -1e9))
            if self.last_ack is None or window <= 0.05:
                time.sleep(0.05)  # lease only while the last acked heartbeat is young
                continue
            room = sum(c["free"] for c in self.capacity())
            if room == 0:  # no free chips: do not call (the doc)
                time.sleep(0.1)
                continue
            wait = max(0.0, min(self.args.lease_wait, 0.8 * window))
            body = {"center_id": self.cid, "max_jobs": min(self.args.max_jobs, room),
                    "wait_s": wait}  # fmt: skip
            t0 = time.monotonic()
            try:
                reply = self.cp.call("/center/v1/lease", body, timeout=wait + self.call_timeout())
            except (Unavailable, Refused) as e:
                log(f"lease: {e}")
                time.sleep(min(1.0, self.fence_s / 8))
                continue
            for lease in reply.get("jobs", []):
                self.take(lease)
            if not reply.get("jobs") and time.monotonic() - t0 < wait / 2:
                time.sleep(float(self.conf.get("heartbeat_interval_s", 1.0)))  # no long poll

    def take(self, lease: dict[str, Any]) -> None:
        job_id = lease["job_id"]
        job = Job(lease, self.state / "jobs" / safe_name(f"{job_id}.{lease['attempt']}"))
        with self.lock:
            old = self.jobs.get(job_id)
            if old is not None:  # an older attempt we still hold is stale now
                self.stop_job(old, "lost")
            free = sorted(set(range(self.pools.get(job.chip, 0))) - self.used.get(job.chip, set()))
            job.chip_ids = (free or list(range(lease["placement"]["count"])))[
                : lease["placement"]["count"]
            ]
            self.used.setdefault(job.chip, set()).update(job.chip_ids)
            self.jobs[job_id] = job
        log(f"{job_id}: leased, attempt {job.attempt}")
        threading.Thread(target=self.run_job, args=(job,), daemon=True).start()

    # ---- one job ----
    def report(self, job: Job, kind: str, body: dict[str, Any]) -> bool:
        """Send one report until it is answered; False when the job is no longer ours."""
        path = f"/center/v1/jobs/{job.id}/{kind}"
        delay = 0.0  # the first resend goes at once: a lost answer is the common case
        while True:
            if job.stop in ("fence", "lost") and not (job.ended and job.stop == "fence"):
                return False
            if self.quit.is_set():
                return False
            try:
                self.cp.call(path, {"attempt": job.attempt, **body}, timeout=self.call_timeout())
                job.refused = None
                return True
            except Unavailable as e:
                time.sleep(min(delay, self.fence_s / 8))
                delay = min(max(delay * 2, 0.1), 2.0)
                if delay >= 2.0:
                    log(f"{job.id}: {kind}: {e}; retrying")
            except Refused as e:
                job.refused = str(e.field)
                if e.status == 409 and e.field == "center_id":
                    self.register(once=True)
                    continue
                if e.status == 409 and e.field == "state":  # a race or a bug: drop this report
                    log(f"{job.id}: {kind} refused ({e}); dropped")
                    return True
                if e.status in (404, 409):
                    log(f"{job.id}: {kind} refused ({e}): not ours any more, stopping it")
                    self.stop_job(job, "lost")
                    return False
                log(f"{job.id}: {kind} refused ({e}); dropping this report")
                return True

    def ship_logs(self, job: Job, final: bool) -> bool:
        """Send output.log from the last acknowledged offset; retries resend the same chunk."""
        while True:
            if job.pending is None:
                with open(job.dir / "output.log", "rb") as f:
                    f.seek(job.file_pos)
                    data = f.read(LOG_CHUNK)
                job.file_pos += len(data)
                text = job.decoder.decode(data, final=final and not data)
                if not text:
                    return True
                job.pending = (job.log_off, text)
            offset, text = job.pending
            if not self.report(job, "logs", {"offset": offset, "text": text}):
                return False
            job.log_off, job.pending = offset + len(text.encode("utf-8")), None
            if job.refused == "offset":  # the control plane has less than we sent: start
                job.file_pos = job.log_off = 0  # over; it skips the bytes it already has
                job.decoder.reset()

    def run_job(self, job: Job) -> None:
        try:
            self._run_job(job)
        except Exception as e:  # a bug here must not take the center down
            log(f"{job.id}: {e!r}")
            self.stop_job(job, "lost")
        finally:
            with self.lock:
                if self.jobs.get(job.id) is job:
                    del self.jobs[job.id]
                self.used.get(job.chip, set()).difference_update(job.chip_ids)
            if job.proc is not None and job.proc.poll() is None:
                job.proc.wait()
            for path in job.unwanted:
                path.unlink(missing_ok=True)

    def _run_job(self, job: Job) -> None:
        spec, lease = job.lease["spec"], job.lease
        (job.dir / "work").mkdir(parents=True, exist_ok=True)
        (job.dir / "output.log").touch()
        staged: dict[str, int] = {}
        t0 = time.monotonic()
        paths: dict[str, Path] = {}
        fetch = any(not self.local_copy(job, i) for i in lease.get("inputs", []))
        if fetch and not self.report(job, "status", {"state": "STAGING"}):
            return
        for inp in lease.get("inputs", []):
            got = self.stage(job, inp, staged)
            if job.stop is not None:
                break
            if got is None:
                self.report_usage(job, 0.0, time.monotonic() - t0, staged)
                msg = f"staging failed: no source gave a verified copy of {inp['dataset']}"
                self.report(job, "status", {"state": "FAILED", "message": msg})
                return
            paths[inp["dataset"]] = got
        staging_s = time.monotonic() - t0
        if job.stop is None:
            self.start(job, spec, paths)
            if not self.report(job, "status", {"state": "RUNNING"}):
                return
        t1 = time.monotonic()
        while job.proc is not None and job.proc.poll() is None:
            if not self.ship_logs(job, final=False) and job.stop == "lost":
                return
            time.sleep(0.3)
        run_s = time.monotonic() - t1 if job.proc is not None else 0.0
        job.ended = True
        if job.stop in ("fence", "lost", "shutdown"):
            return  # it runs elsewhere (or will): no reports from here
        if not self.ship_logs(job, final=True):
            return
        if not self.report_usage(job, run_s, staging_s, staged):
            return
        cancelled = job.stop == "cancel" and (job.signalled or job.proc is None)
        final = {"state": "CANCELLED"} if cancelled else self.outcome(job)
        if self.report(job, "status", final) and job.refused == "state" and cancelled:
            # 409 state on CANCELLED: nobody cancelled it after all; say what happened
            final = {"state": "FAILED", "message": "stopped on a cancel that was not confirmed"}
            self.report(job, "status", final)
        log(f"{job.id}: {final}")

    def report_usage(self, job: Job, run_s: float, stage_s: float, staged: dict[str, int]) -> bool:
        body: dict[str, Any] = {
            "run_real_s": run_s,
            "staging_real_s": stage_s,
            "bytes_staged": sum(staged.values()),
        }
        if staged:
            body["staged_from"] = max(staged, key=lambda c: staged[c])
            body["transfers"] = [{"source": c, "bytes": n} for c, n in staged.items()]
        return self.report(job, "usage", body)

    def outcome(self, job: Job) -> dict[str, Any]:
        """The final status from the supervisor's exit file: code 128+N and a message
        for a signal N; FAILED with a message when the supervisor died without telling."""
        try:
            code, *sig = (job.dir / "exit").read_text().split()
        except OSError:
            with contextlib.suppress(OSError, ValueError):
                pid, started = (job.dir / "job.pgid").read_text().split()
                if start_time(int(pid)) == started:
                    kill_group(int(pid), self.grace_s)  # never leave the command running
            return {"state": "FAILED", "message": "the job's supervisor died: exit code unknown"}
        if int(code) == 0:
            return {"state": "SUCCEEDED", "exit_code": 0}
        why = f"killed by {sig[0]}" if sig else f"exited with code {code}"
        return {"state": "FAILED", "exit_code": int(code), "message": why}

    def start(self, job: Job, spec: dict[str, Any], inputs: dict[str, Path]) -> None:
        """Start the command under a supervisor that stops it if this center dies."""
        pl, work = job.lease["placement"], job.dir / "work"
        ids = ",".join(map(str, job.chip_ids))
        env = {
            "PATH": JOB_PATH,
            "LANG": "C.UTF-8",
            **spec.get("env", {}),
            "HOME": str(work),
            "TMPDIR": str(work),
            "CNET_JOB_ID": job.id,
            "CNET_ATTEMPT": str(job.attempt),
            "CNET_CENTER": self.cid,
            "CNET_CHIP": pl["chip"],
            "CNET_CHIP_COUNT": str(pl["count"]),
            "CNET_CHIP_IDS": ids,
            "CNET_VISIBLE_DEVICES": ids,
            "CNET_PLANNED_RUN_S": str(job.lease.get("planned_run_s", 0)),
            "CNET_TIME_SCALE": str(self.conf.get("time_scale", 1.0)),
            "CNET_DATA_DIR": str(self.data_root),
        }
        for name, path in inputs.items():
            env["CNET_INPUT_" + re.sub(r"[^A-Z0-9]", "_", name.upper())] = str(path)
        (job.dir / "job.json").write_text(json.dumps({"command": spec["command"], "env": env}))
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--supervise",
            str(job.dir),
            "--grace",
            str(self.grace_s),
        ]
        with self.lock:
            if job.stop is not None:
                return
            job.proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL)
        (job.dir / "supervisor.pid").write_text(f"{job.proc.pid} {start_time(job.proc.pid)}\n")

    # ---- staging ----
    def local_copy(self, job: Job, inp: dict[str, Any]) -> Path | None:
        """The local replica, only when it is the tenant's and its sha256 matches."""
        local = self.tenant_path(inp.get("local_path") or "", job.lease["tenant"])
        return local if local and sha256_of(local) == inp["sha256"] else None

    def stage(self, job: Job, inp: dict[str, Any], staged: dict[str, int]) -> Path | None:
        if local := self.local_copy(job, inp):
            return local
        dest = inp.get("dest_path") or f"tenants/{job.lease['tenant']}/{inp['dataset']}"
        if self.tenant_path(dest, job.lease["tenant"]) is None:
            log(f"{job.id}: dest_path {dest!r} is outside the tenant's area: not fetched")
            return None
        expired = [s for s in inp.get("sources", []) if ticket_expiry(s["ticket"]) < time.time()]
        if expired and len(expired) == len(inp["sources"]):
            log(f"{job.id}: every ticket for {inp['dataset']} expired before a fetch could "
                "start: giving the job back (it is leased again with fresh tickets)")  # fmt: skip
            self.stop_job(job, "lost")  # no more reports, left out of `running`
            return None
        for src in inp.get("sources", []):
            for _ in range(5):  # a 503 (key not picked up yet, not registered) is retried
                got, retry = self.fetch(job, inp, src, dest, staged)
                if got is not None or retry is None or job.stop is not None:
                    break
                time.sleep(min(retry, 10.0))
            if got is not None:
                return got
            if job.stop is not None:
                return None
        return None

    def fetch(
        self, job: Job, inp: dict[str, Any], src: dict[str, Any], dest: str, staged: dict[str, int]
    ) -> tuple[Path | None, float | None]:
        """GET one source into .staging, verify, move to dest. (path, retry-after-seconds)."""
        req = urllib.request.Request(
            src["url"], headers={"X-CNet-Ticket": src["ticket"], "X-CNet-Center": self.cid}
        )
        tmp_dir = self.data_root / ".staging"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / safe_name(f"{job.id}.{job.attempt}.{inp['dataset']}.part")
        digest, size, want = hashlib.sha256(), 0, int(inp["size_bytes"])
        try:
            with OPENER.open(req, timeout=30) as r, open(tmp, "wb") as out:
                while size <= want and (chunk := r.read(1 << 20)):
                    if job.stop is not None:
                        return None, None
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if size != want or digest.hexdigest() != inp["sha256"]:
                log(f"{job.id}: source {src['center']} sent {size} bytes that are not the "
                    "dataset (size or sha256); trying the next source")  # fmt: skip
                return None, None
            final = self.data_root / dest
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            staged[src["center"]] = staged.get(src["center"], 0) + size  # only verified bytes
        except urllib.error.HTTPError as e:
            log(f"{job.id}: source {src['center']} answered {e.code}: {e.read()[:300]!r}")
            return None, float(e.headers.get("Retry-After") or 1) if e.code == 503 else None
        except (OSError, ValueError) as e:
            log(f"{job.id}: source {src['center']}: {e}")
            return None, None
        finally:
            tmp.unlink(missing_ok=True)  # a partial or refused download never stays
        self.cp_replica(job, inp["dataset"], dest, inp["sha256"])
        return final, None

    def cp_replica(self, job: Job, dataset: str, path: str, sha256: str) -> None:
        """Tell the control plane this center now holds a verified copy (best effort)."""
        delay = 0.1
        while not self.quit.is_set() and job.stop is None:
            try:
                self.cp.call(
                    f"/center/v1/datasets/{dataset}/replicas",
                    {"path": path, "sha256": sha256},
                    timeout=self.call_timeout(),
                )
                return
            except Unavailable:
                time.sleep(min(delay, self.fence_s / 8))
                delay = min(delay * 2, 2.0)
            except Refused as e:
                log(f"{job.id}: replica report for {dataset} refused: {e}")
                if e.field == "center_id":  # outside the dataset's residency: delete it
                    job.unwanted.append(self.data_root / path)
                return

    # ---- the data endpoint: serve replicas to the centers the control plane names ----
    def ticket_verdict(self, dataset: str, path: str, ticket: str, center: str) -> int:
        """200, or the status to answer: 403 bad ticket, 503 a key newer than ours."""
        parts = ticket.split(".")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or not parts[2].isdigit():
            return 403
        version, expires = int(parts[1]), int(parts[2])
        with self.lock:
            key, known = self.data_key, self.key_version
        if key is None or version > known:
            return 503
        if version < known or expires < time.time():
            return 403
        msg = json.dumps(
            ["cnet-ticket-v1", dataset, path, center, expires, version],
            separators=(",", ":"),
        )
        mac = hmac.new(key.encode(), msg.encode(), hashlib.sha256).hexdigest()
        return 200 if hmac.compare_digest(mac.encode(), parts[3].encode()) else 403

    def tenant_path(self, path: str, tenant: str | None = None) -> Path | None:
        """P under the data root when it lies in tenants/<t>/ (t: `tenant`, else P's own),
        symlinks resolved, no name starting with "." (the center's own); else None."""
        parts = path.split("/")
        if (
            path.startswith("/")
            or len(parts) < 3
            or parts[0] != "tenants"
            or parts[1] != (tenant or parts[1])
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
        ):
            return None
        real = Path(os.path.realpath(self.data_root / path))
        tenant_area = Path(os.path.realpath(self.data_root / "tenants" / parts[1]))
        return real if real.is_relative_to(tenant_area) else None

    def serve_data(self) -> None:
        center = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self, status: int, error: str, field: str | None = None) -> None:
                body = json.dumps({"error": error, "field": field, "hint": None}).encode()
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                segs = url.path.split("/")
                if len(segs) != 3 or segs[1] != "data":
                    return self.answer(404, "no such route")
                dataset, path = unquote(segs[2]), parse_qs(url.query).get("path", [""])[0]
                verdict = center.ticket_verdict(
                    dataset,
                    path,
                    self.headers.get("X-CNet-Ticket", ""),
                    self.headers.get("X-CNet-Center", ""),
                )
                if verdict != 200:
                    return self.answer(verdict, "ticket refused", "ticket")
                file = center.tenant_path(path)
                if file is None or not file.is_file():
                    return self.answer(404, "no such replica", "path")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(file.stat().st_size))
                self.end_headers()
                with open(file, "rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 20)

            def log_message(self, format: str, *args: Any) -> None:
                log("data: " + format % args)

        host, _, port = self.args.data_listen.rpartition(":")
        server = ThreadingHTTPServer((host, int(port)), Handler)
        server.daemon_threads = True
        self.data_url = self.args.data_url or f"http://{host}:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        log(f"data endpoint at {self.data_url}")

    # ---- start and stop ----
    def stop_leftovers(self) -> None:
        """Processes of an earlier run of this center: we hold none of them, so stop them all."""
        jobs_dir = self.state / "jobs"
        for d in sorted(jobs_dir.glob("*")) if jobs_dir.is_dir() else []:
            for name in ("job.pgid", "supervisor.pid"):
                with contextlib.suppress(OSError, ValueError):
                    pid, started = (d / name).read_text().split()
                    if start_time(int(pid)) == started:
                        log(f"stopping leftover process group {pid} ({d.name})")
                        kill_group(int(pid), 5.0)
            shutil.rmtree(d, ignore_errors=True)

    def run(self) -> int:
        self.state.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.stop_leftovers()
        if not self.args.no_data:
            self.serve_data()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.quit.set())
        if not self.register():
            return 2 if self.fatal else 0
        threading.Thread(target=self.heartbeat_loop, daemon=True).start()
        threading.Thread(target=self.lease_loop, daemon=True).start()
        while not self.quit.wait(0.05):  # the fence is watched here, never held up by a call
            if self.last_ack is not None and self.fence_left() <= 0:
                self.fence()
        log("stopping: every job is stopped (the control plane re-leases them)")
        with self.lock:
            jobs = list(self.jobs.values())
            for job in jobs:
                self.stop_job(job, "shutdown")
        for job in jobs:
            if job.proc is not None:
                job.proc.wait()
        return 2 if self.fatal else 0


def sha256_of(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def safe_name(text: str) -> str:
    """A file name made of `text` (ids come from the network: never trust them as paths)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "_"


def ticket_expiry(ticket: str) -> float:
    """The expiry (unix seconds) written in a ticket "v1.VERSION.EXPIRES.HEX"."""
    try:
        return float(ticket.split(".")[2])
    except (IndexError, ValueError):
        return float("inf")  # not ours to judge: let the source answer


def start_time(pid: int) -> str:
    """A process's start time (/proc), so a reused pid is never taken for ours."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "gone"


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM a process group, SIGKILL it after `grace` seconds if anything is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def supervise(jobdir: Path, grace: float) -> int:
    """Run the job's command in a process group of its own; stop it on SIGTERM or when
    the center (our parent) is gone; write its exit code (128+N for a signal N)."""
    parent = os.getppid()
    spec = json.loads((jobdir / "job.json").read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(jobdir / "output.log", "ab") as out:
        proc = subprocess.Popen(
            ["/bin/bash", "-c", spec["command"]],
            cwd=jobdir / "work",
            env=spec["env"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (jobdir / "job.pgid").write_text(f"{proc.pid} {start_time(proc.pid)}\n")
    while proc.poll() is None:
        if stop.wait(0.1) or os.getppid() != parent:
            kill_group(proc.pid, grace)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # what the command left behind in its group
    rc = proc.returncode
    died = f" {signal.Signals(-rc).name}" if rc < 0 else ""  # killed by a signal
    (jobdir / "exit.tmp").write_text(f"{rc if rc >= 0 else 128 - rc}{died}")
    os.replace(jobdir / "exit.tmp", jobdir / "exit")
    return 0


def parse_pools(text: str) -> dict[str, int]:
    pools: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        chip, sep, count = item.partition("=")
        if not sep or not count.isdigit():
            raise argparse.ArgumentTypeError(f"pool {item!r}: write CHIP=COUNT, e.g. H100=8")
        pools[chip] = int(count)
    return pools


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    env = os.environ.get
    p.add_argument("--server", default=env("CNET_SERVER_URL"), help="$CNET_SERVER_URL")
    p.add_argument("--center", default=env("CNET_CENTER_ID"), help="$CNET_CENTER_ID")
    p.add_argument("--token-file", default=env("CNET_CENTER_TOKEN_FILE"))
    p.add_argument("--pool", action="append", default=[], help="CHIP=COUNT; $CNET_POOLS")
    p.add_argument("--state-dir", help="default ./minimal-center-state/CENTER")
    p.add_argument("--data-root", help="replicas live here (default STATE_DIR/data)")
    p.add_argument("--data-listen", default="127.0.0.1:0", help="HOST:PORT of the data endpoint")
    p.add_argument("--data-url", help="the data endpoint's URL as others reach it")
    p.add_argument("--no-data", action="store_true", help="serve no data (data_url null)")
    p.add_argument("--lease-wait", type=float, default=2.0, help="long-poll wait (s)")
    p.add_argument("--max-jobs", type=int, default=8)
    p.add_argument("--supervise", help=argparse.SUPPRESS)
    p.add_argument("--grace", type=float, default=5.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.supervise:
        return supervise(Path(args.supervise), args.grace)
    for name, flag in (
        ("server", "CNET_SERVER_URL"),
        ("center", "CNET_CENTER_ID"),
        ("token_file", "CNET_CENTER_TOKEN_FILE"),
    ):
        if not getattr(args, name):
            p.error(f"--{name.replace('_', '-')} (or ${flag}) is required")
    try:
        args.pools = parse_pools(",".join(args.pool) or env("CNET_POOLS", ""))
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    args.state_dir = args.state_dir or f"minimal-center-state/{args.center}"
    return Center(args).run()


if __name__ == "__main__":
    sys.exit(main())
