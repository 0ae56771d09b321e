"""`cnet demo --serve`: an inference service on the demo network, under a real trace, a center lost.

It starts the demo network (control plane and four agents as processes; the
built-in `demo` network plus a second user site, `chengdu-users`), deploys
`tinygen` (`computenet.demo_models.tinygen`, a tiny text generator written for
it, no downloads) as a service that autoscales from 1 to 4 replicas, and
starts two gateways, one at each user site. A load generator then replays the
embedded excerpt of the Azure LLM conversation trace (one request in 25 of an
hour, `demo_models.trace`; or `--trace` the full CSV, thinned the same way)
compressed into a minute, through both gateways as streamed completions.
Replicas follow the demand up and back down. Mid-run the agent of the center
holding the most replicas is SIGKILLed (its replicas die with it): the
gateways steer around the lost replicas and the control plane starts them
again elsewhere.

At the end it prints requests served, errors, p50/p99 latency and time to
first token, requests per center before and after the kill, the replicas over
time, and the cost from the control plane's bill of the replica jobs. Exit 0
only if errors stay within `ERROR_BOUND` of the requests and requests were
served after the kill.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from computenet.catalog import load_network
from computenet.cli.common import cny, console, err_console, print_json, to_jsonable
from computenet.cli.demo import job_python
from computenet.cli.demo_federated import Progress
from computenet.cli.netcmd import print_bill
from computenet.cli.procs import start_gateway, start_network
from computenet.cli.supervise import Supervisor
from computenet.demo_models import loadgen, tinygen, trace
from computenet.errors import ComputeNetError, ValidationError
from computenet.model import TERMINAL_STATES
from computenet.model.center import CST
from computenet.protocol.services import ServiceView
from computenet.sdk import Client

SERVICE = "tinygen"
SITES = ("shanghai-users", "chengdu-users")
# The second user site, near the western centers (the built-in demo network has one).
EXTRA_SITE = {"id": "chengdu-users", "name": "Chengdu users", "lat": 30.7, "lon": 104.1,
              "region": "west"}  # fmt: skip
EXTRA_LINK = {"a": "chengdu-users", "b": "chongqing", "bandwidth_gbps": 10, "latency_ms": 2,
              "price_per_gb": 0}  # fmt: skip
REPLAY_S = 60.0
"""Real seconds the trace's hour is compressed into."""
THIN = 25
"""One request in this many of the trace (the excerpt is already thinned so)."""
KILL_AT_S = 30.0
"""Seconds into the replay at which a center is killed (the hour's busiest minutes)."""
KILL_LATEST_S = 45.0
"""If replicas are not on two centers by then, the center is killed anyway."""
DRAIN_S = 40.0
"""After the replay, how long to wait for the replicas to come back down to the minimum."""
ERROR_BOUND = 0.03
"""Errors allowed, as a share of requests: the streams cut when their replica's center died."""
POLL_S = 0.5
METER_WAIT_S = 3.0
"""Seconds for the gateways' last per-request reports (every 2 s) to reach the control plane."""
TOKENS_PER_S = 80
"""tinygen's decode speed on an A100 (H100: twice), tokens per second."""
SHAPE = loadgen.Shape(generated_div=4, generated_max=128, prompt_div=4, prompt_max=512)


def service_spec() -> dict[str, Any]:
    """The demo's service file: tinygen on 4 chips per replica, 1 to 4 replicas, autoscaled."""
    command = f"{shlex.quote(job_python())} {shlex.quote(str(Path(tinygen.__file__).resolve()))}"
    return {
        "name": SERVICE,
        "command": command,
        # Four chips a replica: a center holds one or two, so replicas spread over centers.
        "chips": {"count": 4, "types": ["H100", "A100", "Ascend-910B"]},
        "replicas": {"min": 1, "max": 4},
        "target_inflight": 4,
        "latency": {"p99_ttfb_ms": 2000},
        # Scaled for a demo of a minute (Ray Serve's defaults are 30 s and 600 s, and a 30 s
        # look-back): the mean in flight of the last 4 s (two gateway reports).
        "autoscale": {"up_delay_s": 3, "down_delay_s": 8, "lookback_s": 4},
        "readiness_path": "/healthz",
        "env": {"TINYGEN_TOKENS_PER_S": str(TOKENS_PER_S), "TINYGEN_SLOTS": "4"},
    }


def write_network(base: Path) -> Path:
    """The demo network plus the second user site, as a file the processes load."""
    raw = yaml.safe_load(
        resources.files("computenet.catalog").joinpath("data", "demo.yaml").read_text("utf-8")
    )
    raw["sites"] = [*raw.get("sites", []), EXTRA_SITE]
    raw["links"] = [*raw.get("links", []), EXTRA_LINK]
    path = base / "demo-serve.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), "utf-8")
    path.chmod(0o644)
    load_network(path)  # fails here, naming the field, if the file is wrong
    return path


def check_flags(*, serve: bool, federated: bool, trace_path: Path | None) -> None:
    """Refuse `cnet demo` flags that would otherwise be ignored (a user would think they ran)."""
    if trace_path is not None and not serve:
        raise ValidationError(
            "replays a trace only in the inference demo",
            field="--trace",
            hint="cnet demo --serve --trace PATH",
        )
    if serve and federated:
        raise ValidationError(
            "--serve and --federated are two demos",
            field="--federated",
            hint="run cnet demo --serve or cnet demo --federated, one at a time",
        )


def requests_of(trace_path: Path | None) -> tuple[list[trace.Request], str]:
    """The requests to replay (compressed into `REPLAY_S`) and where they come from."""
    if trace_path is None:
        reqs, source = trace.excerpt(), "embedded excerpt of AzureLLMInferenceTrace_conv (1 in 25)"
    else:
        if not trace_path.is_file():
            raise ValidationError(
                f"no such trace file '{trace_path}'",
                field="--trace",
                hint="give an Azure LLM trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)",
            )
        try:
            reqs = trace.load_csv(trace_path, every=THIN)
        except (ValueError, OSError) as exc:
            raise ValidationError(
                str(exc), field="--trace", hint="fix or replace the file"
            ) from exc
        source = f"{trace_path} (1 in {THIN})"
    return trace.compress(reqs, REPLAY_S), source


class Watch:
    """Samples of the service over time, and which center each replica job ran at."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.samples: list[dict[str, Any]] = []
        self.center_of: dict[str, str] = {}
        self.jobs: set[str] = set()

    def sample(self, view: ServiceView) -> dict[str, Any]:
        """Record one view of the service; returns the sample."""
        for r in view.replicas:
            self.jobs.add(r.job_id)
            if r.center and r.ready:
                self.center_of[r.job_id] = r.center
        centers = sorted(r.center or "?" for r in view.replicas if r.ready)
        s = {
            "t_s": round(time.monotonic() - self.started, 1),
            "wanted": view.wanted,
            "ready": view.ready,
            "centers": centers,
        }
        self.samples.append(s)
        return s


def run_serve_demo(
    out: Console, *, json_out: bool, base: Path, trace_path: Path | None = None
) -> tuple[int, dict[str, Any]]:
    """Run the demo (see the module doc); return (exit status, the JSON result)."""
    started = time.monotonic()
    say = Progress(err_console(), started)
    reqs, source = requests_of(trace_path)
    netfile = write_network(base)
    net = load_network(netfile)
    today = datetime.now(CST).date()
    # 00:30 network time: two real minutes at 600x are 20 network hours, all in one day
    # (and one billing month).
    epoch = datetime(today.year, today.month, today.day, 0, 30, tzinfo=CST)
    env = {"CNET_DEMO_DIR": str(base)}
    with Supervisor(base / "logs") as sup:
        running = start_network(
            sup, str(netfile), net, base, db=f"sqlite:///{base / 'demo.db'}", tenant="demo",
            user="alice", epoch=epoch.isoformat(), env=env, status=say,
        )  # fmt: skip
        with Client(running.url, running.creds.user) as cn:
            spec = service_spec()
            cn.deploy_service(spec)
            say(f"deployed service {SERVICE}: replicas 1..4, 4 chips each, autoscaled")
            _wait(cn, sup, lambda v: v.ready >= 1, "the first replica to be ready", 120)
            gateways = []
            for site in SITES:
                _, url = start_gateway(
                    sup, running, str(netfile), site, name=f"gateway-{site}", env=env
                )
                gateways.append((site, url))
                say(f"gateway at {site}: {url}/services/{SERVICE}/v1/completions")
            _wait_gateways(gateways, sup)
            result = _drive(cn, sup, reqs, gateways, say)
            result["trace"] = {"source": source, "requests": len(reqs), "replay_s": REPLAY_S}
            _finish(cn, result, say, epoch)
        result.update(
            network=str(netfile),
            url=running.url,
            service=spec,
            pids=[c.pid for c in sup.children],
            dir=str(base),
            elapsed_s=round(time.monotonic() - started, 1),
        )
    if not json_out:
        _report(out, result)
    return (0 if result["ok"] else 1), result


def _wait(
    cn: Client, sup: Supervisor, ok: Callable[[ServiceView], bool], what: str, timeout_s: float
) -> ServiceView:
    deadline = time.monotonic() + timeout_s
    while True:
        _check(sup)
        view = cn.service(SERVICE)
        if ok(view):
            return view
        if time.monotonic() > deadline:
            raise ComputeNetError(
                f"timed out after {timeout_s:g}s waiting for {what}",
                field=SERVICE,
                hint=f"see the logs in {sup.log_dir}",
            )
        time.sleep(POLL_S)


def _wait_gateways(gateways: list[tuple[str, str]], sup: Supervisor) -> None:
    import httpx

    deadline = time.monotonic() + 30
    for _, url in gateways:
        while httpx.get(f"{url}/healthz", timeout=5).json()["services"].get(SERVICE, 0) < 1:
            _check(sup)
            if time.monotonic() > deadline:
                raise ComputeNetError(f"gateway {url} sees no replica", field="gateway")
            time.sleep(0.2)


def _check(sup: Supervisor, killed: str | None = None) -> None:
    for c in sup.dead():
        if c.name != killed:
            raise ComputeNetError(
                f"{c.name} exited with status {c.proc.returncode} during the demo",
                field=c.name,
                hint=f"see {c.log_path}",
            )


def _drive(
    cn: Client,
    sup: Supervisor,
    reqs: list[trace.Request],
    gateways: list[tuple[str, str]],
    say: Progress,
) -> dict[str, Any]:
    """Replay the trace through the gateways while watching replicas; kill a center mid-run."""
    outcomes: list[loadgen.Outcome] = []
    done = threading.Event()
    t0 = time.monotonic()
    watch = Watch(t0)

    def load() -> None:
        try:
            outcomes.extend(
                loadgen.replay(
                    reqs, gateways, path=f"/services/{SERVICE}/v1/completions", shape=SHAPE,
                    pick=lambda i: 0 if i % 5 < 3 else 1,  # 60 % from Shanghai, 40 % Chengdu
                )
            )  # fmt: skip
        finally:
            done.set()

    say(f"replaying {len(reqs)} requests over {REPLAY_S:g}s through {len(gateways)} gateways")
    loader = threading.Thread(target=load, name="replay", daemon=True)
    loader.start()
    killed: str | None = None
    kill_at: float | None = None
    lost: list[str] = []
    last = None
    drain_from: float | None = None
    spec_min = 1
    while True:
        _check(sup, f"agent-{killed}" if killed else None)
        view = cn.service(SERVICE)
        s = watch.sample(view)
        key = (s["wanted"], s["ready"], tuple(s["centers"]))
        if key != last:
            say(
                f"replicas wanted {s['wanted']}, ready {s['ready']}"
                f" ({', '.join(s['centers']) or 'none'})"
            )
            last = key
        t = time.monotonic() - t0
        if killed is None and t >= KILL_AT_S:
            by_center = Counter(s["centers"])
            if not by_center and t >= KILL_LATEST_S:  # none ready: a center holding one
                by_center = Counter(r.center for r in view.replicas if r.center)
            if by_center and (len(by_center) >= 2 or t >= KILL_LATEST_S):
                # The center holding the most replicas (first by name on a tie).
                killed = max(sorted(by_center), key=lambda c: by_center[c])
                lost = [r.job_id for r in view.replicas if r.center == killed]
                agent = next(c for c in sup.children if c.name == f"agent-{killed}")
                agent.proc.send_signal(signal.SIGKILL)  # the center vanishes, no goodbye
                agent.proc.wait()
                kill_at = time.monotonic() - t0
                say(
                    f"killed the agent of {killed} ({len(lost)} replica(s) there) at {kill_at:.1f}s"
                )
        if done.is_set():
            drain_from = drain_from or time.monotonic()
            if (s["wanted"], s["ready"]) == (spec_min, spec_min) or (
                time.monotonic() - drain_from > DRAIN_S
            ):
                break
        time.sleep(POLL_S)
    loader.join()
    say(f"replay over: {len(outcomes)} requests")
    return _stats(outcomes, watch, killed, kill_at, lost)


def _stats(
    outcomes: list[loadgen.Outcome],
    watch: Watch,
    killed: str | None,
    kill_at: float | None,
    lost: list[str],
) -> dict[str, Any]:
    good = [o for o in outcomes if o.ok]
    bad = [o for o in outcomes if not o.ok]
    after = [o for o in good if kill_at is not None and o.start_s >= kill_at]
    where = watch.center_of

    def by_center(xs: list[loadgen.Outcome]) -> dict[str, int]:
        return dict(sorted(Counter(where.get(o.replica or "", "?") for o in xs).items()))

    before = [o for o in good if kill_at is None or o.start_s < kill_at]
    wanted = [s["wanted"] for s in watch.samples]
    peak = max(wanted, default=0)
    peak_at = wanted.index(peak) if wanted else 0
    error_rate = len(bad) / len(outcomes) if outcomes else 1.0
    by_site = {}
    for site in SITES:
        mine = [o for o in outcomes if o.target == site]
        by_site[site] = {
            "sent": len(mine),
            "served": sum(o.ok for o in mine),
            "errors": sum(not o.ok for o in mine),
            "latency_ms": loadgen.summary_ms([o.latency_s for o in mine if o.ok]),
        }
    recovered = [
        o.start_s - (kill_at or 0.0) for o in after if where.get(o.replica or "") != killed
    ]
    checks = {
        "errors_within_bound": error_rate <= ERROR_BOUND,
        "served_after_kill": bool(after),
        "scaled_up": peak > wanted[0] if wanted else False,
        "scaled_down": bool(wanted) and min(wanted[peak_at:]) < peak,
    }
    return {
        "ok": bool(good) and checks["errors_within_bound"] and checks["served_after_kill"],
        "checks": checks,
        "requests": {
            "sent": len(outcomes),
            "served": len(good),
            "errors": len(bad),
            "error_rate": round(error_rate, 4),
            "error_bound": ERROR_BOUND,
            "errors_by_kind": dict(Counter((o.error or "?").split(":")[0] for o in bad)),
            "errors_sample": [
                {
                    "site": o.target,
                    "at_s": round(o.start_s, 2),
                    "error": o.error,
                    "replica": o.replica,
                }
                for o in bad[:8]
            ],
            "by_site": by_site,
            "tokens": sum(o.tokens for o in good),
        },
        "latency_ms": loadgen.summary_ms([o.latency_s for o in good]),
        "ttft_ms": loadgen.summary_ms([o.ttfb_s for o in good if o.ttfb_s is not None]),
        "kill": {
            "center": killed,
            "at_s": round(kill_at, 1) if kill_at is not None else None,
            "replicas_lost": lost,
            "served_after": len(after),
            "first_served_elsewhere_after_s": round(min(recovered), 2) if recovered else None,
        },
        "served_by_center": {"before_kill": by_center(before), "after_kill": by_center(after)},
        "replicas": {
            "peak": peak,
            "final": wanted[-1] if wanted else 0,
            "timeline": _changes(watch.samples),
        },
        "replica_jobs": sorted(watch.jobs),
    }


def _changes(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples at which wanted, ready or their centers changed."""
    out: list[dict[str, Any]] = []
    for s in samples:
        if not out or (s["wanted"], s["ready"], s["centers"]) != (
            out[-1]["wanted"],
            out[-1]["ready"],
            out[-1]["centers"],
        ):
            out.append(s)
    return out


def _finish(cn: Client, result: dict[str, Any], say: Progress, epoch: datetime) -> None:
    """Read what the gateways metered, delete the service, wait for its replica jobs to end,
    and read their bill."""
    time.sleep(METER_WAIT_S)  # the gateways' last reports of the replay
    try:
        m = cn.service_metrics(SERVICE).totals
        result["metered"] = {
            "requests": m.requests,
            "errors": m.errors,
            "p50_latency_ms": _round(m.p50_latency_ms),
            "p99_latency_ms": _round(m.p99_latency_ms),
            "cost_cny": to_jsonable(m.cost_cny),
            "cny_per_1k_requests": _round(m.cny_per_1k_requests, 2),
        }
    except ComputeNetError as exc:  # a control plane without per-request metering
        result["metered"] = None
        say(f"no per-request metering: {exc}")
    cn.delete_service(SERVICE)
    jobs = result["replica_jobs"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = {j: cn.job(j).state for j in jobs}
        if all(st in TERMINAL_STATES for st in states.values()):
            break
        time.sleep(POLL_S)
    say(f"service deleted; {len(jobs)} replica job(s) ended")
    bill = cn.bill(period=epoch.strftime("%Y-%m"))
    lines = [ln for ln in bill.lines if ln.job_id in set(jobs)]
    total = sum((ln.total_cny for ln in lines), Decimal("0.00"))
    served = result["requests"]["served"]
    details = [cn.job(j) for j in jobs]
    result["cost"] = {
        "total_cny": to_jsonable(total),
        "chip_hours": round(sum(ln.chip_hours for ln in lines), 2),
        "per_1k_requests_cny": to_jsonable((total * 1000 / served).quantize(Decimal("0.01")))
        if served
        else None,
        "lines": [
            {
                "job_id": ln.job_id,
                "name": ln.job_name,
                "center": ln.center,
                "chips": ln.chips,
                "chip": ln.chip,
                "chip_hours": round(ln.chip_hours, 2),
                "total_cny": to_jsonable(ln.total_cny),
            }
            for ln in lines
        ],
        "jobs": [
            {
                "id": d.id,
                "name": d.name,
                "state": d.state.value,
                "center": d.center,
                "attempts": d.attempts,
            }
            for d in details
        ],
    }
    result["bill"] = bill


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def _report(out: Console, r: dict[str, Any]) -> None:
    req, kill = r["requests"], r["kill"]
    out.print(
        f"[bold]{SERVICE}[/] on the demo network: {req['sent']} requests from"
        f" {len(SITES)} user sites ({r['trace']['source']}, an hour in {REPLAY_S:g}s)"
    )
    t = Table(title="requests", title_justify="left")
    for col in ("site", "sent", "served", "errors", "p50 ms", "p99 ms"):
        t.add_column(col, justify="left" if col == "site" else "right")
    for site, v in req["by_site"].items():
        lat = v["latency_ms"]
        t.add_row(site, str(v["sent"]), str(v["served"]), str(v["errors"]),
                  str(lat["p50"]), str(lat["p99"]))  # fmt: skip
    out.print(t)
    lat, ttft = r["latency_ms"], r["ttft_ms"]
    out.print(
        f"served {req['served']}, errors {req['errors']} ({100 * req['error_rate']:.1f} %,"
        f" bound {100 * ERROR_BOUND:g} %); latency p50 {lat['p50']} ms, p99 {lat['p99']} ms;"
        f" first token p50 {ttft['p50']} ms, p99 {ttft['p99']} ms; {req['tokens']} tokens"
    )
    out.print(
        f"killed {kill['center']} at {kill['at_s']}s with {len(kill['replicas_lost'])} replica(s);"
        f" {kill['served_after']} requests served after, the first elsewhere"
        f" {kill['first_served_elsewhere_after_s']}s after the kill"
    )
    sbc = r["served_by_center"]
    out.print(
        "served by center before the kill: "
        + (", ".join(f"{k} {v}" for k, v in sbc["before_kill"].items()) or "-")
        + "; after: "
        + (", ".join(f"{k} {v}" for k, v in sbc["after_kill"].items()) or "-")
    )
    out.print("replicas over time (wanted / ready, where the ready ones run):")
    for s in r["replicas"]["timeline"]:
        bar = "█" * s["ready"] + "░" * max(0, s["wanted"] - s["ready"])
        out.print(
            f"  {s['t_s']:6.1f}s  {s['wanted']} / {s['ready']}  {bar:<6} {', '.join(s['centers'])}"
        )
    if r.get("metered"):
        m = r["metered"]
        out.print(
            f"the gateways metered {m['requests']} requests, {m['errors']} errors, latency p50"
            f" {m['p50_latency_ms']} ms, p99 {m['p99_latency_ms']} ms (their histogram buckets)"
        )
    print_bill(r["bill"])
    cost = r["cost"]
    out.print(
        f"replicas cost ¥{cny(Decimal(cost['total_cny']))} ({cost['chip_hours']} chip·h of network"
        f" time, 600x the real), ¥{cost['per_1k_requests_cny']} per 1,000 requests"
    )
    verdict = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["checks"].items())
    out.print(("[bold green]ok[/]: " if r["ok"] else "[bold red]FAILED[/]: ") + verdict)


def serve_demo(*, json_out: bool, base: Path, trace_path: Path | None = None) -> int:
    """`cnet demo --serve`: run it, print the result; the exit status."""
    out = console()
    code, result = run_serve_demo(out, json_out=json_out, base=base, trace_path=trace_path)
    if json_out:
        result["bill"] = to_jsonable(result["bill"])
        print_json(result)
    return code
