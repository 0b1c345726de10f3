"""Helpers for the example tests: run an example as a real process, kill it with SIGKILL
where a fake service says it paused, and read what the fake services recorded.

The fake services (``examples/fake_services``) keep their state in JSON files in the
state directory; a crash test compares those files after a crash and a resumption with
the files left by a run without a crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import durably

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PAUSE_VARIABLE = "EXAMPLE_PAUSE_AFTER"
#: Seconds a child may take before it is killed and the test fails (a hang, not a pause).
PROCESS_TIMEOUT = 60


@dataclass(frozen=True)
class Finished:
    """What an example process printed and how it exited."""

    returncode: int
    output: str

    def lines_containing(self, *fragments: str) -> list[str]:
        """The output lines that contain every fragment, in order."""
        return [line for line in self.output.splitlines() if all(f in line for f in fragments)]


@dataclass(frozen=True)
class Scenario:
    """A finished run of an example whose state directory several tests read (and
    never change: a test that runs the example again works on a copy)."""

    state: Path
    finished: Finished

    @property
    def services(self) -> dict[str, Any]:
        """The fake services' state after the run."""
        return service_states(self.state)

    def copy(self, directory: Path) -> Path:
        """A copy of the state directory (workflow database included) in ``directory``."""
        shutil.copytree(self.state, directory, dirs_exist_ok=True)
        return directory


def run_scenario(
    factory: pytest.TempPathFactory, script: str, *args: str, exit_code: int = 0
) -> Scenario:
    """Run an example on a fresh state directory (``--state`` goes last) and check its
    exit status; for module-scoped fixtures."""
    state = factory.mktemp(Path(script).stem)
    finished = run_example(script, *args, "--state", str(state))
    assert finished.returncode == exit_code, finished.output
    return Scenario(state, finished)


def example_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for an example: unbuffered output, no pause point
    unless ``extra`` sets one."""
    environment = {key: value for key, value in os.environ.items() if key != PAUSE_VARIABLE}
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(extra or {})
    return environment


def _command(script: str, args: tuple[str, ...]) -> list[str]:
    return [sys.executable, str(EXAMPLES / script), *args]


def run_example(script: str, *args: str) -> Finished:
    """Run ``examples/<script>`` to its end as a real process."""
    completed = subprocess.run(
        _command(script, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=PROCESS_TIMEOUT,
        env=example_environment(),
        check=False,
    )
    return Finished(completed.returncode, completed.stdout)


def start_example(script: str, *args: str, pause: str | None = None) -> subprocess.Popen[str]:
    """Start ``examples/<script>`` in the background, its output piped line by line."""
    return subprocess.Popen(
        _command(script, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=example_environment({PAUSE_VARIABLE: pause} if pause else None),
    )


def read_until(process: subprocess.Popen[str], marker: str) -> str:
    """Read the process's output until a line containing ``marker``; return all of it.

    Fails the test if the process ends (or hangs for PROCESS_TIMEOUT) first.
    """
    assert process.stdout is not None
    watchdog = threading.Timer(PROCESS_TIMEOUT, process.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                return "".join(lines)
    finally:
        watchdog.cancel()
    process.wait()
    pytest.fail(f"the example ended ({process.returncode}) before {marker!r}:\n{''.join(lines)}")


def read_lines(process: subprocess.Popen[str], count: int) -> list[str]:
    """Read the process's next ``count`` output lines (without their line ends).

    Fails the test if the process ends (or hangs for PROCESS_TIMEOUT) first.
    """
    assert process.stdout is not None
    watchdog = threading.Timer(PROCESS_TIMEOUT, process.kill)
    watchdog.start()
    lines: list[str] = []
    try:
        while len(lines) < count and (line := process.stdout.readline()):
            lines.append(line.removesuffix("\n"))
    finally:
        watchdog.cancel()
    if len(lines) < count:
        process.wait()
        pytest.fail(f"the process ended ({process.returncode}) after:\n" + "\n".join(lines))
    return lines


def finish(process: subprocess.Popen[str]) -> Finished:
    """Wait for a started example to end; return the rest of its output."""
    output, _ = process.communicate(timeout=PROCESS_TIMEOUT)
    return Finished(process.returncode, output)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL a started example (if it still runs) and reap it: a zombie would still
    count as alive for the next process, which would then wait for its lease to expire."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.stdout is not None
    process.stdout.close()


def kill_when_paused(script: str, *args: str, pause: str) -> str:
    """Run an example until the fake service operation ``pause`` (``service.operation``
    or ``service.operation#n``) has been applied, then SIGKILL it; return its output."""
    process = start_example(script, *args, pause=pause)
    try:
        output = read_until(process, f"PAUSED after {pause}")
    finally:
        kill(process)
    assert process.returncode == -signal.SIGKILL, output
    return output


def service_states(state_dir: Path) -> dict[str, Any]:
    """The state of every fake service in ``state_dir``, by service name."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))["state"]
        for path in sorted(state_dir.glob("*.json"))
    }


def journal(state_dir: Path, service: str) -> list[dict[str, Any]]:
    """Every request the service received: operation, idempotency key, outcome."""
    entries: list[dict[str, Any]] = json.loads(
        (state_dir / f"{service}.json").read_text(encoding="utf-8")
    )["journal"]
    return entries


def duplicates(state_dir: Path) -> list[str]:
    """``service.operation`` of every request a service answered as a duplicate."""
    found: list[str] = []
    for path in sorted(state_dir.glob("*.json")):
        found.extend(
            f"{path.stem}.{entry['operation']}"
            for entry in journal(state_dir, path.stem)
            if entry["outcome"] == "duplicate"
        )
    return found


def operation_of(pause: str) -> str:
    """``service.operation`` of a pause point (without its ``#n``)."""
    return pause.partition("#")[0]


def wait_for_status(
    database: Path, workflow_id: str, status: durably.WorkflowStatus
) -> durably.WorkflowInfo:
    """Block until the workflow (which must exist) reaches ``status``, watching the
    database from this process (no sleeps: ``watch`` wakes at every change it sees);
    return the workflow as it was then (``wake_at`` says when a suspended one is due)."""

    async def watch() -> durably.WorkflowInfo:
        client = durably.Durably(f"sqlite:///{database}", worker=False, poll_interval=0.02)
        async with client:
            async for info in client.watch(workflow_id):
                if info.status is status:
                    return info
        pytest.fail(f"{workflow_id} does not exist or ended without reaching {status}")

    return asyncio.run(asyncio.wait_for(watch(), PROCESS_TIMEOUT))


def wait_until_past(moment: datetime) -> None:
    """Block until the wall clock is past ``moment``, a deadline read from the workflow
    database: the condition waited for is the recorded deadline itself, not a guessed
    duration. Fails at once if ``moment`` is more than PROCESS_TIMEOUT away."""
    remaining = (moment - datetime.now(UTC)).total_seconds()
    assert remaining < PROCESS_TIMEOUT, f"{moment} is {remaining:.0f}s away"
    passed = threading.Event()  # never set: wait() is the timed wait
    while remaining >= 0:
        passed.wait(remaining + 0.001)
        remaining = (moment - datetime.now(UTC)).total_seconds()
