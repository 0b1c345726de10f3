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

from tests.doc_pages import run_script

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


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
    assert listed == ran[-len(listed) :] and listed, output


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
    """``uvicorn asgi_shop:web`` in a subprocess, on a free port."""

    def __init__(self, directory: Path, name: str) -> None:
        self.log = directory / f"{name}.log"
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    str(EXAMPLES),
                    "--port",
                    "0",
                    "asgi_shop:web",
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
