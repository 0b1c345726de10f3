"""``durably.serve(app)`` in a real process: SIGTERM finishes what can finish within
the grace period and releases the rest for another process."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import durably
from durably import Context, Durably, WorkflowStatus
from durably.integrations.process import serve_async

PROGRAM = Path(__file__).parent / "serve_program.py"


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
    """Poll ``condition`` (a file appears, a log line is written) until it holds."""
    deadline = time.monotonic() + 60
    while not condition():
        assert process.poll() is None, f"the process exited while waiting: {what}"
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


async def start_work(database: Path) -> None:
    """A client (worker=False) records the work; the served process claims it."""
    client = Durably(f"sqlite:///{database}", worker=False)

    @client.workflow(name="finishes")
    async def finishes(ctx: Context, name: str) -> str:
        raise AssertionError("a client runs no workflow")

    @client.workflow(name="hangs", version="1")
    async def hangs(ctx: Context) -> str:
        raise AssertionError("a client runs no workflow")

    async with client:
        await client.start("finishes", "order-7", workflow_id="finishing")
        await client.start("hangs", workflow_id="hanging")


async def read(database: Path, workflow_id: str) -> durably.WorkflowInfo:
    async with Durably(f"sqlite:///{database}", worker=False) as reader:
        return await reader.get_workflow(workflow_id)


def test_sigterm_finishes_within_grace_and_releases_the_rest(tmp_path: Path) -> None:
    database = tmp_path / "serve.db"
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(PROGRAM), str(tmp_path), "2"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "started on" in log.read_text(), "the app opened", process)
        asyncio.run(start_work(database))
        for workflow_id in ("finishing", "hanging"):
            started = tmp_path / f"{workflow_id}.started"
            wait_until(started.exists, f"{workflow_id} is running", process)

        process.send_signal(signal.SIGTERM)
        wait_until(lambda: "stop requested" in log.read_text(), "SIGTERM was handled", process)
        (tmp_path / "go").touch()  # only now can the running step finish: in the grace
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.read_text()
    assert "waiting up to 2.0s for 2 running workflow(s)" in text
    assert "worker plain-process stopped" in text

    finished = asyncio.run(read(database, "finishing"))
    assert finished.status is WorkflowStatus.COMPLETED
    assert finished.result_json == '"order-7 finished"'
    released = asyncio.run(read(database, "hanging"))
    assert (released.status, released.owner) == (WorkflowStatus.RUNNING, None)

    # Released, not left to a lease timeout: another process takes it over at once.
    async def take_over() -> str:
        successor = Durably(f"sqlite:///{database}", lease_duration=3600)

        @successor.workflow(name="hangs", version="1")  # the version the program ran
        async def hangs(ctx: Context) -> str:
            async def hang() -> str:
                return "resumed elsewhere"

            return await ctx.step("hang", hang)

        async with successor:
            return await successor.handle("hanging").result(timeout=30)

    assert asyncio.run(take_over()) == "resumed elsewhere"


def test_serve_refuses_to_block_a_running_loop() -> None:
    async def inside_a_loop() -> None:
        durably.serve(Durably("memory://"))

    with pytest.raises(RuntimeError, match="running event loop"):
        asyncio.run(inside_a_loop())


async def test_serve_async_stops_on_its_event(tmp_path: Path) -> None:
    """Without signals (any thread, any loop), the stop event ends the run."""
    app = Durably(f"sqlite:///{tmp_path / 'stop.db'}")

    @app.workflow(name="hello")
    async def hello(ctx: Context) -> str:
        return "hello"

    stop = asyncio.Event()
    serving = asyncio.ensure_future(serve_async(app, grace=1, stop=stop))
    for _ in range(1000):
        try:
            assert await app.run("hello") == "hello"
            break
        except durably.AppClosedError:
            await asyncio.sleep(0.005)  # not open yet
    stop.set()
    await serving
    with pytest.raises(durably.AppClosedError):
        await app.list_workflows()
