"""Fixtures for browser tests: Debian's Chromium via Playwright, and a real network to drive.

The network is a real control plane (`tests.helpers.processes.start_server`) with one
real agent process per `demo` center, two tenants and their users, all on 127.0.0.1
with free ports. Screenshots go to ``test-output/e2e/<test>/`` (CNET_TEST_OUTPUT
overrides the base folder) so that a person can look at every page after a run.

Without Chromium (or the `playwright` package) the tests skip on a developer's
machine and FAIL when ``CI=true``: CI must never pass without having run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest

from computenet.catalog import load_network
from tests.helpers.processes import log_tail, start_server, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AGENTS_ONLINE_TIMEOUT_S = 60.0
REPO = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI, where the browser tests must run."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Network:
    """A running network: its URL, tokens by user, and the processes to stop."""

    url: str
    admin_token: str
    tokens: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api(self, user: str) -> httpx.Client:
        """An HTTP client acting as `user` ('admin' or a user created by the fixture)."""
        token = self.admin_token if user == "admin" else self.tokens[user]
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )


def _start_agent(url: str, center: str, token: str, root: Path) -> subprocess.Popen[bytes]:
    log = root / f"agent-{center}.log"
    cmd = [
        sys.executable, "-m", "computenet.agent",
        "--center", center, "--server", url, "--token", token,
        "--network", "demo", "--state-dir", str(root / f"agent-{center}"),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The `demo` network with 4 agents and tenants acme (alice) and globex (bob)."""
    root = tmp_path_factory.mktemp("e2e-net")
    url, admin_token, server = start_server(root, "demo")
    net = Network(url=url, admin_token=admin_token, procs=[server])
    try:
        with net.api("admin") as adm:
            for tenant, user in (("acme", "alice"), ("globex", "bob")):
                adm.post("/api/v1/admin/tenants", json={"name": tenant}).raise_for_status()
                r = adm.post("/api/v1/admin/users", json={"name": user, "tenant": tenant})
                r.raise_for_status()
                net.tokens[user] = r.json()["token"]
            for c in load_network("demo").centers:
                r = adm.post(f"/api/v1/admin/centers/{c.id}/token")
                r.raise_for_status()
                net.procs.append(_start_agent(url, c.id, r.json()["token"], root))
            deadline = time.monotonic() + AGENTS_ONLINE_TIMEOUT_S
            while True:
                centers = adm.get("/api/v1/centers").json()
                if all(c["online"] for c in centers):
                    break
                if time.monotonic() > deadline:
                    logs = "\n".join(
                        f"--- {p.name}\n{log_tail(p)}" for p in sorted(root.glob("*.log"))
                    )
                    raise TimeoutError(f"agents not online in time: {centers}\n{logs}")
                time.sleep(0.3)
        yield net
    finally:
        for p in reversed(net.procs):
            stop_process(p)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Callable[[Any, str], Path]:
    """`shots(page, "network")` saves a full-page PNG under test-output/e2e/<test>/."""
    base = Path(os.environ.get("CNET_TEST_OUTPUT", REPO / "test-output")) / "e2e"
    folder = base / _slug(request.node.name)
    folder.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str) -> Path:
        path = folder / f"{_slug(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot


@dataclass
class Watch:
    """What a page did that it should not: script errors, requests to other hosts."""

    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def open_page(browser: Any, network: Network, viewport: dict[str, int]) -> tuple[Any, Any, Watch]:
    """A fresh browser context and page on the dashboard, watched for errors and foreign hosts."""
    ctx = browser.new_context(viewport=viewport)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    watch = Watch()
    origin = urlsplit(network.url).netloc
    page.on("pageerror", lambda e: watch.errors.append(str(e)))

    def on_request(req: Any) -> None:
        parts = urlsplit(req.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != origin:
            watch.foreign.append(req.url)

    page.on("request", on_request)
    return ctx, page, watch


@pytest.fixture
def page(browser: Any, network: Network) -> Iterator[Any]:
    """A desktop-sized (1280×800) page; fails the test on script errors or off-host requests."""
    ctx, pg, watch = open_page(browser, network, DESKTOP)
    yield pg
    ctx.close()
    assert not watch.errors, f"script errors in the page: {watch.errors}"
    assert not watch.foreign, f"the page loaded from other hosts: {watch.foreign}"


@pytest.fixture
def phone_page(browser: Any, network: Network) -> Iterator[Any]:
    """A phone-sized (390×844) page, watched like `page`."""
    ctx, pg, watch = open_page(browser, network, PHONE)
    yield pg
    ctx.close()
    assert not watch.errors, f"script errors in the page: {watch.errors}"
    assert not watch.foreign, f"the page loaded from other hosts: {watch.foreign}"
