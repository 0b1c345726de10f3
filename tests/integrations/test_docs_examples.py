"""The examples of docs/schedules.md and docs/integrations.md run as documented."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.doc_pages import ROOT, fenced_blocks, run_code, run_script

EXAMPLES = ROOT / "docs" / "examples"


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, f"the process exited while waiting: {what}"
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_schedules_demo_runs_each_tick_once_in_one_of_two_apps(tmp_path: Path) -> None:
    output = run_script(EXAMPLES / "schedules_demo.py", tmp_path).stdout
    ran = re.findall(r"^tick (\d\d:\d\d:\d\d) ran in (alpha|bravo) at", output, re.MULTILINE)
    assert len(ran) >= 2, output
    ticks = [tick for tick, _ in ran]
    assert len(set(ticks)) == len(ticks), f"a tick ran twice: {output}"
    assert all(int(tick[-2:]) % 2 == 0 for tick in ticks)
    listed = re.findall(
        r"^sched:heartbeat:\S+T(\d\d:\d\d:\d\d)Z COMPLETED \"(alpha|bravo)\"$", output, re.MULTILINE
    )
    # The listing shows completed runs, in the app that ran each: consecutive ticks of
    # those that ran. A tick due just as the demo lists may still be running then (not
    # listed as COMPLETED) and print after the listing.
    assert listed, output
    first = ran.index(listed[0]) if listed[0] in ran else -1
    assert first >= 0 and ran[first : first + len(listed)] == listed, output
    assert len(ran) - (first + len(listed)) <= 1, output


def test_the_first_schedules_snippet_runs_its_report(tmp_path: Path) -> None:
    """docs/schedules.md's first block is a module that runs: its report, given a tick."""
    (tmp_path / "reports.py").write_text(
        fenced_blocks(ROOT / "docs" / "schedules.md", "python")[0], encoding="utf-8"
    )
    driver = """
import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import reports


async def main() -> None:
    async with reports.app:
        tick = datetime(2026, 3, 2, 6, tzinfo=ZoneInfo("Europe/Paris"))
        print(await reports.app.run(reports.sales_report, tick, workflow_id="monday"))


asyncio.run(main())
"""
    assert run_code(driver, tmp_path, "drive.py") == "report sent: 3 rows\n3 rows\n"


def test_the_excerpts_on_the_integrations_page_are_in_their_examples() -> None:
    """The page's other python blocks are excerpts of the linked, tested examples:
    their lines, in order (indentation aside)."""
    _, serve_block, recovery_block = fenced_blocks(ROOT / "docs" / "integrations.md", "python")
    for block, example in (
        (serve_block, "plain_process.py"),
        (recovery_block, "asgi_shop.py"),
    ):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        source = [line.strip() for line in (EXAMPLES / example).read_text().splitlines()]
        start = source.index(lines[0])
        assert source[start : start + len(lines)] == lines, example


def test_plain_process_example_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "plain.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "plain_process.py")],
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "jobs: cleanup for tick" in log.read_text(), "a tick ran", process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "worker jobs-1 started on SqliteStore('jobs.db'" in text
    assert "with 1 workflow(s): cleanup" in text
    assert "stop requested: finishing or releasing what this worker holds" in text
    assert text.rstrip().endswith("durably.worker: worker jobs-1 stopped")


class Uvicorn:
    """``uvicorn asgi_shop:web`` (or ``target`` from ``app_dir``) in a subprocess, on a
    free port."""

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        app_dir: Path = EXAMPLES,
        target: str = "asgi_shop:web",
    ) -> None:
        self.log = directory / f"{name}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(app_dir),
                    "--port",
                    "0",
                    target,
                ],
                cwd=directory,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: "Uvicorn running on" in self.log.read_text(), "startup", self.process)
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", self.log.read_text())
        assert found is not None
        self.port = int(found.group(1))

    def request(self, method: str, path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return dict(json.loads(response.read()))

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=60)


def test_the_starlette_snippet_serves_a_workflow(tmp_path: Path) -> None:
    """docs/integrations.md's Starlette block, saved as greetings.py, serves under
    uvicorn what the page says, and shuts down through the lifespan."""
    page = ROOT / "docs" / "integrations.md"
    (tmp_path / "greetings.py").write_text(fenced_blocks(page, "python")[0], encoding="utf-8")
    server = Uvicorn(tmp_path, "greetings", app_dir=tmp_path, target="greetings:web")
    try:
        assert server.request("GET", "/hello/ada") == {"result": "hello ada"}
        assert '`{"result":"hello ada"}`' in page.read_text(encoding="utf-8")
        assert server.stop() in {0, -signal.SIGTERM}
    finally:
        server.stop(signal.SIGKILL)
    assert "Application shutdown complete." in server.log.read_text()


def test_asgi_shop_serves_orders_recovers_after_sigkill_and_drains(tmp_path: Path) -> None:
    first = Uvicorn(tmp_path, "first")
    try:
        assert first.request("POST", "/orders/42") == {"workflow_id": "order-42"}
        wait_until(
            lambda: first.request("GET", "/orders/42")["status"] == "COMPLETED",
            "order 42 completed",
            first.process,
        )
        assert first.request("GET", "/orders/42") == {
            "status": "COMPLETED",
            "result": '"order 42 paid with payment-42"',
        }
        assert first.request("POST", "/recover") == {"requested": True}
        wait_until(
            lambda: "recovery pass resumed []" in first.log.read_text(),
            "the requested pass reported",
            first.process,
        )
        assert first.request("POST", "/orders/43") == {"workflow_id": "order-43"}
    finally:
        first.stop(signal.SIGKILL)  # in the middle of charging order 43

    second = Uvicorn(tmp_path, "second")
    try:
        wait_until(
            lambda: second.request("GET", "/orders/43")["status"] == "COMPLETED",
            "order 43 completed after the restart",
            second.process,
        )
        # uvicorn re-raises SIGTERM once it has shut down: -15, after a clean shutdown.
        assert second.stop() in {0, -signal.SIGTERM}
    finally:
        second.stop(signal.SIGKILL)
    text = second.log.read_text()
    assert "Waiting for application shutdown." in text
    assert "Application shutdown complete." in text
