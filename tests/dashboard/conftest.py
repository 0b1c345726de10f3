"""Fixtures of the dashboard tests: a SQLite store filled by real workflows, a worker
app that keeps running them, the real ``durably dashboard`` command serving the store
in a subprocess, and a headless Chromium (Debian's ``chromium``) driven by Playwright.

Without a chromium binary or Playwright the browser tests skip with a loud reason,
and fail under CI=true, where ``.ci/run`` installs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dashboard_workflows import HOSTILE, build_app

import durably
from durably.models import WorkflowStatus

T = TypeVar("T")
HERE = Path(__file__).parent
REPOSITORY = HERE.parent.parent

#: Where screenshots also go when this variable is set (``docs`` refreshes the docs').
SCREENSHOTS_VARIABLE = "DURABLY_DASHBOARD_SCREENSHOTS"


def _skip_or_fail(problem: str) -> None:
    """A missing browser fails under CI=true and skips loudly elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the dashboard browser tests need it under CI=true: {problem}")
    pytest.skip(f"SKIPPING DASHBOARD BROWSER TESTS: {problem}")


def chromium_binary() -> str:
    """The system chromium (``$DURABLY_CHROMIUM`` or ``chromium`` on the PATH)."""
    explicit = os.environ.get("DURABLY_CHROMIUM")
    found = explicit or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found or not Path(found).exists():
        _skip_or_fail("no chromium binary: apt-get install -y chromium")
    assert found is not None
    return found


class WorkerThread:
    """A ``Durably`` app (a worker too) on its own event loop in a thread, so that
    workflows keep running while the synchronous browser tests drive the page."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.app = build_app(url, inline_wait=0, poll_interval=0.05)
        self.run(self.app.__aenter__())

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coroutine`` on the app's loop and wait for its outcome."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        """Close the app and stop its loop."""
        try:
            self.run(self.app.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


async def until(
    app: durably.Durably, workflow_id: str, status: WorkflowStatus, reason: str
) -> None:
    """Wait on the app's change notifications until the workflow is in ``status`` with
    ``reason`` in its wait reason."""
    async for info in app.watch(workflow_id):
        if info.status is status and reason in (info.wait_reason or ""):
            return
    raise AssertionError(f"{workflow_id} finished without reaching {status} ({reason})")


@dataclass
class Scenario:
    """The recorded store: its URL, the worker, and what each workflow became."""

    url: str
    worker: WorkerThread
    statuses: dict[str, WorkflowStatus] = field(default_factory=dict)

    def expected_counts(self) -> dict[str, int]:
        """How many recorded workflows are in each status."""
        counts: dict[str, int] = {}
        for status in self.statuses.values():
            counts[str(status)] = counts.get(str(status), 0) + 1
        return counts

    def start_waiting(self, workflow_id: str) -> None:
        """Start a shipment and wait until it waits for its ``approved`` signal."""

        async def start() -> None:
            app = self.worker.app
            await app.start("shipment", workflow_id, HOSTILE, workflow_id=workflow_id)
            await until(app, workflow_id, WorkflowStatus.SUSPENDED, "approved")

        self.worker.run(start())
        self.statuses[workflow_id] = WorkflowStatus.SUSPENDED


#: How many ``quick`` workflows are recorded (more than one page of 5).
QUICK = 7


async def _record(app: durably.Durably, scenario: Scenario) -> None:
    for number in range(QUICK):
        workflow_id = f"quick-{number:02d}"
        handle = await app.start("quick", number, HOSTILE, workflow_id=workflow_id)
        await handle.result()
        scenario.statuses[workflow_id] = WorkflowStatus.COMPLETED
    shipped = await app.start("shipment", "order-shipped", HOSTILE, workflow_id="order-shipped")
    await app.send_signal("order-shipped", "approved", "ann")
    await shipped.result()
    scenario.statuses["order-shipped"] = WorkflowStatus.COMPLETED
    doomed = await app.start("doomed-order", "order-doomed", workflow_id="order-doomed")
    with pytest.raises(durably.WorkflowFailedError) as failure:
        await doomed.result()
    scenario.statuses["order-doomed"] = WorkflowStatus(failure.value.status)
    failing = await app.start("failing-order", "order-failing", workflow_id="order-failing")
    with pytest.raises(durably.WorkflowFailedError):
        await failing.result()
    scenario.statuses["order-failing"] = WorkflowStatus.FAILED


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """A SQLite store with recorded workflows, and a worker app running on it."""
    path = tmp_path_factory.mktemp("dashboard") / "workflows.db"
    url = f"sqlite:///{path}"
    worker = WorkerThread(url)
    try:
        recorded = Scenario(url=url, worker=worker)
        worker.run(_record(worker.app, recorded))
        recorded.start_waiting("order-waiting")
        yield recorded
    finally:
        worker.close()


@dataclass(frozen=True)
class Server:
    """A running ``durably dashboard``."""

    url: str
    token: str
    process: subprocess.Popen[str]


TOKEN = "test-token-0123456789"  # noqa: S105 (a test token)


#: The console script that ``pip install`` put beside this Python.
DURABLY = Path(sys.executable).with_name("durably")


def start_dashboard(db_url: str, *arguments: str, env: dict[str, str] | None = None) -> Server:
    """Run ``durably dashboard --db URL --port 0`` (the installed console script) and
    wait for the line with its URL."""
    assert DURABLY.exists(), f"no console script at {DURABLY}: pip install -e '.[test]'"
    process = subprocess.Popen(
        [str(DURABLY), "dashboard", "--db", db_url, "--port", "0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("token for actions: "):
            break
    if not lines or not lines[-1].startswith("token for actions: "):
        process.kill()
        _, errors = process.communicate(timeout=30)
        raise AssertionError(f"the dashboard did not start: {''.join(lines)}{errors}")
    url = lines[0].removeprefix("durably dashboard on ").strip()
    token = lines[-1].removeprefix("token for actions: ").strip()
    return Server(url=url, token=token, process=process)


def stop_dashboard(server: Server) -> None:
    """Stop the dashboard (SIGTERM: uvicorn shuts down and closes the store)."""
    server.process.terminate()
    try:
        server.process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.communicate(timeout=30)


@pytest.fixture(scope="module")
def dashboard(scenario: Scenario) -> Iterator[Server]:
    """The dashboard over the scenario's store, with a known token."""
    server = start_dashboard(scenario.url, "--token", TOKEN)
    try:
        yield server
    finally:
        stop_dashboard(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (the system's), driven by Playwright."""
    executable = chromium_binary()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _skip_or_fail(f"playwright is not installed ({error}): pip install -e '.[test]'")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (its own session storage: no token)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        context.close()
    assert not errors, f"the page raised script errors: {errors}"


def save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Screenshot the page to ``tmp_path`` (and to ``docs/`` when
    ``$DURABLY_DASHBOARD_SCREENSHOTS`` is ``docs``); return the file."""
    target = tmp_path / name
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get(SCREENSHOTS_VARIABLE) == "docs":
        shutil.copyfile(target, REPOSITORY / "docs" / name)
    return target


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers and body."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def http(
    server: Server,
    path: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request to the dashboard (HTTP errors are answers, not exceptions)."""
    url = server.url.rstrip("/") + path
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http://127.0.0.1)
            return Reply(response.status, dict(response.headers), response.read().decode())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers), error.read().decode())
