"""DBOS Transact running the same workloads as durably, for the comparison columns.

It runs only in DBOS's own virtualenv (see ``bench/dbos_env.py``), as
``python -m bench.child``'s twin: ``python -m bench.dbos_driver FUNCTION JSON``; it
imports nothing from durably. DBOS is configured as its documentation shows, with
its defaults (on SQLite: its default journal and ``synchronous`` settings), except
``log_level=WARNING`` (durably logs nothing per workflow either).

Each function mirrors the durably workload of the scenario module named in its
docstring; keep the two in step.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.protocol import emit_ready, emit_result, peak_rss_bytes, rss_bytes

#: In the process that is killed, the last step never returns (a process-wide flag,
#: not an input: the recovering process replays the same recorded input).
_HANG = asyncio.Event()
_hanging = [False]
_counters = {"entered": 0, "waiting": 0}
_last_step_started: list[float] = []


def _config(where: dict[str, Any], **extra: Any) -> DBOSConfig:
    config: DBOSConfig = {"name": "durably-bench", "log_level": "WARNING"}
    if where["kind"] == "sqlite":
        config["system_database_url"] = where["url"]
    else:
        config["system_database_url"] = where["url"]
        config["dbos_system_schema"] = where["schema"]
    config.update(extra)  # type: ignore[typeddict-item]
    return config


DBOS_INSTANCE: DBOS | None = None


def _setup(where: dict[str, Any], **extra: Any) -> None:
    global DBOS_INSTANCE
    DBOS_INSTANCE = DBOS(config=_config(where, **extra))


@DBOS.step()
async def trivial(value: int) -> int:
    """The trivial step."""
    return value + 1


@DBOS.step()
async def payload_step(size: int) -> str:
    """A step whose result is ``size`` bytes."""
    return "x" * size


@DBOS.step()
async def maybe_hang(value: int) -> int:
    """The step at which the first process is killed: it never returns there."""
    _counters["entered"] += 1
    _last_step_started.append(time.perf_counter())
    if _hanging[0]:
        await _HANG.wait()
    return value + 1


@DBOS.workflow()
async def sequential_workflow(steps: int) -> int:
    """bench/scenarios/sequential.py and concurrent.py: ``steps`` trivial steps."""
    value = 0
    for _ in range(steps):
        value = await trivial(value)
    return value


@DBOS.workflow()
async def payload_workflow(steps: int, size: int) -> int:
    """bench/scenarios/payloads.py: each step returns ``size`` bytes."""
    total = 0
    for _ in range(steps):
        total += len(await payload_step(size))
    return total


@DBOS.workflow()
async def interrupted_workflow(steps: int) -> int:
    """bench/scenarios/recovery.py and replay.py: ``steps`` trivial steps, then one
    that hangs in the first process (killed there) and returns in the second."""
    value = 0
    for _ in range(steps):
        value = await trivial(value)
    return await maybe_hang(value)


@DBOS.workflow()
async def waiting_workflow() -> str:
    """bench/scenarios/idle.py: wait for one message."""
    _counters["waiting"] += 1
    message = await DBOS.recv_async("go", timeout_seconds=24 * 3600)
    return str(message)


async def _start(workflow: Any, workflow_id: str, *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return await DBOS.start_workflow_async(workflow, *args)


def _finish(result: dict[str, Any]) -> None:
    """Print the result and leave at once: DBOS's shutdown is not what is measured."""
    emit_result(result)
    os._exit(0)


async def sequential(where: dict[str, Any], steps: int) -> None:
    """Seconds to run one workflow of ``steps`` trivial steps."""
    _setup(where)
    DBOS.launch()
    await (await _start(sequential_workflow, "warm-up", 2)).get_result()
    started = time.perf_counter()
    handle = await _start(sequential_workflow, "measured", steps)
    assert await handle.get_result() == steps
    _finish({"seconds": time.perf_counter() - started})


async def concurrent(where: dict[str, Any], workflows: int, steps: int, concurrency: int) -> None:
    """Run ``workflows`` workflows of ``steps`` steps, ``concurrency`` at a time."""
    _setup(where)
    DBOS.launch()
    await (await _start(sequential_workflow, "warm-up", 2)).get_result()
    latencies: list[float] = []
    queue = iter(range(workflows))

    async def client() -> None:
        for index in queue:
            began = time.perf_counter()
            handle = await _start(sequential_workflow, f"wf-{index}", steps)
            assert await handle.get_result() == steps
            latencies.append(time.perf_counter() - began)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    _finish({"seconds": time.perf_counter() - started, "latencies": latencies})


async def payload(where: dict[str, Any], steps: int, size: int) -> None:
    """Seconds to run one workflow of ``steps`` steps returning ``size`` bytes each."""
    _setup(where)
    DBOS.launch()
    await (await _start(payload_workflow, "warm-up", 1, size)).get_result()
    started = time.perf_counter()
    handle = await _start(payload_workflow, "measured", steps, size)
    assert await handle.get_result() == steps * size
    _finish({"seconds": time.perf_counter() - started})


async def interrupt(where: dict[str, Any], workflows: int, steps: int) -> None:
    """Start ``workflows`` workflows and report ready once each hangs after ``steps``
    steps; the parent then kills this process."""
    _hanging[0] = True
    _setup(where)
    DBOS.launch()
    for index in range(workflows):
        await _start(interrupted_workflow, f"wf-{index}", steps)
    # A workflow enters its last step only once its earlier steps are committed.
    while _counters["entered"] < workflows:  # noqa: ASYNC110 -- polls a database or counter, not an event
        await asyncio.sleep(0.01)
    emit_ready(str(workflows))
    await asyncio.Event().wait()


async def resume(where: dict[str, Any], steps: int) -> None:
    """Recover one interrupted workflow: seconds from launch until its step after the
    ``steps`` recorded ones starts (every recorded step replayed)."""
    _setup(where)
    started = time.perf_counter()
    DBOS.launch()
    while not _last_step_started:  # noqa: ASYNC110 -- polls a database or counter, not an event
        await asyncio.sleep(0.001)
    _finish({"seconds": _last_step_started[0] - started})


async def recover_all(where: dict[str, Any]) -> None:
    """Launch (which recovers this executor's pending workflows) and keep running
    until the parent, which counts completions in the database, stops us."""
    _setup(where)
    emit_ready("launching")
    DBOS.launch()
    await asyncio.Event().wait()


async def idle(where: dict[str, Any], workflows: int, senders: int) -> None:
    """Suspend ``workflows`` workflows on a message wait; measure memory and rows; then
    send every message and time until all complete."""
    _setup(where)
    DBOS.launch()
    gc.collect()
    rss_before = rss_bytes()
    started = time.perf_counter()
    handles = []
    first_part = max(workflows // 10, 1)
    rss_first_part = 0
    for first, last in ((0, first_part), (first_part, workflows)):
        for index in range(first, last):
            handles.append(await _start(waiting_workflow, f"wf-{index}"))
        while _counters["waiting"] < last:  # noqa: ASYNC110 -- polls a database or counter, not an event
            await asyncio.sleep(0.01)
        if first == 0:
            await asyncio.sleep(1.0)  # every wait registered
            gc.collect()
            rss_first_part = rss_bytes()
    # Counted when each workflow enters its wait (favourable to DBOS: the wait's own
    # setup and the pause above are not included).
    start_seconds = time.perf_counter() - started - 1.0
    await asyncio.sleep(1.0)
    gc.collect()
    rss_suspended = rss_bytes()
    rows = _count_rows(where)
    queue = iter(range(workflows))

    async def sender() -> None:
        for index in queue:
            await DBOS.send_async(f"wf-{index}", "go", "go")

    woke = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    results = await asyncio.gather(*(handle.get_result() for handle in handles))
    assert all(result == "go" for result in results)
    _finish(
        {
            "start_seconds": start_seconds,
            "wake_seconds": time.perf_counter() - woke,
            "rss_before": rss_before,
            "rss_suspended": rss_suspended,
            "rss_first_part": rss_first_part,
            "first_part": first_part,
            "peak_rss": peak_rss_bytes(),
            "rows": rows,
        }
    )


def _count_rows(where: dict[str, Any]) -> int:
    """Rows in every DBOS table (the system database's whole footprint)."""
    if where["kind"] == "sqlite":
        import sqlite3

        connection = sqlite3.connect(where["url"].removeprefix("sqlite:///"), timeout=30)
        try:
            tables = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
                if not name.startswith("sqlite_") and name != "dbos_migrations"
            ]
            return sum(
                connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                for name in tables
            )
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(where["url"], autocommit=True) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (where["schema"],),
            )
            if name != "dbos_migrations"
        ]
        total = 0
        for name in tables:
            row = connection.execute(
                f'SELECT count(*) FROM "{where["schema"]}"."{name}"'
            ).fetchone()
            assert row is not None
            total += int(row[0])
        return total


def main() -> None:
    """Run the function named on the command line."""
    function = globals()[sys.argv[1]]
    params = json.loads(sys.argv[2])
    asyncio.run(function(**params))


if __name__ == "__main__":
    main()
