"""Events (ctx.set_event / app.get_event) and streams (ctx.write_stream /
app.read_stream): durable, replay-safe, read while the workflow runs, and across
processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import postgres_url

from durably import (
    Context,
    Durably,
    MemoryStore,
    PayloadError,
    Store,
    SyncContext,
    SyncDurably,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowStatus,
)
from durably.admin.inspection import build_timeline
from durably.change_feed import follow_changes
from durably.clock import SystemClock
from durably.dashboard.gantt import build_gantt
from durably.models import Fence, OperationKind, OperationRecord
from durably.notifier import Notifier, progress_key
from durably.store.base import StoreChange
from durably.testing import FakeClock
from durably.testing._contract.records import claimed, operation, send


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


async def wait_for(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (bounded, no wall-clock sleeps)."""
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def published(store: Store, workflow_id: str, kind: OperationKind) -> list[object]:
    """The names and raw values of the workflow's recorded operations of ``kind``."""
    history = await store.load_history(workflow_id)
    return [
        (record.name, record.result)
        for record in history.operations.values()
        if record.kind is kind
    ]


# -- events ------------------------------------------------------------------------


async def test_an_event_set_by_a_workflow_is_read_outside(app: Durably) -> None:
    """get_event returns the value: plain JSON by default, the given type on request."""

    @app.workflow()
    async def reports(ctx: Context) -> str:
        await ctx.set_event("progress", Progress(3, 10))
        return "done"

    handle = await app.start(reports)
    assert await handle.result() == "done"
    assert await app.get_event(handle.workflow_id, "progress") == {"done": 3, "total": 10}
    typed = await app.get_event(handle.workflow_id, "progress", type=Progress)
    assert typed == Progress(3, 10)


async def test_get_event_waits_for_the_event_to_be_set(app: Durably) -> None:
    """A reader that asks first is woken when the workflow sets the event (no clock
    moves: the wake-up is the in-process notification)."""

    @app.workflow()
    async def checkout(ctx: Context) -> None:
        await ctx.wait_signal("paid")
        await ctx.set_event("receipt", "R-17")

    handle = await app.start(checkout)
    reader = asyncio.ensure_future(app.get_event(handle.workflow_id, "receipt", timeout=60))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not reader.done()
    await app.send_signal(handle.workflow_id, "paid")
    assert await reader == "R-17"
    await handle.result()


async def test_get_event_returns_none_when_the_timeout_passes(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The timeout runs on the app's clock; when it passes without the event: None."""
    client = app_factory(worker=False)  # the workflow stays PENDING: nothing sets it

    @client.workflow()
    async def never_sets(ctx: Context) -> None:
        await ctx.set_event("ready", True)

    async with client:
        handle = await client.start(never_sets)
        reader = asyncio.ensure_future(
            client.get_event(handle.workflow_id, "ready", timeout=timedelta(seconds=5))
        )
        await clock.wait_for_sleepers(1)
        clock.advance(timedelta(seconds=4))
        await clock.wait_for_sleepers(1)
        assert not reader.done()
        clock.advance(timedelta(seconds=1))
        assert await reader is None


async def test_get_event_of_a_finished_workflow_that_never_set_it_is_none_at_once(
    app: Durably,
) -> None:
    """A finished workflow can set nothing more: no need to wait for the timeout."""

    @app.workflow()
    async def quiet(ctx: Context) -> int:
        return 1

    handle = await app.start(quiet)
    await handle.result()
    assert await app.get_event(handle.workflow_id, "anything", timeout=None) is None


async def test_get_event_of_an_unknown_workflow_raises(app: Durably) -> None:
    """An unknown id is an error, not a wait."""
    with pytest.raises(WorkflowNotFoundError, match="nope"):
        await app.get_event("nope", "key")
    with pytest.raises(WorkflowNotFoundError, match="nope"):
        async for _ in app.read_stream("nope", "key"):
            pass


async def test_setting_an_event_again_overwrites_it(app: Durably) -> None:
    """Readers get the latest value; every setting stays in the history."""

    @app.workflow()
    async def stages(ctx: Context) -> None:
        for stage in ("validated", "charged", "shipped"):
            await ctx.set_event("stage", stage)

    handle = await app.start(stages)
    await handle.result()
    assert await app.get_event(handle.workflow_id, "stage") == "shipped"
    assert await published(app.store, handle.workflow_id, OperationKind.EVENT) == [
        ("stage", '"validated"'),
        ("stage", '"charged"'),
        ("stage", '"shipped"'),
    ]


async def test_a_value_that_cannot_be_encoded_fails_at_the_call(app: Durably) -> None:
    """The error is raised where the value is published, in the first run."""

    @app.workflow()
    async def bad(ctx: Context) -> str:
        try:
            ctx.set_event("key", object())
        except PayloadError as error:
            return str(error)
        return "no error"

    message = await (await app.start(bad)).result()
    assert "event 'key'" in message


# -- streams -----------------------------------------------------------------------


async def test_a_stream_is_read_in_order_while_the_workflow_runs(app: Durably) -> None:
    """The reader gets entries as they are written, and stops at the close even though
    the workflow goes on."""

    @app.workflow()
    async def tokens(ctx: Context) -> str:
        await ctx.write_stream("tokens", "Hel")
        await ctx.write_stream("tokens", "lo")
        await ctx.wait_signal("more")
        await ctx.write_stream("tokens", " world")
        await ctx.close_stream("tokens")
        await ctx.wait_signal("finish")
        return "finished"

    handle = await app.start(tokens)
    received: list[str] = []
    async for token in app.read_stream(handle.workflow_id, "tokens"):
        received.append(token)
        if len(received) == 2:
            await app.send_signal(handle.workflow_id, "more")
    assert received == ["Hel", "lo", " world"]
    assert not (await handle.status()).is_terminal
    await app.send_signal(handle.workflow_id, "finish")
    assert await handle.result() == "finished"


async def test_a_stream_that_is_never_closed_ends_when_the_workflow_finishes(
    app: Durably,
) -> None:
    """Every entry is read, then the iteration ends with the workflow."""

    @app.workflow()
    async def counts(ctx: Context) -> None:
        for done in range(1, 4):
            await ctx.write_stream("progress", Progress(done, 3))

    handle = await app.start(counts)
    await handle.result()
    entries = [
        entry async for entry in app.read_stream(handle.workflow_id, "progress", type=Progress)
    ]
    assert entries == [Progress(1, 3), Progress(2, 3), Progress(3, 3)]


async def test_a_stream_ends_when_the_workflow_fails(app: Durably) -> None:
    """A failed workflow writes nothing more: its readers stop."""

    @app.workflow()
    async def breaks(ctx: Context) -> None:
        await ctx.write_stream("log", "starting")
        raise RuntimeError("boom")

    handle = await app.start(breaks)
    with pytest.raises(WorkflowFailedError):
        await handle.result()
    assert [entry async for entry in app.read_stream(handle.workflow_id, "log")] == ["starting"]


async def test_writes_started_together_are_read_in_call_order(app: Durably) -> None:
    """Writes gathered, or awaited out of order, are still recorded in call order."""

    @app.workflow()
    async def burst(ctx: Context) -> None:
        await asyncio.gather(*(ctx.write_stream("s", n) for n in range(5)))
        later, sooner = ctx.write_stream("s", 5), ctx.write_stream("s", 6)
        await sooner
        await later
        await ctx.close_stream("s")

    handle = await app.start(burst)
    await handle.result()
    assert [entry async for entry in app.read_stream(handle.workflow_id, "s")] == list(range(7))


async def test_stream_entries_are_committed_in_call_order(clock: FakeClock) -> None:
    """An entry awaited first still waits for the earlier entries to be recorded, so a
    reader never passes over an entry that commits later."""
    committed: list[int] = []

    class RecordingStore(MemoryStore):
        async def record_operation(self, fence: Fence, operation: OperationRecord) -> None:
            await asyncio.sleep(0)  # give another write the chance to overtake
            await super().record_operation(fence, operation)
            committed.append(operation.seq)

    app = Durably(RecordingStore(), clock=clock)

    @app.workflow()
    async def overtakes(ctx: Context) -> None:
        first, second, third = (ctx.write_stream("s", n) for n in range(3))
        await third
        await asyncio.gather(second, first)

    async with app:
        await (await app.start(overtakes)).result()
    assert committed == [0, 1, 2]


async def test_writing_to_a_closed_stream_is_refused(app: Durably) -> None:
    """Closing twice does nothing; a write after the close raises at the call."""

    @app.workflow()
    async def closes(ctx: Context) -> str:
        await ctx.write_stream("s", 1)
        await ctx.close_stream("s")
        await ctx.close_stream("s")
        try:
            ctx.write_stream("s", 2)
        except ValueError as error:
            return str(error)
        return "no error"

    handle = await app.start(closes)
    assert "stream 's'" in await handle.result()
    history = await app.store.load_history(handle.workflow_id)
    assert [record.kind for record in history.operations.values()] == [
        OperationKind.STREAM,
        OperationKind.STREAM_CLOSE,
    ]


async def test_replay_after_a_crash_publishes_nothing_twice(
    app_factory: Callable[..., Durably],
) -> None:
    """A recovered run replays the recorded entry and event; the stream has each entry
    once and the history one record of each."""
    gate = asyncio.Event()
    runs: list[str] = []

    async def slow() -> str:
        runs.append("slow")
        await gate.wait()
        return "slow done"

    def register(app: Durably) -> object:
        @app.workflow(name="publisher")
        async def publisher(ctx: Context) -> str:
            await ctx.write_stream("log", "before")
            await ctx.set_event("phase", "working")
            result = await ctx.step("slow", slow)
            await ctx.write_stream("log", "after")
            await ctx.set_event("phase", "done")
            await ctx.close_stream("log")
            return result

        return publisher

    first = app_factory()
    workflow = register(first)
    async with first:
        await first.start(workflow, workflow_id="pub-1")  # type: ignore[arg-type]
        await wait_for(lambda: runs == ["slow"])
        assert await first.get_event("pub-1", "phase") == "working"
    gate.set()
    second = app_factory()
    register(second)
    async with second:
        assert await second.handle("pub-1").result() == "slow done"
        assert [e async for e in second.read_stream("pub-1", "log")] == ["before", "after"]
        assert await second.get_event("pub-1", "phase") == "done"
        assert await published(second.store, "pub-1", OperationKind.STREAM) == [
            ("log", '"before"'),
            ("log", '"after"'),
        ]
        assert await published(second.store, "pub-1", OperationKind.EVENT) == [
            ("phase", '"working"'),
            ("phase", '"done"'),
        ]
    assert runs == ["slow", "slow"]


async def test_replay_that_publishes_something_else_is_not_deterministic(
    app_factory: Callable[..., Durably],
) -> None:
    """An event recorded where the code now writes a stream entry parks the workflow."""
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    first = app_factory()

    @first.workflow(name="changes", version="1")
    async def old(ctx: Context) -> None:
        await ctx.set_event("k", 1)
        await ctx.step("hold", hold)

    async with first:
        await first.start(old, workflow_id="changes-1")
        await first.get_event("changes-1", "k")
    gate.set()
    second = app_factory()

    @second.workflow(name="changes", version="1")
    async def new(ctx: Context) -> None:
        await ctx.write_stream("k", 1)
        await ctx.step("hold", hold)

    async with second:
        with pytest.raises(WorkflowFailedError, match="not deterministic"):
            await second.handle("changes-1").result()
        assert await second.handle("changes-1").status() is WorkflowStatus.PARKED


# -- other processes -----------------------------------------------------------------


async def test_a_second_app_on_the_same_database_reads_events_and_streams(
    store_factory: Callable[[], Store],
) -> None:
    """A reader with its own store connection and notifier (as another process has)
    sees what the workflow publishes, by polling (SQLite, memory) or the change feed
    (PostgreSQL), while the workflow runs."""
    fast = timedelta(milliseconds=20)
    writer = Durably(store_factory(), clock=SystemClock(), poll_interval=fast)
    reader = Durably(store_factory(), clock=SystemClock(), poll_interval=fast, worker=False)

    @writer.workflow(name="chat")
    async def chat(ctx: Context) -> str:
        await ctx.set_event("status", "thinking")
        await ctx.write_stream("tokens", "one")
        await ctx.wait_signal("continue")
        await ctx.write_stream("tokens", "two")
        await ctx.close_stream("tokens")
        await ctx.set_event("status", "answered")
        return "one two"

    async def read_all() -> list[str]:
        received: list[str] = []
        async for word in reader.read_stream("chat-1", "tokens"):
            received.append(word)
            if word == "one":
                await reader.send_signal("chat-1", "continue")
        return received

    async with writer, reader:
        await writer.start(chat, workflow_id="chat-1")
        assert await asyncio.wait_for(reader.get_event("chat-1", "status"), 30) == "thinking"
        assert await asyncio.wait_for(read_all(), 30) == ["one", "two"]
        assert await writer.handle("chat-1").result(timeout=30) == "one two"
        assert await reader.get_event("chat-1", "status") == "answered"


def test_a_sync_workflow_publishes_and_a_sync_app_reads(tmp_path: Path) -> None:
    """SyncContext and SyncDurably forward to the same operations."""
    app = SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}")

    @app.workflow(name="sync-publisher")
    def sync_publisher(ctx: SyncContext, count: int) -> int:
        ctx.set_event("count", count)
        for n in range(count):
            ctx.write_stream("numbers", n)
        ctx.close_stream("numbers")
        return count

    with app:
        handle = app.start(sync_publisher, 3)
        assert handle.result(timeout=30) == 3
        assert app.get_event(handle.workflow_id, "count", type=int) == 3
        assert list(app.read_stream(handle.workflow_id, "numbers")) == [0, 1, 2]
        stream = app.read_stream(handle.workflow_id, "numbers")
        assert next(stream) == 0
        stream.close()  # leaving early closes the async iteration on the loop


async def test_the_postgres_change_feed_announces_events_and_stream_entries(
    postgres_schema: str,
) -> None:
    """Recording an event or a stream entry notifies other processes; a step does not."""
    from durably.store.postgres import PostgresStore

    store = PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)
    await store.open()
    try:
        fence = await claimed(store)
        changes: AsyncGenerator[StoreChange, None] = store.changes()
        assert await asyncio.wait_for(anext(changes), 30) == StoreChange(kind="work")
        await store.record_operation(fence, operation(seq=0))  # a step: silent
        await send(store)  # a signal, to show that nothing came before it
        await store.record_operation(fence, operation(seq=1, kind=OperationKind.STREAM))
        assert await asyncio.wait_for(anext(changes), 30) == StoreChange("signal", "w-1")
        assert await asyncio.wait_for(anext(changes), 30) == StoreChange("progress", "w-1")
        await changes.aclose()
    finally:
        await store.close()


async def test_on_postgres_the_change_feed_wakes_a_reader_in_another_process(
    postgres_schema: str,
) -> None:
    """A reader that polls once an hour still gets the event at once: the writer's
    NOTIFY wakes it."""
    from durably.store.postgres import PostgresStore

    def connect() -> Store:
        return PostgresStore(postgres_url(), schema=postgres_schema, pool_size=2)

    writer = Durably(connect(), clock=SystemClock())
    reader = Durably(connect(), clock=SystemClock(), poll_interval=3600, worker=False)

    @writer.workflow(name="announces")
    async def announces(ctx: Context) -> None:
        await ctx.wait_signal("go")
        await ctx.set_event("answer", 42)
        await ctx.wait_signal("done")  # finishing would wake the reader too

    async with reader:
        # The feed's first change (its LISTEN is in place) is a "work" wake-up.
        await asyncio.wait_for(reader._notifier.work_due.wait(), 30)
        async with writer:
            await writer.start(announces, workflow_id="announces-1")
            answer = asyncio.ensure_future(reader.get_event("announces-1", "answer", timeout=None))
            waiting = reader._notifier._waiters
            for _ in range(3000):  # until the reader waits (a PostgreSQL round trip)
                if waiting.get(progress_key("announces-1")) or answer.done():
                    break
                await asyncio.sleep(0.01)
            assert not answer.done()
            await writer.send_signal("announces-1", "go")
            assert await asyncio.wait_for(answer, 30) == 42
            await writer.send_signal("announces-1", "done")
            await writer.handle("announces-1").result(timeout=30)


async def test_a_progress_change_wakes_readers_without_a_claim() -> None:
    """follow_changes turns "progress" into a wake-up of the workflow's readers only."""

    class Feed:
        async def changes(self) -> AsyncIterator[StoreChange]:
            yield StoreChange("progress", "w-1")

    notifier = Notifier(FakeClock())
    channel = progress_key("w-1")
    with notifier.watching(channel), notifier.watching("w-1"):
        await follow_changes(Feed(), notifier, lambda ids: None)  # type: ignore[arg-type]
        assert notifier.generation(channel) == 1
        assert notifier.generation("w-1") == 0
    assert not notifier.work_due.is_set()


# -- operator views ------------------------------------------------------------------


async def test_the_dashboard_timeline_names_events_and_streams(app: Durably) -> None:
    """Events and stream entries get their own bar kinds; a stream's end reads CLOSED."""

    @app.workflow()
    async def shows(ctx: Context) -> None:
        await ctx.set_event("e", 1)
        await ctx.write_stream("s", 2)
        await ctx.close_stream("s")

    handle = await app.start(shows)
    await handle.result()
    record = await app.store.get_workflow(handle.workflow_id)
    assert record is not None
    history = await app.store.load_history(handle.workflow_id)
    gantt = build_gantt(record, build_timeline(history, []), record.updated_at)
    assert [(bar.kind, bar.label) for bar in gantt.bars] == [
        ("event", "COMPLETED"),
        ("stream", "COMPLETED"),
        ("stream", "CLOSED"),
    ]
