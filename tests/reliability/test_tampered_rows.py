"""Stored rows changed behind durably's back: truncated JSON, an unknown serializer, a
pickle nobody asked for, an operation kind this version does not know, an unreadable
stored error, a schema version that does not match the tables.

Three workflows sleep; one of them is tampered with while no app runs; a new app
wakes them. The others must finish as if nothing happened; the tampered one must get
a clear error and be left for an operator (``PARKED``), never compensated on the
strength of a corrupt record.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import pickle
import sqlite3
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durably import (
    Context,
    CorruptRecordError,
    Durably,
    SchemaVersionError,
    SqliteStore,
    Store,
    StoreError,
    WorkflowStatus,
)
from durably.models import History, OperationRecord
from durably.testing import FakeClock

IDS = ("order-1", "order-2", "order-3")
TAMPERED = "order-2"


class Shop:
    """The app: each order reserves (compensated by a release), charges, tolerates a
    failing coupon check, sleeps a minute, then ships."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.runs: Counter[str] = Counter()
        self.app = Durably(
            SqliteStore(path), clock=clock, poll_interval=timedelta(seconds=1), inline_wait=0
        )

        async def reserve(order: str) -> str:
            self.runs[f"reserve:{order}"] += 1
            return f"hold-{order}"

        async def release(hold: str) -> None:
            self.runs[f"release:{hold}"] += 1

        async def charge(order: str) -> int:
            self.runs[f"charge:{order}"] += 1
            return 4200

        async def check_coupon(order: str) -> None:
            raise LookupError(f"no coupon for {order}")

        async def ship(order: str) -> str:
            self.runs[f"ship:{order}"] += 1
            return f"parcel-{order}"

        @self.app.workflow(name="order")
        async def order(ctx: Context, order_id: str) -> str:
            await ctx.step("reserve", reserve, order_id, compensate=release)
            amount = await ctx.step("charge", charge, order_id)
            with contextlib.suppress(LookupError):
                await ctx.step("check-coupon", check_coupon, order_id)
            await ctx.sleep("settle", timedelta(minutes=1))
            parcel = await ctx.step("ship", ship, order_id)
            return f"{parcel}:{amount}"


async def wait_for(condition: Callable[[], object]) -> None:
    """Yield to the loop until ``condition()`` (an awaitable's result) is true."""
    for _ in range(10_000):
        if await condition():  # type: ignore[misc]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def sleeping_orders(path: Path, clock: FakeClock) -> Shop:
    """Three orders run up to their sleep; the app is then closed."""
    shop = Shop(path, clock)
    async with shop.app:
        for order_id in IDS:
            await shop.app.start("order", order_id, workflow_id=order_id)

        async def all_suspended() -> bool:
            statuses = [await shop.app.handle(i).status() for i in IDS]
            return all(status is WorkflowStatus.SUSPENDED for status in statuses)

        await wait_for(all_suspended)
    return shop


def tamper(path: Path, statement: str, *parameters: object) -> None:
    connection = sqlite3.connect(path)
    try:
        changed = connection.execute(statement, parameters).rowcount
        connection.commit()
    finally:
        connection.close()
    assert changed == 1, statement


PICKLE = base64.b64encode(pickle.dumps(4200)).decode("ascii")
OPERATION = "UPDATE operations SET {} = ? WHERE workflow_id = ? AND name = ?"
WORKFLOW = "UPDATE workflows SET {} = ? WHERE workflow_id = ?"
#: (column changed, its new value, the operation or None for the workflow row).
TAMPERS = {
    "wrong-type-result": ("result", '"forty-two"', "charge", "does not fit"),
    "truncated-json": ("result", '{"amount": 42', "charge", "corrupt|cannot read"),
    "unknown-serializer": ("serializer", "msgpack", "charge", "unknown serializer"),
    "unrequested-pickle": ("serializer", "pickle", "charge", "pickle"),
    "unknown-operation-kind": ("kind", "TELEPORT", "charge", "cannot be read"),
    "unreadable-stored-error": ("error", '{"type": "LookupErr', "check-coupon", "unreadable"),
    "truncated-input": ("input", '{"order_id": "ord', None, "corrupt|cannot read"),
    "unknown-input-serializer": ("serializer", "yaml", None, "unknown serializer"),
}


def apply(path: Path, name: str) -> None:
    column, value, operation, _ = TAMPERS[name]
    if name == "unrequested-pickle":
        tamper(path, OPERATION.format("result"), PICKLE, TAMPERED, operation)
    if operation is None:
        tamper(path, WORKFLOW.format(column), value, TAMPERED)
    else:
        tamper(path, OPERATION.format(column), value, TAMPERED, operation)


async def wake_everything(path: Path, clock: FakeClock) -> tuple[Shop, dict[str, object]]:
    """A new app; the minute passes; wait for the untouched orders; return the shop and
    the untouched orders' results."""
    shop = Shop(path, clock)
    results: dict[str, object] = {}
    async with shop.app:
        clock.advance(timedelta(minutes=1))
        for order_id in IDS:
            if order_id != TAMPERED:
                results[order_id] = await shop.app.handle(order_id).result()
        await settle(shop.app, clock)
    return shop, results


async def settle(app: Durably, clock: FakeClock) -> None:
    """Let the tampered order reach whatever state it reaches: ticks of the virtual
    clock (a run stopped by a store error is retried one poll interval later)."""
    for _ in range(5):
        for _ in range(200):
            await asyncio.sleep(0)
        clock.advance(timedelta(seconds=1))


@pytest.mark.parametrize("name", sorted(TAMPERS))
async def test_a_tampered_row_never_stops_the_other_workflows(
    name: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """The untouched orders finish with their results, nothing of theirs runs twice;
    the tampered order does not complete as if its record were sound."""
    path, clock = tmp_path / "durably.db", FakeClock()
    first = await sleeping_orders(path, clock)
    apply(path, name)
    shop, results = await wake_everything(path, clock)
    assert results == {
        order_id: f"parcel-{order_id}:4200" for order_id in IDS if order_id != TAMPERED
    }
    runs = first.runs + shop.runs
    for order_id in IDS:
        assert runs[f"reserve:{order_id}"] == 1
        assert runs[f"charge:{order_id}"] == 1
    connection = sqlite3.connect(path)
    try:
        (status,) = connection.execute(
            "SELECT status FROM workflows WHERE workflow_id = ?", (TAMPERED,)
        ).fetchone()
    finally:
        connection.close()
    assert status != "COMPLETED"
    record_property("bad_inputs", 1)


@pytest.mark.parametrize("name", sorted(TAMPERS))
async def test_a_tampered_row_parks_its_workflow_with_a_clear_error(
    name: str, tmp_path: Path
) -> None:
    """The tampered order is PARKED, its error names it and the problem, and none of
    its compensations ran (nothing was wrong with the business, only with a row)."""
    path, clock = tmp_path / "durably.db", FakeClock()
    first = await sleeping_orders(path, clock)
    apply(path, name)
    shop, _ = await wake_everything(path, clock)
    async with shop.app:
        info = await shop.app.handle(TAMPERED).info()
    runs = first.runs + shop.runs
    assert runs[f"release:hold-{TAMPERED}"] == 0, "a compensation ran because of a corrupt row"
    assert info.status is WorkflowStatus.PARKED, info
    assert info.error is not None
    assert TAMPERED in info.error.message
    assert any(word in info.error.message for word in TAMPERS[name][3].split("|"))


# -- the schema version -----------------------------------------------------------------


async def finished_database(path: Path) -> bytes:
    clock = FakeClock()
    await sleeping_orders(path, clock)
    await wake_everything(path, clock)
    return file_bytes(path)


async def test_a_schema_version_newer_than_this_code_is_refused_untouched(
    tmp_path: Path,
) -> None:
    """user_version set beyond what this durably knows: SchemaVersionError that says
    to upgrade; not one byte changes."""
    path = tmp_path / "durably.db"
    await finished_database(path)
    tamper_version(path, 99)
    content = file_bytes(path)
    with pytest.raises(SchemaVersionError, match="upgrade durably"):
        async with Durably(SqliteStore(path)):
            pass
    assert file_bytes(path) == content


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def tamper_version(path: Path, version: int) -> None:
    connection = sqlite3.connect(path)
    try:
        connection.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        connection.close()


@pytest.mark.parametrize("version", [0, 1])
async def test_a_schema_version_older_than_the_tables_is_a_clear_error(
    tmp_path: Path, version: int
) -> None:
    """user_version set below the real schema: a clear error naming the version."""
    path = tmp_path / "durably.db"
    await finished_database(path)
    tamper_version(path, version)
    content = file_bytes(path)
    with pytest.raises(StoreError) as refused:
        async with Durably(SqliteStore(path)):
            pass
    assert file_bytes(path) == content
    assert isinstance(refused.value, SchemaVersionError), refused.value
    assert "version" in str(refused.value)


async def test_the_version_the_schema_error_names_opens_the_database(tmp_path: Path) -> None:
    """The error says which version the tables have; setting user_version to it, as
    the message says, opens the database with every workflow intact."""
    path = tmp_path / "durably.db"
    await finished_database(path)
    tamper_version(path, 1)
    with pytest.raises(SchemaVersionError) as refused:
        async with Durably(SqliteStore(path)):
            pass
    message = str(refused.value)
    assert "records schema version 1" in message
    suggested = message.split("PRAGMA user_version = ")[-1].split("'")[0]
    tamper_version(path, int(suggested))
    async with Durably(SqliteStore(path)) as app:
        assert sorted(info.workflow_id for info in await app.list_workflows()) == list(IDS)


async def test_tables_durably_does_not_know_do_not_stop_a_migration(tmp_path: Path) -> None:
    """A database at an older version that also holds the user's own table migrates
    (only durably's tables are compared with the recorded version)."""
    from durably.store.sqlite._migrate import latest_version, migrate

    path = tmp_path / "durably.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(connection, up_to=1) == 1
        connection.execute("CREATE TABLE audit_log (line TEXT)")
    finally:
        connection.close()
    async with Durably(SqliteStore(path)):
        pass
    connection = sqlite3.connect(path)
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    finally:
        connection.close()
    assert version == latest_version()


async def test_tables_that_match_no_version_are_named_as_such(tmp_path: Path) -> None:
    """A durably table missing from a database that claims a version: the error says
    the tables match no version and to restore a backup; the file is untouched."""
    path = tmp_path / "durably.db"
    await finished_database(path)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("DROP TABLE executors")
        connection.execute("PRAGMA user_version = 1")
    finally:
        connection.close()
    content = file_bytes(path)
    with pytest.raises(SchemaVersionError, match=r"match no version .* restore the file"):
        async with Durably(SqliteStore(path)):
            pass
    assert file_bytes(path) == content


# -- corrupt records on every store, read back by replay --------------------------------


class TamperedHistory:
    """Wraps a store: once armed, the history it loads for ``workflow_id`` has its
    operation ``name`` changed by ``change`` (what a tool editing the row would leave),
    or, with ``unreadable``, the load fails as a SQL store fails on a row it cannot read
    (store/_rows.py)."""

    def __init__(self, inner: Store, workflow_id: str) -> None:
        self.inner = inner
        self.workflow_id = workflow_id
        self.change: Callable[[OperationRecord], OperationRecord] | None = None
        self.name = ""
        self.unreadable = False
        self.loads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def load_history(self, workflow_id: str) -> History:
        history: History = await self.inner.load_history(workflow_id)
        if workflow_id != self.workflow_id:
            return history
        self.loads += 1
        if self.unreadable:
            raise CorruptRecordError(
                f"stored operation 1 of workflow {workflow_id!r} cannot be read ('TELEPORT' "
                f"is not a valid OperationKind); it is left untouched for an operator",
                workflow_id=workflow_id,
            )
        change = self.change
        if change is None:
            return history
        operations = {
            seq: change(record) if record.name == self.name else record
            for seq, record in history.operations.items()
        }
        return History(operations=operations, attempts=history.attempts)


class Draws:
    """A workflow that draws a recorded random number, runs a step whose failure it
    catches (``except Exception``), has a compensation, then waits for a signal."""

    def __init__(self, store: TamperedHistory, clock: FakeClock, *, fetch_fails: bool) -> None:
        self.app = Durably(store, clock=clock, inline_wait=0)  # type: ignore[arg-type]
        self.fetches = 0
        self.fallbacks: Counter[str] = Counter()
        self.undone = 0

        async def fetch() -> int:
            self.fetches += 1
            if fetch_fails:
                raise LookupError("no such item")
            return 42

        async def undo() -> None:
            self.undone += 1

        @self.app.workflow(name="draws")
        async def draws(ctx: Context) -> str:
            drawn = await ctx.random()
            ctx.on_failure(undo)
            try:
                fetched = await ctx.step("fetch", fetch)
            except Exception:
                self.fallbacks[ctx.workflow_id] += 1
                fetched = -1
            await ctx.wait_signal("go")
            return f"{drawn}:{fetched}"


CORRUPTIONS = {
    # name: (operation, the change, its seq, fetch fails, words of the cause)
    "recorded-random-truncated": ("random", {"result": '{"trunc'}, 0, False, "cannot read"),
    "step-result-truncated": ("fetch", {"result": "[1, 2"}, 1, False, "cannot read"),
    "step-result-unknown-serializer": (
        "fetch",
        {"serializer": "msgpack"},
        1,
        False,
        "unknown serializer",
    ),
    "recorded-random-wrong-type": ("random", {"result": '"high"'}, 0, False, "does not fit"),
    "step-error-unreadable": ("fetch", {"error": '{"type": "Looku'}, 1, True, "unreadable"),
    "step-error-missing": ("fetch", {"error": None}, 1, True, "error is missing"),
}


async def drive_until(app: Durably, clock: FakeClock, workflow_id: str, *statuses: str) -> str:
    """Let the app work, one virtual second at a time, until the workflow is in one of
    ``statuses`` (bounded); return its status."""
    status = ""
    for _ in range(30):
        for _ in range(100):
            status = str(await app.handle(workflow_id).status())
            if status in statuses and workflow_id not in app._runs:
                return status
            await asyncio.sleep(0)
        clock.advance(timedelta(seconds=1))
    raise AssertionError(f"{workflow_id} is {status}, never {statuses}")


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
async def test_a_corrupt_replayed_record_parks_the_workflow_on_every_store(
    name: str, store_factory: Callable[[], Store], clock: FakeClock
) -> None:
    """The replayed record cannot be read back: the workflow is PARKED with an error
    naming it, the operation's number and what to do; the body's ``except Exception``
    never sees it, nothing after it runs and no compensation runs; another workflow
    of the same code finishes."""
    operation, changes, seq, fetch_fails, cause = CORRUPTIONS[name]
    store = TamperedHistory(store_factory(), "tampered")
    draws = Draws(store, clock, fetch_fails=fetch_fails)
    async with draws.app as app:
        for workflow_id in ("tampered", "sound"):
            await app.start("draws", workflow_id=workflow_id)
            await drive_until(app, clock, workflow_id, "SUSPENDED")
        fallbacks = draws.fallbacks["tampered"]
        store.name = operation
        store.change = lambda record: dataclasses.replace(record, **changes)  # type: ignore[arg-type]
        for workflow_id in ("tampered", "sound"):
            await app.send_signal(workflow_id, "go")
        assert await drive_until(app, clock, "tampered", "PARKED") == "PARKED"
        assert str(await app.handle("sound").result()).endswith("-1" if fetch_fails else ":42")
        info = await app.handle("tampered").info()
    assert info.error is not None and info.error.type == "CorruptRecordError"
    message = info.error.message
    assert "workflow 'tampered' is parked: its recorded" in message, message
    assert f"(operation #{seq})" in message and cause in message, message
    assert "durably show tampered" in message
    assert f"durably retry tampered --from-step {seq}" in message
    assert draws.fallbacks["tampered"] == fallbacks  # its except clause never saw it
    assert draws.fetches == 2  # once per workflow, never again
    assert draws.undone == 0


async def test_a_history_the_store_cannot_read_parks_the_workflow_once(
    store_factory: Callable[[], Store], clock: FakeClock
) -> None:
    """A row the store cannot turn into a record (CorruptRecordError from load_history)
    parks the workflow at the first try, with what to do: it is not re-run forever as
    if the store had failed for a moment."""
    store = TamperedHistory(store_factory(), "tampered")
    draws = Draws(store, clock, fetch_fails=False)
    async with draws.app as app:
        await app.start("draws", workflow_id="tampered")
        await drive_until(app, clock, "tampered", "SUSPENDED")
        store.unreadable, store.loads = True, 0
        await app.send_signal("tampered", "go")
        assert await drive_until(app, clock, "tampered", "PARKED") == "PARKED"
        for _ in range(3):  # a few more poll intervals: nobody runs it again
            clock.advance(timedelta(seconds=1))
            for _ in range(100):
                await asyncio.sleep(0)
        info = await app.handle("tampered").info()
    assert store.loads == 1
    assert info.error is not None
    assert "workflow 'tampered' is parked: stored operation 1" in info.error.message
    assert "durably resume tampered" in info.error.message
    assert draws.undone == 0
