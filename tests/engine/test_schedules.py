"""Cron schedules: tick decisions (pure) and firing through apps sharing a store."""

from __future__ import annotations

import ast
import asyncio
import inspect
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import durably
from durably import Context, Durably, Store, WorkflowStatus
from durably.schedules import CronExpression, Schedule
from durably.testing import FakeClock, FaultInjectingStore

PARIS = ZoneInfo("Europe/Paris")
SCHEDULES_MODULE = Path(durably.__file__).parent / "schedules.py"


def at(hour: int, minute: int, second: int = 0, *, day: int = 1) -> datetime:
    """A moment of January 2026, in UTC."""
    return datetime(2026, 1, day, hour, minute, second, tzinfo=UTC)


def every_five(**options: object) -> Schedule:
    return Schedule("s", "w", CronExpression.parse("*/5 * * * *"), **options)  # type: ignore[arg-type]


# -- pure tick decisions -------------------------------------------------------------------


def test_next_tick_is_strictly_after_the_moment() -> None:
    """A tick equal to the moment is not "next"; fractions of a second are honoured."""
    cron = CronExpression.parse("*/5 * * * *")
    assert cron.next_after(at(10, 5)) == at(10, 10)
    assert cron.next_after(at(10, 4, 59) + timedelta(microseconds=999_999)) == at(10, 5)


def test_without_backfill_only_the_newest_missed_tick_is_due() -> None:
    """After a gap, backfill off: one tick, the newest at or before now."""
    assert every_five().due_ticks(handled_until=at(10, 5), now=at(11, 2, 30)) == [at(11, 0)]


def test_with_backfill_every_missed_tick_is_due_oldest_first_up_to_the_bound() -> None:
    """Backfill on: every tick in (handled, now], the newest max_backfill of them."""
    schedule = every_five(backfill=True, max_backfill=3)
    assert schedule.due_ticks(handled_until=at(10, 5), now=at(11, 2)) == [
        at(10, 50),
        at(10, 55),
        at(11, 0),
    ]
    unbounded = every_five(backfill=True)
    assert unbounded.due_ticks(handled_until=at(10, 5), now=at(10, 20)) == [
        at(10, 10),
        at(10, 15),
        at(10, 20),
    ]


def test_no_tick_is_due_when_nothing_passed_or_the_clock_went_back() -> None:
    schedule = every_five(backfill=True)
    assert schedule.due_ticks(handled_until=at(10, 5), now=at(10, 9, 59)) == []
    assert schedule.due_ticks(handled_until=at(10, 5), now=at(9, 0)) == []


def test_tick_workflow_id_is_in_utc_and_reads_back() -> None:
    """Ids carry the tick in UTC; tick_of reads them back in the schedule's zone."""
    schedule = Schedule("nightly", "report", CronExpression.parse("0 3 * * *", "Europe/Paris"))
    tick = datetime(2026, 1, 5, 3, 0, tzinfo=PARIS)
    assert schedule.workflow_id(tick) == "sched:nightly:2026-01-05T02:00:00Z"
    assert schedule.tick_of("sched:nightly:2026-01-05T02:00:00Z") == tick
    assert schedule.tick_of("sched:other:2026-01-05T02:00:00Z") is None
    assert schedule.tick_of("sched:nightly:yesterday") is None
    assert schedule.tick_of("order-42") is None


def test_a_local_time_repeated_by_daylight_saving_gives_two_ticks_and_two_ids() -> None:
    """Paris falls back at 03:00 on 2026-10-25: 02:30 happens twice, in two UTC ticks."""
    schedule = Schedule("half-hourly", "w", CronExpression.parse("*/30 * * * *", "Europe/Paris"))
    ticks = schedule.cron.latest_ticks(
        after=datetime(2026, 10, 25, 0, 15, tzinfo=UTC),
        until=datetime(2026, 10, 25, 1, 45, tzinfo=UTC),
        limit=10,
    )
    assert [schedule.workflow_id(tick) for tick in ticks] == [
        "sched:half-hourly:2026-10-25T00:30:00Z",
        "sched:half-hourly:2026-10-25T01:00:00Z",
        "sched:half-hourly:2026-10-25T01:30:00Z",
    ]
    assert [tick.strftime("%H:%M%z") for tick in ticks] == [
        "02:30+0200",
        "02:00+0100",
        "02:30+0100",
    ]


def test_a_daily_tick_follows_local_time_across_daylight_saving() -> None:
    """09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer; the default is UTC."""
    paris = CronExpression.parse("0 9 * * *", "Europe/Paris")
    assert paris.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(
        2026, 3, 29, 7, 0, tzinfo=UTC
    )
    assert paris.next_after(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(
        2026, 1, 1, 8, 0, tzinfo=UTC
    )
    assert CronExpression.parse("0 9 * * *").next_after(at(0, 0)) == at(9, 0)


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "Bad minute"),
        ("* * *", "Wrong number of fields"),
        ("*/5 * * * * * *", "Wrong number of fields"),
        ("0 0 31 2 *", "Bad day-of-month"),
        ("every five minutes", "Wrong number of fields"),
    ],
)
def test_a_bad_cron_expression_is_a_value_error_at_decoration(
    expression: str, problem: str
) -> None:
    """@app.scheduled refuses the expression at once, naming the problem and the format."""
    app = Durably("memory://")
    with pytest.raises(ValueError, match=problem) as caught:

        @app.scheduled(expression)
        async def report(ctx: Context, tick: datetime) -> None: ...

    assert "minute hour day-of-month month day-of-week" in str(caught.value)
    assert app.registry.workflows == {}


def test_bad_time_zone_and_bound_are_value_errors_at_decoration() -> None:
    app = Durably("memory://")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        app.scheduled("* * * * *", timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="max_backfill must be at least 1"):
        app.scheduled("* * * * *", backfill=True, max_backfill=0)
    with pytest.raises(ValueError, match="schedule name must not be empty"):
        app.scheduled("* * * * *", name="")
    with pytest.raises(ValueError, match=r"the workflow ids of schedule 'xxx.*at most 256"):

        @app.scheduled("* * * * *", name="x" * 240)
        @app.workflow(name="long")
        async def long(ctx: Context, tick: datetime) -> None: ...

    assert set(app.registry.workflows) == {"long"}


def test_a_workflow_that_cannot_take_a_tick_is_refused() -> None:
    """The workflow receives (ctx, tick: datetime); other signatures fail at decoration."""
    app = Durably("memory://")
    with pytest.raises(durably.ConfigurationError, match=r"def no_tick\(ctx, tick: datetime\)"):

        @app.scheduled("* * * * *")
        async def no_tick(ctx: Context) -> None: ...

    with pytest.raises(durably.ConfigurationError, match="annotate the tick as a datetime"):

        @app.scheduled("* * * * *")
        async def unannotated(ctx: Context, tick) -> None:  # type: ignore[no-untyped-def]
            ...


def test_two_schedules_with_one_name_are_refused() -> None:
    app = Durably("memory://")

    @app.scheduled("*/5 * * * *", name="reports")
    @app.workflow(name="report")
    async def report(ctx: Context, tick: datetime) -> None: ...

    with pytest.raises(durably.ConfigurationError, match="schedule 'reports' is already declared"):

        @app.scheduled("0 * * * *", name="reports")
        @app.workflow(name="other")
        async def other(ctx: Context, tick: datetime) -> None: ...

    with pytest.raises(durably.ConfigurationError, match="two functions are registered"):

        @app.scheduled("0 * * * *", name="report")  # registers workflow "report" again
        async def third(ctx: Context, tick: datetime) -> None: ...


def test_durably_imports_without_the_extra_and_scheduling_names_it() -> None:
    """Without cronsim: import durably works; @app.scheduled says what to install."""
    code = (
        "import sys; sys.modules['cronsim'] = None\n"
        "import durably\n"
        "app = durably.Durably('memory://')\n"
        "try:\n"
        "    app.scheduled('* * * * *')\n"
        "except durably.ConfigurationError as error:\n"
        "    print(error)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install 'durably[schedules]'" in output
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, durably; print('cronsim' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert imported == "False"


def test_the_tick_decisions_do_no_io() -> None:
    """schedules.py is a pure module: no asyncio, no store, no engine."""
    tree = ast.parse(SCHEDULES_MODULE.read_text(encoding="utf-8"))
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {
        module
        for module in modules
        if module == "asyncio" or module.startswith(("durably.store", "durably.engine"))
    }


# -- firing through apps ---------------------------------------------------------------------

#: A worker app sleeps on its clock in three loops: claims, heartbeats and schedules.
#: Tests wait for them before moving the clock, so that the scheduler has read "now".
LOOPS_PER_APP = 3


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds (bounded); the scheduler runs on other tasks."""
    deadline = time.monotonic() + 30
    while True:
        outcome = check()
        if await outcome if inspect.isawaitable(outcome) else outcome:
            return
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.002)


def declare_report(app: Durably, runs: list[datetime], **options: object) -> None:
    """A five-minute schedule named "every-5" on workflow "report" (stacked decorators)."""

    @app.scheduled("*/5 * * * *", name="every-5", **options)  # type: ignore[arg-type]
    @app.workflow(name="report")
    async def report(ctx: Context, tick: datetime) -> str:
        runs.append(tick)
        return tick.isoformat()


def tick_id(moment: datetime) -> str:
    return f"sched:every-5:{moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"


async def completed_ids(app: Durably) -> list[str]:
    return sorted(
        info.workflow_id
        for info in await app.list_workflows(status=WorkflowStatus.COMPLETED, limit=1000)
    )


async def test_each_tick_fires_once_across_two_apps_sharing_the_store(
    store_factory: Callable[[], Store], clock: FakeClock
) -> None:
    """Two apps (two stores on one database) run the same schedule: each tick is
    started by both, stored once, run once."""
    clock.set(at(0, 0, 30))
    runs: list[datetime] = []
    creates: Counter[str] = Counter()

    def count(phase: str, method: str) -> None:
        if phase == "before" and method == "create_workflow":
            creates["attempts"] += 1

    apps = [
        Durably(FaultInjectingStore(store_factory(), count), clock=clock)  # type: ignore[arg-type]
        for _ in range(2)
    ]
    for app in apps:
        declare_report(app, runs)
    async with apps[0], apps[1]:
        await clock.wait_for_sleepers(2 * LOOPS_PER_APP)
        for number in range(1, 4):
            clock.set(at(0, 5 * number, 30))
            await eventually(
                lambda n=number: creates["attempts"] == 2 * n, f"both apps fired tick {number}"
            )
            # Completed before the clock moves on: a jump of minutes would expire the
            # lease of a run still going, and the other app would rightly resume it.
            done = [tick_id(at(0, 5 * n)) for n in range(1, number + 1)]
            await eventually(
                lambda done=done: _equals(completed_ids(apps[0]), done), f"tick {number} ran"
            )
        expected = [tick_id(at(0, 5 * number)) for number in range(1, 4)]
        assert sorted(runs) == [at(0, 5), at(0, 10), at(0, 15)]
        assert [info.workflow_id for info in await apps[1].list_workflows()] == expected
        assert await apps[0].handle(expected[0]).result() == "2026-01-01T00:05:00+00:00"


async def _equals(ids: Awaitable[list[str]], expected: list[str]) -> bool:
    return await ids == expected


@pytest.mark.parametrize(
    ("options", "fired_after_downtime"),
    [
        ({}, [at(1, 0)]),
        ({"backfill": True, "max_backfill": 3}, [at(0, 50), at(0, 55), at(1, 0)]),
        ({"backfill": True}, [at(0, 5 * n) for n in range(2, 12)] + [at(1, 0)]),
    ],
    ids=["newest-only", "bounded-backfill", "full-backfill"],
)
async def test_ticks_missed_while_no_process_ran_follow_the_backfill_option(
    app_factory: Callable[..., Durably],
    clock: FakeClock,
    options: dict[str, object],
    fired_after_downtime: list[datetime],
) -> None:
    """The schedule fired 00:05, every process stopped, and the next one starts at
    01:02:30: it fires the newest missed tick, or the missed ticks since 00:05."""
    clock.set(at(0, 0, 30))
    runs: list[datetime] = []
    before = app_factory()
    declare_report(before, runs, **options)
    async with before:
        await clock.wait_for_sleepers(LOOPS_PER_APP)
        clock.set(at(0, 5, 30))
        await eventually(lambda: _equals(completed_ids(before), [tick_id(at(0, 5))]), "00:05")

    clock.set(at(1, 2, 30))
    after = app_factory()
    declare_report(after, runs, **options)
    async with after:
        expected = sorted(tick_id(tick) for tick in [at(0, 5), *fired_after_downtime])
        await eventually(lambda: _equals(completed_ids(after), expected), "the missed ticks ran")
        assert sorted(runs) == [at(0, 5), *fired_after_downtime]
        assert [info.workflow_id for info in await after.list_workflows()] == expected


async def test_a_first_start_fires_no_past_tick(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """A schedule that never fired starts with the next tick, even with backfill."""
    clock.set(at(10, 3))
    runs: list[datetime] = []
    app = app_factory()
    declare_report(app, runs, backfill=True)
    async with app:
        await clock.wait_for_sleepers(LOOPS_PER_APP)
        clock.set(at(10, 5))
        await eventually(lambda: _equals(completed_ids(app), [tick_id(at(10, 5))]), "10:05")
    assert runs == [at(10, 5)]


async def test_a_clock_jump_in_a_running_app_fires_the_newest_tick_only(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The loop woke late (the clock jumped 30 minutes): backfill off, one run."""
    clock.set(at(0, 0, 30))
    runs: list[datetime] = []
    app = app_factory()
    declare_report(app, runs)
    async with app:
        await clock.wait_for_sleepers(LOOPS_PER_APP)
        clock.set(at(0, 31))
        await eventually(lambda: _equals(completed_ids(app), [tick_id(at(0, 30))]), "00:30")
        clock.set(at(0, 35))
        expected = [tick_id(at(0, 30)), tick_id(at(0, 35))]
        await eventually(lambda: _equals(completed_ids(app), expected), "00:35")
    assert runs == [at(0, 30), at(0, 35)]


async def test_the_tick_is_given_in_the_schedule_time_zone(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """09:00 Paris (08:00 UTC in January) is passed as an aware 09:00+01:00."""
    clock.set(at(7, 59, 30))
    app = app_factory()
    seen: list[datetime] = []

    @app.scheduled("0 9 * * *", name="morning", timezone="Europe/Paris")
    async def morning(ctx: Context, tick: datetime) -> str:
        seen.append(tick)
        return tick.isoformat()

    async with app:
        await clock.wait_for_sleepers(LOOPS_PER_APP)
        clock.set(at(8, 0))
        handle = app.handle("sched:morning:2026-01-01T08:00:00Z")
        await eventually(lambda: _equals(completed_ids(app), [handle.workflow_id]), "09:00")
        assert await handle.result() == "2026-01-01T09:00:00+01:00"
    assert seen == [datetime(2026, 1, 1, 9, 0, tzinfo=PARIS)]
    assert seen[0].utcoffset() == timedelta(hours=1)


async def test_a_schedule_declared_after_open_fires(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    clock.set(at(0, 0, 30))
    runs: list[datetime] = []
    app = app_factory()
    async with app:
        declare_report(app, runs)
        await clock.wait_for_sleepers(LOOPS_PER_APP)
        clock.set(at(0, 5))
        await eventually(lambda: _equals(completed_ids(app), [tick_id(at(0, 5))]), "00:05")
    assert runs == [at(0, 5)]


async def test_a_schedule_with_a_queue_enqueues_each_tick_under_the_queue_limits(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """queue= enqueues every tick's workflow on the queue (its limits apply); a bad
    queue name is refused at decoration."""
    clock.set(at(0, 0, 30))
    runs: list[datetime] = []
    app = app_factory()
    reports = app.queue("reports", concurrency=1)
    declare_report(app, runs, queue=reports)
    with pytest.raises(ValueError, match="queue of schedule"):
        app.scheduled("*/5 * * * *", name="badly-queued", queue=" reports")(declared_elsewhere)
    async with app:
        await clock.wait_for_sleepers(LOOPS_PER_APP)
        clock.set(at(0, 5))
        await eventually(lambda: _equals(completed_ids(app), [tick_id(at(0, 5))]), "00:05")
        info = await app.get_workflow(tick_id(at(0, 5)))
    assert info.queue == "reports"
    assert runs == [at(0, 5)]


async def declared_elsewhere(ctx: Context, tick: datetime) -> None:
    """A tick workflow for the refused declaration above."""


async def test_a_client_app_fires_no_tick(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Schedules fire in worker apps; a client (worker=False) never starts a tick."""
    clock.set(at(0, 0, 30))
    client = app_factory(worker=False)
    declare_report(client, [])
    async with client:
        assert clock.pending_sleepers() == 0  # no scheduler (nor claim loop) waits
        clock.set(at(0, 5))
        for _ in range(50):
            await asyncio.sleep(0)
        assert await client.list_workflows() == []


def test_a_sync_app_runs_a_plain_def_schedule(tmp_path: Path) -> None:
    """SyncDurably.scheduled on a ``def`` workflow, on the real clock: every second."""
    app = durably.SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}")

    @app.scheduled("* * * * * *", name="every-second")  # six fields: seconds first
    def every_second(ctx: durably.SyncContext, tick: datetime) -> str:
        return f"{tick:%S}"

    with app:
        deadline = time.monotonic() + 30
        while not app.list_workflows(status=WorkflowStatus.COMPLETED):
            assert time.monotonic() < deadline, "no tick completed"
            time.sleep(0.02)
        first = app.list_workflows(status=WorkflowStatus.COMPLETED)[0]
    tick = Schedule("every-second", "every-second", CronExpression.parse("* * * * * *")).tick_of(
        first.workflow_id
    )
    assert tick is not None and first.result_json == f'"{tick:%S}"'
