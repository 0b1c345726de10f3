"""The wall clock jumps forward and backward around durable timers and leases.

What durably promises: a durable timer (sleep, signal timeout, retry backoff) is an
instant on the wall clock, recorded once. A forward jump past it fires it (once); a
backward jump delays it until the clock reaches the recorded instant again; no jump
and no restart ever moves it, loses it or fires it twice. A lease is also an instant,
written with the clock of the executor that holds it: a jump on either side can delay
recovery by the size of the jump, or bring a takeover forward while the holder still
runs (another executor's clock ahead, or the holder's own clock behind when it renews);
the fence then refuses every later write of the old holder, so no recorded step is
ever lost, written twice or run again (a step in flight, not yet recorded, may run in
both executors: steps are at-least-once).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

import durably
from durably import (
    Context,
    Durably,
    LeaseLostError,
    Observer,
    RetryPolicy,
    SqliteStore,
    Store,
    StoreError,
    WorkflowStatus,
)
from durably.models import OperationKind
from durably.observers import RunEnd, RunInfo
from durably.testing import FakeClock, FaultInjectingStore

LEASE = timedelta(seconds=30)
HOUR, MINUTE, SECOND = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)


class Timers:
    """An app whose workflows wait on each kind of durable timer; counts step runs."""

    def __init__(self, path: Path, clock: FakeClock, **options: object) -> None:
        self.runs: Counter[str] = Counter()
        self.app = Durably(
            SqliteStore(path),
            clock=clock,
            inline_wait=0,
            lease_duration=LEASE,
            **options,  # type: ignore[arg-type]
        )

        async def mark(name: str) -> str:
            self.runs[name] += 1
            return name

        async def flaky() -> str:
            self.runs["flaky"] += 1
            if durably.current_step().attempt == 1:
                raise ConnectionError("first attempt fails")
            return "recovered"

        @self.app.workflow(name="sleeper")
        async def sleeper(ctx: Context) -> str:
            await ctx.step("before", mark, "before")
            await ctx.sleep("nap", timedelta(minutes=10))
            return await ctx.step("after", mark, "after")

        @self.app.workflow(name="waiter")
        async def waiter(ctx: Context) -> object:
            return await ctx.wait_signal("answer", timeout=timedelta(minutes=10))

        @self.app.workflow(name="retrier")
        async def retrier(ctx: Context) -> str:
            return await ctx.step("flaky", flaky, retry=RetryPolicy.fixed(2, timedelta(minutes=10)))


async def idle(app: Durably) -> None:
    """Let the app handle whatever is due now (its loops and runs run to their waits)."""
    for _ in range(300):
        await asyncio.sleep(0)


async def status(app: Durably, workflow_id: str) -> WorkflowStatus:
    return (await app.handle(workflow_id).info()).status


async def timer_of(app: Durably, workflow_id: str) -> int:
    """The wake-up instant recorded for the workflow's timer."""
    history = await app.store.load_history(workflow_id)
    attempts = [a.next_attempt_at for runs in history.attempts.values() for a in runs]
    waits = [
        operation.wake_at
        for operation in history.operations.values()
        if operation.kind in (OperationKind.SLEEP, OperationKind.SIGNAL)
    ]
    (instant,) = [moment for moment in attempts + waits if moment is not None]
    return instant


async def suspended(app: Durably, workflow_id: str) -> int:
    """Wait until the workflow is suspended on its timer; return the timer's instant."""
    async for info in app.watch(workflow_id):
        if info.status is WorkflowStatus.SUSPENDED:
            return await timer_of(app, workflow_id)
    raise AssertionError(f"{workflow_id} finished instead of suspending")


@pytest.mark.parametrize("workflow", ["sleeper", "waiter", "retrier"])
async def test_a_forward_jump_past_a_timer_fires_it_once_and_never_moves_it(
    tmp_path: Path, workflow: str, record_property: Callable[[str, object], None]
) -> None:
    """The clock jumps a day ahead while a workflow waits ten minutes: the timer
    fires, once; its recorded instant is unchanged; no step ran twice."""
    clock = FakeClock()
    timers = Timers(tmp_path / "durably.db", clock)
    async with timers.app as app:
        await app.start(workflow, workflow_id="w")
        instant = await suspended(app, "w")
        clock.advance(timedelta(days=1))
        result = await app.handle("w").result()
        assert await timer_of(app, "w") == instant
    assert result == {"sleeper": "after", "waiter": None, "retrier": "recovered"}[workflow]
    assert all(count == 1 for name, count in timers.runs.items() if name != "flaky")
    assert timers.runs["flaky"] in (0, 2)
    record_property("faults_injected", 1)


@pytest.mark.parametrize("workflow", ["sleeper", "waiter", "retrier"])
async def test_a_backward_jump_delays_a_timer_to_its_recorded_instant_even_across_a_restart(
    tmp_path: Path, workflow: str, record_property: Callable[[str, object], None]
) -> None:
    """The clock jumps an hour back while a workflow waits ten minutes: the timer does
    not fire before the clock is back at the recorded instant (not even in a new app,
    whose replay must not recompute it), and fires when it gets there."""
    clock = FakeClock()
    path = tmp_path / "durably.db"
    timers = Timers(path, clock)
    async with timers.app as app:
        await app.start(workflow, workflow_id="w")
        instant = await suspended(app, "w")
        clock.advance(timedelta(minutes=5))
        clock.set(clock.now() - int(HOUR.total_seconds() * 1_000_000))
        await idle(app)
    restarted = Timers(path, clock)
    async with restarted.app as app:
        clock.set(instant - 1)
        assert (await app.recover()).resumed == ()
        assert await status(app, "w") is WorkflowStatus.SUSPENDED
        assert await timer_of(app, "w") == instant
        clock.set(instant)
        await app.handle("w").result()
        assert await timer_of(app, "w") == instant
    runs = timers.runs + restarted.runs
    assert all(count == 1 for name, count in runs.items() if name != "flaky")
    record_property("faults_injected", 1)


async def test_a_signal_arriving_while_the_clock_is_behind_is_consumed_not_timed_out(
    tmp_path: Path,
) -> None:
    """A backward jump gives a signal wait more wall time, never less: a signal sent
    then is consumed; its timeout instant is unchanged."""
    clock = FakeClock()
    timers = Timers(tmp_path / "durably.db", clock)
    async with timers.app as app:
        await app.start("waiter", workflow_id="w")
        instant = await suspended(app, "w")
        clock.set(clock.now() - int(HOUR.total_seconds() * 1_000_000))
        await app.send_signal("w", "answer", 42)
        assert await app.handle("w").result() == 42
        assert await timer_of(app, "w") == instant


async def test_a_dead_executors_lease_written_ahead_delays_recovery_only_by_the_jump(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Executor A's clock runs a day ahead when it renews its lease, then A dies
    without releasing it. B, on the right time, cannot tell A is dead (same process:
    the pid is alive), so it waits for the lease: recovery is delayed by the jump, and
    then happens; the recorded step is not run again."""
    path = tmp_path / "durably.db"
    clock_a, clock_b = FakeClock(), FakeClock()
    gate, second_started = asyncio.Event(), asyncio.Event()
    runs: Counter[str] = Counter()

    def register(app: Durably) -> None:
        async def first() -> str:
            runs["first"] += 1
            return "one"

        async def second() -> str:
            runs["second"] += 1
            second_started.set()
            await gate.wait()
            return "two"

        @app.workflow(name="two-steps")
        async def two_steps(ctx: Context) -> str:
            return await ctx.step("first", first) + await ctx.step("second", second)

    def fail_releases(phase: str, method: str) -> None:
        if method in ("release_workflows", "remove_executor"):
            raise StoreError("the process died (injected)")

    store_a = FaultInjectingStore(SqliteStore(path), fail_releases)
    a = Durably(store_a, clock=clock_a, lease_duration=LEASE, executor_id="a")  # type: ignore[arg-type]
    register(a)

    async def run_a_until_it_dies() -> None:
        async with a:
            await a.start("two-steps", workflow_id="w")
            await second_started.wait()
            clock_a.advance(timedelta(days=1))  # A's heartbeat renews a day ahead
            await clock_a.wait_for_sleepers(2)
            await idle(a)

    with pytest.raises(StoreError):  # A cannot release its leases: it "died"
        await run_a_until_it_dies()
    gate.set()
    b = Durably(SqliteStore(path), clock=clock_b, lease_duration=LEASE, executor_id="b")
    register(b)
    async with b:
        clock_b.advance(LEASE + MINUTE)  # a lease written with the right time would be over
        assert (await b.recover()).resumed == ()
        clock_b.advance(timedelta(days=1))
        assert await b.handle("w").result() == "onetwo"
    assert runs["first"] == 1  # recorded by A before it died: never again
    record_property("faults_injected", 1)


async def test_a_forward_jump_longer_than_the_lease_does_not_strand_running_work(
    tmp_path: Path,
) -> None:
    """The executor's clock jumps past the lease while a step runs: the workflow still
    finishes, and the step's result is recorded once."""
    clock = FakeClock()
    gate, entered = asyncio.Event(), asyncio.Event()
    app = Durably(SqliteStore(tmp_path / "durably.db"), clock=clock, lease_duration=LEASE)

    async def slow() -> str:
        entered.set()
        await gate.wait()
        return "done"

    @app.workflow(name="slow")
    async def slow_workflow(ctx: Context) -> str:
        return await ctx.step("slow", slow)

    async with app:
        handle = await app.start(slow_workflow, workflow_id="w")
        await entered.wait()
        clock.advance(LEASE + SECOND)
        # The claim pass that follows the jump before the heartbeat does (the claim
        # loop's own timer fires first); recover() makes that order certain.
        claimed = (await app.recover()).resumed
        await idle(app)
        gate.set()
        for _ in range(100):  # a few minutes of virtual time, a second at a time
            if (await status(app, "w")).is_terminal:
                break
            await idle(app)
            clock.advance(SECOND)
        record = await app.store.get_workflow("w")
        assert claimed == ("w",)  # the executor claimed its own running workflow
        assert record is not None
        assert record.status is WorkflowStatus.COMPLETED, (
            f"stranded: {record.status}, owner {record.owner} (this executor), "
            f"fence {record.fence}, running here: {'w' in app._runs}"
        )
        assert await handle.result() == "done"


# -- two live executors, each with its own clock -----------------------------------------

#: What the three-step workflow returns when nothing goes wrong.
CRASH_FREE = "one|two|three"
STEP_VALUES = {"first": "one", "second": "two", "third": "three"}


class RunEnds(Observer):
    """Keeps how each run of an executor ended; wakes a test waiting for one."""

    def __init__(self) -> None:
        self.ends: list[tuple[RunInfo, RunEnd]] = []
        self.changed = asyncio.Event()

    def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
        self.ends.append((run, end))
        self.changed.set()

    async def ended(self, workflow_id: str) -> RunEnd:
        """The end of the first run of ``workflow_id`` (waiting for it if need be)."""
        while True:
            for run, end in self.ends:
                if run.workflow_id == workflow_id:
                    return end
            self.changed.clear()
            await self.changed.wait()


@dataclass
class Steps:
    """The steps of the three-step workflow as each executor runs them: counts every
    live run by (executor, step); a step listed in ``held`` waits for its gate (a held
    "second" then returns ``"stale"``, a result that must never be recorded)."""

    runs: Counter[tuple[str, str]] = field(default_factory=Counter)
    held: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    entered: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def hold(self, executor: str, step: str) -> None:
        self.held[executor, step] = asyncio.Event()
        self.entered[executor, step] = asyncio.Event()

    def total(self, step: str) -> int:
        return sum(count for (_, name), count in self.runs.items() if name == step)

    def register(self, app: Durably, executor: str) -> None:
        def make(step: str) -> Callable[[], Awaitable[str]]:
            async def run() -> str:
                self.runs[executor, step] += 1
                gate = self.held.get((executor, step))
                if gate is None:
                    return STEP_VALUES[step]
                self.entered[executor, step].set()
                await gate.wait()
                return "stale" if step == "second" else STEP_VALUES[step]

            return run

        first, second, third = make("first"), make("second"), make("third")

        @app.workflow(name="three-steps")
        async def three_steps(ctx: Context) -> str:
            values = [
                await ctx.step("first", first),
                await ctx.step("second", second),
                await ctx.step("third", third),
            ]
            return "|".join(values)


class RenewalsSeen:
    """A store seen through: keeps the expiry of each lease renewal once it is
    written, and wakes the test then."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.written: list[int] = []
        self.renewed = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def renew_leases(self, *, owner: str, now: int, lease_until: int) -> list[str]:
        cancelled = await self.inner.renew_leases(owner=owner, now=now, lease_until=lease_until)
        self.written.append(lease_until)
        self.renewed.set()
        return cancelled


def two_executors(
    store_factory: Callable[[], Store], steps: Steps
) -> tuple[Durably, FakeClock, RenewalsSeen, RunEnds, Durably, FakeClock]:
    """Executor "a" (its store seen through :class:`RenewalsSeen`) and executor "b" on
    one store, each with its own fake clock; both start at the same instant."""
    clock_a, clock_b = FakeClock(), FakeClock()
    ends_a = RunEnds()
    renewals = RenewalsSeen(store_factory())
    a = Durably(
        renewals,  # type: ignore[arg-type]
        clock=clock_a,
        lease_duration=LEASE,
        executor_id="a",
        observers=[ends_a],
    )
    b = Durably(store_factory(), clock=clock_b, lease_duration=LEASE, executor_id="b")
    steps.register(a, "a")
    steps.register(b, "b")
    return a, clock_a, renewals, ends_a, b, clock_b


async def operations(app: Durably, workflow_id: str) -> list[tuple[str, str, str | None]]:
    """The recorded operations of a workflow: (name, status, encoded result), by seq."""
    history = await app.store.load_history(workflow_id)
    return [
        (operation.name, str(operation.status), operation.result)
        for _, operation in sorted(history.operations.items())
    ]


async def finish_and_compare_with_a_crash_free_run(
    b: Durably, steps: Steps, ends_a: RunEnds
) -> None:
    """The old holder "a" releases its step in flight: its late result is refused by
    the fence and its run ends abandoned, while "b" (held in its last step) keeps its
    own; then "b" finishes the workflow exactly as a run without any fault would."""
    steps.held["a", "second"].set()
    end = await ends_a.ended("w")
    assert end.status is None, end  # abandoned: nothing written
    assert isinstance(end.error, BaseException)
    assert isinstance(end.error.__cause__, LeaseLostError), end.error
    assert await operations(b, "w") == [
        ("first", "COMPLETED", '"one"'),
        ("second", "COMPLETED", '"two"'),
    ], "the old holder's late write reached the store"
    steps.held["b", "third"].set()
    assert await b.handle("w").result() == CRASH_FREE
    assert await b.run("three-steps", workflow_id="crash-free") == CRASH_FREE
    assert await operations(b, "w") == await operations(b, "crash-free")
    record = await b.store.get_workflow("w")
    assert record is not None and record.status is WorkflowStatus.COMPLETED
    assert record.owner is None and record.recovery_attempts == 1
    # "first" and "third" ran once for "w" (and once for the crash-free run); the step
    # in flight when "b" took over ran in both executors and was recorded once.
    assert steps.total("first") == 2 and steps.total("third") == 2
    assert steps.runs["a", "second"] == 1 and steps.runs["b", "second"] == 2


async def test_a_live_holder_overtaken_by_a_clock_ahead_cannot_write_or_renew(
    store_factory: Callable[[], Store], record_property: Callable[[str, object], None]
) -> None:
    """Two live executors on one store. "a" runs the workflow (its first step
    recorded, the second in flight) when the clock of "b" jumps an hour ahead: to "b"
    the live lease of "a" has expired, and "b" takes the workflow over, replaying the
    recorded step. Then the heartbeat of "a" renews nothing (the workflow is not its
    own any more), its late step result is refused by the fence, and the workflow
    ends as a crash-free run does: no recorded step lost, run again or written twice.
    """
    steps = Steps()
    steps.hold("a", "second")
    steps.hold("b", "third")
    a, clock_a, renewals, ends_a, b, clock_b = two_executors(store_factory, steps)
    async with a, b:
        await a.start("three-steps", workflow_id="w")
        await steps.entered["a", "second"].wait()
        clock_b.advance(HOUR)
        await steps.entered["b", "third"].wait()  # "b" claimed it and replayed "first"
        taken = await b.store.get_workflow("w")
        assert taken is not None and (taken.owner, taken.fence) == ("b", 2)
        assert steps.runs["b", "first"] == 0, "a recorded step ran again"
        renewals.renewed.clear()
        clock_a.advance(LEASE)  # a heartbeat of "a": it owns nothing to renew
        await renewals.renewed.wait()
        # "a" renews with its own clock, an hour behind that of "b": applied to the
        # workflow, that expiry would cut the lease of "b" short by an hour.
        assert taken.lease_until is not None and renewals.written[-1] < taken.lease_until
        after = await b.store.get_workflow("w")
        assert after is not None
        assert (after.owner, after.fence, after.lease_until) == ("b", 2, taken.lease_until)
        await finish_and_compare_with_a_crash_free_run(b, steps, ends_a)
    record_property("faults_injected", 1)


async def test_a_holder_whose_clock_jumps_back_loses_its_lease_early_and_safely(
    store_factory: Callable[[], Store], record_property: Callable[[str, object], None]
) -> None:
    """The clock of the holder "a" jumps an hour back just as its heartbeat fires. The
    renewal writes the expiry that clock gives (now + lease): an hour in the past for
    everyone else, so "b", on the right time, takes the live workflow over at its next
    poll instead of waiting for the lease. That is early, and safe: the fence refuses
    every later write of "a", and the workflow ends as a crash-free run does."""
    steps = Steps()
    steps.hold("a", "second")
    steps.hold("b", "third")
    a, clock_a, renewals, ends_a, b, clock_b = two_executors(store_factory, steps)
    async with a, b:
        await a.start("three-steps", workflow_id="w")
        await steps.entered["a", "second"].wait()
        await clock_a.wait_for_sleepers(2)  # the claim and heartbeat loops of "a"
        assert (await b.recover()).resumed == ()  # the lease of "a" is live for "b"
        renewals.renewed.clear()
        clock_a.advance(LEASE / 3)  # the heartbeat of "a" is due: it wakes up...
        clock_a.set(clock_a.now() - int(HOUR.total_seconds() * 1_000_000))  # ...jumped
        await renewals.renewed.wait()
        (written,) = renewals.written
        assert written == clock_a.now() + int(LEASE.total_seconds() * 1_000_000)
        assert written < clock_b.now()  # expired, for a clock on time
        clock_b.advance(SECOND)  # the next poll of "b" (if a notice did not wake it)
        await steps.entered["b", "third"].wait()
        taken = await b.store.get_workflow("w")
        assert taken is not None and (taken.owner, taken.fence) == ("b", 2)
        assert steps.runs["b", "first"] == 0, "a recorded step ran again"
        await finish_and_compare_with_a_crash_free_run(b, steps, ends_a)
    record_property("faults_injected", 1)
