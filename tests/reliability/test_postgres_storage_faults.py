"""PostgreSQL faults: connections killed in the middle of a transaction, every
connection of a running app killed again and again (what a server restart does to its
clients), an unreachable server, concurrent appends of one dedup key, and a signal
appended while its workflow suspends.

The shared test server cannot be restarted (other tests use it), so a restart is
played by ``pg_terminate_backend`` on every connection of the app under test, found by
the unique ``application_name`` it connects with: the server closes them all, as a
restart would, while the test's own connection stays. A real restart, of a private
server made for the test, is in test_postgres_restart.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url, require_postgres

import durably
from durably import Context, Durably, Observer, RetryPolicy, StoreError, WorkflowFailedError
from durably.errors import WorkflowFinishedError
from durably.models import TERMINAL_STATUSES
from durably.store.postgres import PostgresStore
from durably.store.postgres._connection import channel_name, with_retries
from durably.store.postgres.store import Q
from durably.testing._contract.records import NOW, SECOND, claimed


class Server:
    """The test's own view of the server: kill the app's connections, watch locks."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.tag = f"durably-test-{uuid.uuid4().hex[:12]}"
        self.url = f"{postgres_url()}?application_name={self.tag}"
        self.terminated = 0

    def store(self) -> PostgresStore:
        return PostgresStore(self.url, schema=self.schema, pool_size=4)

    async def connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        connection = await psycopg.AsyncConnection.connect(postgres_url(), autocommit=True)
        await connection.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema))
        )
        return connection

    async def wait_on_server(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]], condition: str, never: str
    ) -> None:
        """Return once one of the app's connections matches ``condition`` (SQL on
        ``pg_stat_activity``); the server loops, checking every 10 ms, for up to 30 s,
        then fails with ``never``.

        Each check first drops the transaction's snapshot of ``pg_stat_activity``: the
        loop is one transaction, which would otherwise see only the connections that
        existed when it began (a reconnection after a kill, never)."""
        probe = sql.SQL(
            """
            DO $$ BEGIN
              FOR i IN 1..3000 LOOP
                PERFORM pg_stat_clear_snapshot();
                IF EXISTS (SELECT 1 FROM pg_stat_activity
                           WHERE application_name = {tag} AND {condition}) THEN
                  RETURN;
                END IF;
                PERFORM pg_sleep(0.01);
              END LOOP;
              RAISE EXCEPTION {never};
            END $$;
            """
        ).format(tag=sql.Literal(self.tag), condition=sql.SQL(condition), never=sql.Literal(never))
        await connection.execute(probe)

    async def terminate_all(self) -> int:
        """Close every connection of the app, as a server restart does, once it has one
        (after an earlier kill, its pool and its LISTEN connection reconnect in 0.1 s)."""
        async with await self.connect() as connection:
            await self.wait_on_server(connection, "true", "the app never connected")
            cursor = await connection.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s) AS killed",
                (self.tag,),
            )
            row = await cursor.fetchone()
        killed = int(row[0]) if row else 0
        self.terminated += killed
        return killed

    async def wait_for_lock_wait(self) -> int:
        """The pid of the app's connection once it waits for a lock."""
        async with await self.connect() as connection:
            await self.wait_on_server(
                connection, "wait_event_type = 'Lock'", "the app never waited for a lock"
            )
            cursor = await connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                (self.tag,),
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])  # type: ignore[call-overload]

    async def terminate(self, pid: int) -> None:
        async with await self.connect() as connection:
            await connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
        self.terminated += 1


@pytest.fixture
def server(postgres_schema: str) -> Server:
    require_postgres()
    return Server(postgres_schema)


def register(app: Durably) -> None:
    @app.workflow(name="inbox")
    async def inbox(ctx: Context, count: int) -> list[object]:
        return [await ctx.wait_signal("item") for _ in range(count)]


@pytest.fixture
async def app(server: Server) -> AsyncIterator[Durably]:
    application = Durably(server.store(), inline_wait=0, poll_interval=timedelta(milliseconds=20))
    register(application)
    async with application:
        yield application


async def suspended(app: Durably, workflow_id: str) -> None:
    async for info in app.watch(workflow_id):
        if info.status is durably.WorkflowStatus.SUSPENDED:
            return


async def test_a_connection_killed_inside_a_transaction_is_retried_on_a_new_one(
    app: Durably, server: Server, record_property: Callable[[str, object], None]
) -> None:
    """append_signal (with a dedup key) waits inside its transaction for a row lock;
    its connection is killed there; the store retries on a new connection and the
    signal is appended once."""
    await app.start("inbox", 1, workflow_id="w")
    await suspended(app, "w")
    async with await server.connect() as holder:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM workflows WHERE workflow_id = 'w' FOR UPDATE")
        send = asyncio.ensure_future(app.send_signal("w", "item", "once", dedup_key="k"))
        await server.terminate(await server.wait_for_lock_wait())
        await holder.execute("COMMIT")
    assert await send is True
    assert await app.handle("w").result() == ["once"]
    assert [signal.payload for signal in await app.store.list_signals("w")] == ['"once"']
    record_property("faults_injected", server.terminated)


async def test_a_signal_without_dedup_key_whose_connection_died_is_refused_not_stored(
    app: Durably, server: Server, record_property: Callable[[str, object], None]
) -> None:
    """Without a dedup key a retry could deliver twice, so the send fails clearly
    instead; it was not stored (its transaction died), and sending again works."""
    await app.start("inbox", 1, workflow_id="w")
    await suspended(app, "w")
    async with await server.connect() as holder:
        await holder.execute("BEGIN")
        await holder.execute("SELECT 1 FROM workflows WHERE workflow_id = 'w' FOR UPDATE")
        send = asyncio.ensure_future(app.send_signal("w", "item", "maybe"))
        await server.terminate(await server.wait_for_lock_wait())
        await holder.execute("COMMIT")
    with pytest.raises(StoreError, match="lost its connection"):
        await send
    assert await app.store.list_signals("w") == []
    assert await app.send_signal("w", "item", "again") is True
    assert await app.handle("w").result() == ["again"]
    record_property("faults_injected", server.terminated)


async def test_consuming_a_signal_survives_its_connection_dying_mid_transaction(
    app: Durably, server: Server, record_property: Callable[[str, object], None]
) -> None:
    """The workflow's consume-and-record transaction waits for the signal's row lock;
    its connection is killed; the retry consumes the signal once and records it once."""
    gate = asyncio.Event()

    async def gated() -> None:
        await gate.wait()

    @app.workflow(name="gated-inbox")
    async def gated_inbox(ctx: Context) -> list[object]:
        # Held in a step until the signal's row is locked: the workflow cannot take
        # the signal before the lock is in place (it would never wait for it).
        await ctx.step("gate", gated)
        return [await ctx.wait_signal("item")]

    async with await server.connect() as holder:
        await app.start(gated_inbox, workflow_id="w")
        await holder.execute("BEGIN")
        await app.send_signal("w", "item", "locked", dedup_key="k")
        await holder.execute("SELECT 1 FROM signals WHERE workflow_id = 'w' FOR UPDATE")
        gate.set()
        await server.terminate(await server.wait_for_lock_wait())
        await holder.execute("COMMIT")
    assert await app.handle("w").result() == ["locked"]
    (signal,) = await app.store.list_signals("w")
    assert signal.consumed_seq == 1  # the wait after the gate's step (operation 0)
    record_property("faults_injected", server.terminated)


class StepCounter(Observer):
    """Kills every connection of the app when the recorded steps reach each threshold;
    one kill at a time, each once the app has connected again (two kills at once would
    find one set of connections, and the second none)."""

    def __init__(self, server: Server, thresholds: tuple[int, ...]) -> None:
        self.server = server
        self.thresholds = list(thresholds)
        self.steps = 0
        self.kills: list[asyncio.Future[int]] = []
        self.one_at_a_time = asyncio.Lock()

    async def kill(self) -> int:
        async with self.one_at_a_time:
            return await self.server.terminate_all()

    def on_step_complete(
        self, workflow_id: str, step_name: str, seq: int, duration: object
    ) -> None:
        self.steps += 1
        if self.thresholds and self.steps >= self.thresholds[0]:
            self.thresholds.pop(0)
            self.kills.append(asyncio.ensure_future(self.kill()))


async def test_every_connection_killed_again_and_again_mid_run_loses_nothing(
    server: Server, record_property: Callable[[str, object], None]
) -> None:
    """Twenty workflows with retries, compensation, sleeps and signals; all the app's
    connections (its pool and its LISTEN connection) are killed four times while they
    run, as a server restart does. Every workflow ends as it would have, no step runs
    twice, every signal is consumed once; then a new app on the same schema finds
    nothing left to do."""
    runs: Counter[str] = Counter()
    counter = StepCounter(server, (5, 15, 25, 32))  # of 36 steps in all
    app = Durably(
        server.store(),
        inline_wait=0,
        poll_interval=timedelta(milliseconds=20),
        observers=[counter],
        compensation_retry=RetryPolicy.fixed(3, 0.01),
    )

    async def book(n: int) -> str:
        runs[f"book-{n}"] += 1
        return f"room-{n}"

    async def release(room: str) -> None:
        runs[f"release-{room}"] += 1

    async def pay(n: int) -> int:
        runs[f"pay-{n}"] += 1
        if durably.current_step().attempt == 1:
            raise ConnectionError("gateway timeout")
        if n % 5 == 0:
            raise PermissionError("card declined")
        return n * 100

    @app.workflow(name="trip")
    async def trip(ctx: Context, n: int) -> str:
        room = await ctx.step("book", book, n, compensate=release)
        paid = await ctx.step(
            "pay", pay, n, retry=RetryPolicy.fixed(3, 0.05, dont_retry_on=(PermissionError,))
        )
        await ctx.sleep("settle", timedelta(milliseconds=50))
        note = await ctx.wait_signal("confirm", timeout=timedelta(minutes=1))
        return f"{room}:{paid}:{note}"

    outcomes: dict[int, str] = {}
    #: Declined trips that were compensated before their signal could be sent (while
    #: the connections were down, a send can take longer than such a trip).
    ended_first: set[int] = set()
    async with app:
        for n in range(20):
            await app.start(trip, n, workflow_id=f"trip-{n}")
            try:
                await app.send_signal(f"trip-{n}", "confirm", f"ok-{n}", dedup_key=f"confirm-{n}")
            except WorkflowFinishedError:
                assert n % 5 == 0, f"trip-{n} ended before its signal"
                ended_first.add(n)
        for n in range(20):
            try:
                outcomes[n] = await app.handle(f"trip-{n}").result()
            except WorkflowFailedError as error:
                outcomes[n] = f"{error.status}: {error.error_message}"
        killed = await asyncio.gather(*counter.kills)
        signals = [await app.store.list_signals(f"trip-{n}") for n in range(20)]
    assert outcomes == {
        n: "COMPENSATED: card declined" if n % 5 == 0 else f"room-{n}:{n * 100}:ok-{n}"
        for n in range(20)
    }
    assert len(killed) == 4 and all(count >= 1 for count in killed), killed
    for n in range(20):
        assert runs[f"book-{n}"] == 1 and runs[f"pay-{n}"] == 2
        assert runs[f"release-room-{n}"] == (1 if n % 5 == 0 else 0)
    consumed = [inbox for inbox in signals if inbox and inbox[0].consumed_seq is not None]
    assert [len(inbox) for inbox in signals] == [int(n not in ended_first) for n in range(20)]
    assert len(consumed) == 16  # the declined trips never waited for their signal

    again = Durably(server.store(), inline_wait=0)
    again.workflow(name="trip")(trip)
    async with again:
        assert (await again.recover()).resumed == ()
    record_property("faults_injected", server.terminated)


async def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    """Nothing listens on the port: opening fails at once with a StoreError that
    names the server and never shows the password."""
    require_postgres()
    app = Durably(PostgresStore("postgresql://durably:s3cr3t@127.0.0.1:1/test", schema="x"))
    with pytest.raises(StoreError) as refused:
        async with app:
            pass
    message = str(refused.value)
    assert "127.0.0.1" in message and '"port": "1"' in message, message
    assert "s3cr3t" not in message


async def slow_deadlock_detection(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    """Make ``connection`` (the test's) the last to look for deadlocks, so that when
    one forms, PostgreSQL aborts the app's transaction, never the test's."""
    await connection.execute("SET deadlock_timeout = '10s'")


def conflict_retries(caplog: pytest.LogCaptureFixture) -> int:
    return sum("retrying the transaction" in record.getMessage() for record in caplog.records)


async def test_concurrent_appends_of_one_dedup_key_never_fail(
    app: Durably, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Another transaction appends the same key at the same moment (played by the
    test's connection, holding the workflow row FOR SHARE as durably 0.x's appends did,
    its insert not yet committed, then waking the workflow): the app's send waits for
    it without deadlocking, is not an error, and reports the duplicate; the signal is
    stored once."""
    caplog.set_level(logging.INFO, logger="durably.store.postgres")
    await app.start("inbox", 1, workflow_id="w")
    await suspended(app, "w")
    async with await server.connect() as other:
        await slow_deadlock_detection(other)
        await other.execute("BEGIN")
        await other.execute("SELECT 1 FROM workflows WHERE workflow_id = 'w' FOR SHARE")
        await other.execute(
            "INSERT INTO signals (workflow_id, name, payload, serializer, dedup_key, created_at)"
            " VALUES ('w', 'item', '\"first\"', 'json', 'k', 0)"
        )
        send = asyncio.ensure_future(app.send_signal("w", "item", "second", dedup_key="k"))
        await server.wait_for_lock_wait()
        await other.execute("UPDATE workflows SET wake_at = wake_at WHERE workflow_id = 'w'")
        await other.execute("COMMIT")
    assert await send is False
    assert [signal.payload for signal in await app.store.list_signals("w")] == ['"first"']
    assert conflict_retries(caplog) == 0  # the send waited for the row lock: no deadlock


async def test_a_send_aborted_by_a_deadlock_is_retried(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A deadlock that aborts the app's append (the other transaction inserted the same
    key first, then updates the workflow row the app holds): the store runs the
    append again, which waits for the other to commit and reports the duplicate."""
    caplog.set_level(logging.INFO, logger="durably.store.postgres")
    quick = PostgresStore(
        f"{server.url}&options=-c%20deadlock_timeout%3D50ms", schema=server.schema, pool_size=2
    )
    app = Durably(quick, inline_wait=0, poll_interval=timedelta(milliseconds=20))
    register(app)
    async with app:
        await app.start("inbox", 1, workflow_id="w")
        await suspended(app, "w")
        async with await server.connect() as other:
            await slow_deadlock_detection(other)
            await other.execute("BEGIN")
            await other.execute(
                "INSERT INTO signals (workflow_id, name, payload, serializer, dedup_key,"
                " created_at) VALUES ('w', 'item', '\"first\"', 'json', 'k', 0)"
            )
            send = asyncio.ensure_future(app.send_signal("w", "item", "second", dedup_key="k"))
            await server.wait_for_lock_wait()  # the app's insert waits for ours
            # Waits for the app's row lock until the app's transaction is aborted.
            await other.execute("UPDATE workflows SET wake_at = wake_at WHERE workflow_id = 'w'")
            await other.execute("COMMIT")
        assert await send is False
        assert [signal.payload for signal in await app.store.list_signals("w")] == ['"first"']
        assert await app.send_signal("w", "item", "third") is True
        assert await app.handle("w").result() == ["first"]
    assert conflict_retries(caplog) >= 1
    record_count = sum("deadlock detected" in record.getMessage() for record in caplog.records)
    assert record_count >= 1


async def test_many_concurrent_sends_of_one_dedup_key_append_it_once(app: Durably) -> None:
    """Twelve sends of one key at once over the app's pool: none fails, one appends."""
    await app.start("inbox", 2, workflow_id="w")
    await suspended(app, "w")
    outcomes = await asyncio.gather(
        *(app.send_signal("w", "item", n, dedup_key="once") for n in range(12))
    )
    assert sorted(outcomes) == [False] * 11 + [True]
    assert len(await app.store.list_signals("w")) == 1


@pytest.mark.parametrize("first", ["append", "suspend"])
async def test_a_signal_appended_while_its_workflow_suspends_wakes_it(
    server: Server, first: str
) -> None:
    """The append of a signal and the suspension of the workflow that waits for it
    overlap, one waiting for the other's lock on the workflow row (held open by the
    test's connection, in either order): the workflow is due at once, its signal in
    the inbox. (Found by test_postgres_restart.py, where a restart made them overlap.)"""
    store = server.store()
    timeout = NOW + 300 * SECOND
    suspension = {"now": NOW + 2 * SECOND, "wake_at": timeout, "wait_reason": "signal 'go'"}
    await store.open()
    try:
        fence = await claimed(store, "w-1")
        async with await server.connect() as other:
            await other.execute("BEGIN")
            if first == "append":
                await other.execute(
                    Q["append_signal"],
                    {
                        "workflow_id": "w-1",
                        "name": "go",
                        "payload": '"now"',
                        "serializer": "json",
                        "dedup_key": None,
                        "now": NOW + SECOND,
                        "channel": channel_name(server.schema),
                        "terminal": sorted(status.value for status in TERMINAL_STATUSES),
                    },
                )
                waiting = asyncio.ensure_future(
                    store.suspend_workflow(fence, **suspension, waiting_for_signal="go")
                )
            else:
                await other.execute(
                    Q["suspend_workflow"],
                    {
                        "workflow_id": "w-1",
                        "owner": fence.owner,
                        "fence": fence.fence,
                        **suspension,
                        "signal": "go",
                    },
                )
                waiting = asyncio.ensure_future(
                    store.append_signal(
                        "w-1", "go", '"now"', serializer="json", dedup_key=None, now=NOW + SECOND
                    )
                )
            await server.wait_for_lock_wait()
            await other.execute("COMMIT")
        await waiting
        record = await store.get_workflow("w-1")
        inbox = await store.list_signals("w-1")
    finally:
        await store.close()
    assert record is not None and record.status is durably.WorkflowStatus.SUSPENDED
    assert [signal.consumed_seq for signal in inbox] == [None]
    assert record.wake_at is not None and record.wake_at <= NOW + 2 * SECOND, (
        f"not due: wake_at is the wait's timeout ({record.wake_at == timeout})"
    )


class _OnePool:
    """Stands in for the pool in :func:`with_retries` (no server needed)."""

    def __init__(self) -> None:
        self.checks = 0

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[object]:
        yield object()

    async def check(self) -> None:
        self.checks += 1


@pytest.mark.parametrize(
    "abort", [psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure]
)
async def test_a_transaction_aborted_by_the_server_is_retried_even_without_retry(
    abort: type[psycopg.Error],
) -> None:
    """A deadlock or serialization failure rolled the whole transaction back: it is run
    again, even for work that may not be retried after a lost connection."""
    calls: list[int] = []

    async def work(connection: object) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise abort("conflict with another transaction")
        return "done"

    pool = _OnePool()
    assert await with_retries(pool, work, retry=False, name="test") == "done"
    assert len(calls) == 3 and pool.checks == 0


async def test_a_transaction_aborted_again_and_again_is_a_store_error() -> None:
    """The retries are bounded: a conflict that never clears is a StoreError."""

    async def work(connection: object) -> str:
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    with pytest.raises(StoreError, match="deadlock detected"):
        await with_retries(_OnePool(), work, retry=True, name="test")
