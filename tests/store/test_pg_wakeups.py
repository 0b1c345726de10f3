"""Apps sharing a PostgreSQL database wake each other through LISTEN/NOTIFY; polling
is only the safety net for a notification lost.

The apps of the first tests poll once an hour and renew their leases every twenty
minutes: within a test's deadline only a notification can wake them. Work is handed
to the worker only once it has nothing left to do but wait (see :class:`WatchedStore`),
so that no claim pass of its own start can find the work first. The last test loses
a notification on purpose, and a short poll finds the work anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url, require_postgres

from durably import Context, Durably, WorkflowFailedError, WorkflowStatus
from durably.models import WorkflowRecord
from durably.store.base import StoreChange
from durably.store.postgres import PostgresStore

T = TypeVar("T")
Admin = psycopg.AsyncConnection[tuple[Any, ...]]

#: The apps' poll interval and lease: far beyond any deadline below.
HOUR = timedelta(hours=1)
#: Generous for a notification (milliseconds), nothing next to an hour.
DEADLINE = 10.0


def with_options(url: str, **options: str) -> str:
    """``url`` with libpq options added (e.g. an application_name to find its sessions)."""
    return psycopg.conninfo.make_conninfo(url, **options)


class WatchedStore(PostgresStore):
    """The store of the app that runs the workflows; it tells the test when that app
    has nothing left to do but wait for a notification (or its hourly poll).

    The app's claim loop makes a pass when it is asked to (its "work is due" flag):
    when its change feed delivers a change (but an event's or a stream's progress),
    and when one of its runs suspends. A pass
    calls ``claim_due_workflows`` first and ``next_wake_time`` last; one that starts
    after a request answers it. :attr:`idle` is set when a pass ends with no request
    left unanswered. (Should the app ask for passes some other way, the test could
    only pass more easily: never fail for it.)
    """

    def __init__(self, schema: str, application_name: str) -> None:
        url = with_options(postgres_url(), application_name=application_name)
        super().__init__(url, schema=schema, pool_size=2)
        self.listening = asyncio.Event()
        self.suspended = asyncio.Event()
        self.idle = asyncio.Event()
        self._requested = False

    def _request(self) -> None:
        self._requested = True
        self.idle.clear()

    async def claim_due_workflows(self, **options: Any) -> list[WorkflowRecord]:
        self._requested = False
        return await super().claim_due_workflows(**options)

    async def next_wake_time(self, **options: Any) -> int | None:
        try:
            return await super().next_wake_time(**options)
        finally:
            if not self._requested:
                self.idle.set()

    async def suspend_workflow(self, *args: Any, **options: Any) -> WorkflowRecord:
        record = await super().suspend_workflow(*args, **options)
        # The run asks for a pass as soon as this returns, before any other task runs.
        self._request()
        self.suspended.set()
        return record

    def changes(self) -> AsyncGenerator[StoreChange, None]:
        return self._watched(super().changes())

    async def _watched(
        self, changes: AsyncGenerator[StoreChange, None]
    ) -> AsyncGenerator[StoreChange, None]:
        async with contextlib.aclosing(changes):
            async for change in changes:
                yield change
                # The app asks for the next change: it has handled this one.
                if change.kind != "progress":
                    self._request()
                self.listening.set()


def register(app: Durably, step_entered: asyncio.Event) -> None:
    """The workflows of these tests, in every app."""

    @app.workflow(name="answer")
    async def answer(ctx: Context) -> int:
        return 42

    @app.workflow(name="approval")
    async def approval(ctx: Context) -> Any:
        return await ctx.wait_signal("approved")

    async def forever() -> None:
        step_entered.set()
        await asyncio.Event().wait()  # only a cancellation ends it

    @app.workflow(name="endless")
    async def endless(ctx: Context) -> None:
        await ctx.step("forever", forever)


@dataclass(frozen=True, slots=True, kw_only=True)
class Apps:
    """A client and a worker sharing a schema, both open and polling hourly."""

    client: Durably
    worker: Durably
    #: The worker's store.
    store: WatchedStore
    #: The application_name of the worker's sessions.
    name: str
    #: Set when the worker runs the step of ``endless``.
    step_entered: asyncio.Event


@contextlib.asynccontextmanager
async def two_apps(schema: str) -> AsyncIterator[Apps]:
    """A client and a worker on ``schema``; the worker is idle (its change feed
    listens, and the claim passes of its start are over)."""
    step_entered = asyncio.Event()
    client = Durably(
        PostgresStore(postgres_url(), schema=schema, pool_size=2),
        worker=False,
        poll_interval=HOUR,
        lease_duration=HOUR,
    )
    name = f"worker-{schema}"
    store = WatchedStore(schema, name)
    # inline_wait=0: a wait for a signal suspends the workflow (unloads it) at once.
    worker = Durably(store, poll_interval=HOUR, lease_duration=HOUR, inline_wait=0)
    for app in (client, worker):
        register(app, step_entered)
    async with client, worker:
        await wait_for(store.listening.wait(), "the worker's change feed listens")
        await wait_for(store.idle.wait(), "the worker's first claim passes end")
        yield Apps(client=client, worker=worker, store=store, name=name, step_entered=step_entered)


async def wait_for(awaitable: Awaitable[T], what: str) -> T:
    """``awaitable``'s result, or a failure naming ``what`` after :data:`DEADLINE`."""
    try:
        return await asyncio.wait_for(awaitable, DEADLINE)
    except TimeoutError:
        pytest.fail(f"not within {DEADLINE}s: {what}")


async def until(look: Callable[[], Awaitable[T]], expected: T, what: str) -> None:
    """Look (at the server's sessions) until ``look()`` returns ``expected``, for at
    most :data:`DEADLINE`."""

    async def holds() -> None:
        while await look() != expected:  # noqa: ASYNC110 - no event tells of the server's sessions
            await asyncio.sleep(0.02)

    await wait_for(holds(), what)


async def listeners(admin: Admin, application_name: str) -> list[int]:
    """The server pids of the LISTEN sessions of the app named ``application_name``."""
    cursor = await admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND query LIKE 'LISTEN%%'",
        (application_name,),
    )
    return [pid for (pid,) in await cursor.fetchall()]


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    """A session of the test's own on the server (to look at and end the apps')."""
    async with await psycopg.AsyncConnection.connect(require_postgres(), autocommit=True) as conn:
        yield conn


async def test_a_workflow_started_by_one_app_is_run_at_once_by_another(
    postgres_schema: str,
) -> None:
    """A start in the client is announced; the idle worker claims and runs it, and the
    client learns of the result the same way."""
    async with two_apps(postgres_schema) as apps:
        await apps.client.start("answer", workflow_id="started")
        assert await wait_for(apps.worker.handle("started").result(), "the worker ran it") == 42
        assert await wait_for(apps.client.handle("started").result(), "the client saw it") == 42


async def test_a_signal_sent_by_one_app_wakes_the_workflow_suspended_in_another(
    postgres_schema: str,
) -> None:
    """The workflow waits for its signal suspended (unloaded) in the worker; the signal
    the client sends makes it due and is announced: the worker resumes it at once."""
    async with two_apps(postgres_schema) as apps:
        await apps.client.start("approval", workflow_id="waiting")
        await wait_for(apps.store.suspended.wait(), "the workflow suspended in the worker")
        await wait_for(apps.store.idle.wait(), "the worker's pass after the suspension ends")
        assert (await apps.client.get_workflow("waiting")).status is WorkflowStatus.SUSPENDED

        await apps.client.send_signal("waiting", "approved", "ann")
        woken = apps.worker.handle("waiting").result()
        assert await wait_for(woken, "the signal woke the workflow") == "ann"


async def test_a_cancel_sent_by_one_app_stops_the_workflow_running_in_another(
    postgres_schema: str,
) -> None:
    """The worker runs a step that never ends by itself; the client's cancel is
    announced and the worker interrupts the step (its next heartbeat, which would
    also tell it, is twenty minutes away)."""
    async with two_apps(postgres_schema) as apps:
        await apps.client.start("endless", workflow_id="endless")
        await wait_for(apps.step_entered.wait(), "the worker runs the step")

        assert await apps.client.cancel("endless") is WorkflowStatus.RUNNING
        with pytest.raises(WorkflowFailedError) as failure:
            await wait_for(apps.worker.handle("endless").result(), "the cancel stopped the step")
        assert failure.value.status == WorkflowStatus.CANCELLED


async def test_an_app_whose_listen_session_is_ended_listens_again(
    postgres_schema: str, admin: Admin
) -> None:
    """pg_terminate_backend on the worker's LISTEN session: it connects and listens
    again (and looks at the store once, for what it missed), then is woken by the
    next start as before."""
    async with two_apps(postgres_schema) as apps:
        [ended] = await listeners(admin, apps.name)
        apps.store.listening.clear()
        await admin.execute("SELECT pg_terminate_backend(%s)", (ended,))
        await wait_for(apps.store.listening.wait(), "the worker listens again")
        await wait_for(apps.store.idle.wait(), "the worker's pass after reconnecting ends")
        assert ended not in await listeners(admin, apps.name)

        await apps.client.start("answer", workflow_id="after")
        assert await wait_for(apps.worker.handle("after").result(), "the worker ran it") == 42


@pytest.fixture
async def worker_role(admin: Admin) -> AsyncIterator[tuple[str, str]]:
    """A role of its own for a worker, with a password (so that it can be refused new
    sessions without disturbing other tests): its name and password; dropped after."""
    role, password = f"wakeups_{uuid.uuid4().hex[:16]}", uuid.uuid4().hex
    create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
    await admin.execute(create.format(sql.Identifier(role), sql.Literal(password)))
    try:
        yield role, password
    finally:
        await admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        await admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


async def test_a_short_poll_finds_work_whose_notification_was_lost(
    postgres_schema: str, admin: Admin, worker_role: tuple[str, str]
) -> None:
    """The worker's LISTEN session is ended while its role may not log in, so it cannot
    listen again: the start announced meanwhile reaches nobody, and the worker's
    200 ms poll finds the workflow anyway."""
    role, password = worker_role
    step_entered = asyncio.Event()
    client = Durably(
        PostgresStore(postgres_url(), schema=postgres_schema, pool_size=1),
        worker=False,
        poll_interval=HOUR,
    )
    register(client, step_entered)
    # One pooled session, opened while the role may still log in.
    url = with_options(postgres_url(), user=role, password=password, application_name=role)
    worker = Durably(
        PostgresStore(url, schema=postgres_schema, pool_size=1),
        poll_interval=timedelta(milliseconds=200),
    )
    register(worker, step_entered)

    async def sessions() -> tuple[int, int]:
        """The worker's LISTEN sessions, and its sessions in all."""
        cursor = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        row = await cursor.fetchone()
        assert row is not None
        return len(await listeners(admin, role)), int(row[0])

    login = sql.SQL("ALTER ROLE {} {}")
    async with client:  # creates the schema, for the role to be granted its tables
        for grant in (
            "GRANT USAGE ON SCHEMA {schema} TO {role}",
            "GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role}",
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
        ):
            await admin.execute(
                sql.SQL(grant).format(
                    schema=sql.Identifier(postgres_schema), role=sql.Identifier(role)
                )
            )
        async with worker:
            await until(sessions, (1, 2), "the worker's listener and pooled session")
            [ended] = await listeners(admin, role)
            await admin.execute(login.format(sql.Identifier(role), sql.SQL("NOLOGIN")))
            try:
                await admin.execute("SELECT pg_terminate_backend(%s)", (ended,))
                await until(sessions, (0, 1), "the worker's listener is gone")

                await client.start("answer", workflow_id="unannounced")
                result = worker.handle("unannounced").result()
                assert await wait_for(result, "the worker's poll found the workflow") == 42
                assert await listeners(admin, role) == [], "the worker listened again: no proof"
            finally:
                await admin.execute(login.format(sql.Identifier(role), sql.SQL("LOGIN")))
