"""Timing, statistics and child processes shared by every scenario.

Every sample is taken in a fresh child process (a new interpreter, nothing cached but
the operating system's page cache), and a figure is the median, min and max of the
samples of one run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.protocol import READY_LINE, RESULT_PREFIX

REPOSITORY = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A benchmark child failed or gave no result; the message carries its output."""


@dataclass(frozen=True)
class Summary:
    """The median, min and max of the samples of one figure."""

    median: float
    minimum: float
    maximum: float
    samples: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON values."""
        return {
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "samples": list(self.samples),
        }


def summarize(samples: Sequence[float]) -> Summary:
    """Median, min and max of at least one sample."""
    if not samples:
        raise ValueError("no samples to summarize")
    values = tuple(float(value) for value in samples)
    return Summary(statistics.median(values), min(values), max(values), values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0.99 for p99) of ``values``."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def child_command(python: str, module: str, function: str, params: dict[str, Any]) -> list[str]:
    """The command that runs ``bench.<module>.<function>(**params)`` in a new process."""
    return [python, "-m", "bench.child", module, function, json.dumps(params)]


def run_child(
    command: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a child to the end and return the JSON result it printed.

    Raises:
        BenchError: the child failed, timed out, or printed no result.
    """
    try:
        completed = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPOSITORY,
            env=_child_environment(env),
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"{_describe(command)} timed out after {timeout:.0f}s") from error
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            if completed.returncode != 0:
                break
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise BenchError(
        f"{_describe(command)} exited {completed.returncode} without a result:\n"
        f"{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
    )


class Child:
    """A child process the parent waits on, reads and may kill with SIGKILL."""

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPOSITORY,
            env=_child_environment(env),
        )
        self._lines: list[str] = []

    def wait_ready(self, timeout: float) -> str:
        """Wait for the child's readiness line; return what follows the marker."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise BenchError(f"{_describe(self.command)} was not ready after {timeout:.0f}s")
            readable, _, _ = select.select([self.process.stdout], [], [], min(remaining, 1.0))
            if not readable:
                continue
            line = self.process.stdout.readline()
            if not line:
                self.process.wait()
                stderr = self.process.stderr.read() if self.process.stderr else ""
                raise BenchError(
                    f"{_describe(self.command)} exited {self.process.returncode} before it "
                    f"was ready:\n{''.join(self._lines)[-2000:]}\n{stderr[-4000:]}"
                )
            self._lines.append(line)
            if line.startswith(READY_LINE):
                return line[len(READY_LINE) :].strip()

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the child to exit and return its JSON result."""
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as error:
            self.kill()
            raise BenchError(f"{_describe(self.command)} timed out after {timeout:.0f}s") from error
        lines = [*self._lines, *stdout.splitlines(keepends=True)]
        for line in reversed(lines):
            if line.startswith(RESULT_PREFIX) and self.process.returncode == 0:
                parsed: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
                return parsed
        raise BenchError(
            f"{_describe(self.command)} exited {self.process.returncode} without a result:\n"
            f"{''.join(lines)[-2000:]}\n{stderr[-4000:]}"
        )

    def kill(self) -> None:
        """SIGKILL the child (no cleanup runs in it) and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def terminate(self, timeout: float = 30) -> None:
        """SIGTERM the child and wait for it; SIGKILL it if it does not stop."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self.kill()


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll ``condition`` every 10 ms; return the ``perf_counter`` time it first held."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting until {what}")
        time.sleep(0.01)


def _child_environment(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPOSITORY)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


def _describe(command: Sequence[str]) -> str:
    text = " ".join(command)
    return f"benchmark child `{text[:300]}`"


def mapped(summary: Summary | None, function: Callable[[float], float]) -> Summary | None:
    """The summary of ``function`` applied to every sample (None stays None)."""
    return None if summary is None else summarize([function(value) for value in summary.samples])
