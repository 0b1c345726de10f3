"""Security: stored data is never unpickled or executed unless the app asked for
pickle; every SQL value is bound, so names and ids with quotes, semicolons and ``%``
round-trip; the SQLite file and its WAL are private.

(At-rest encryption and redacted errors are checked in tests/unit/test_encryption.py
and tests/unit/test_redaction.py; see docs/guarantees.md.)
"""

from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import json
import os
import pickle
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from tests.conftest import postgres_url, require_postgres

import durably
from durably import (
    Context,
    Durably,
    PayloadError,
    PickleSerializer,
    SqliteStore,
    Store,
    WorkflowFailedError,
    WorkflowStatus,
)

SOURCE = Path(durably.__file__).parent


class Planted:
    """Unpickling this makes a directory: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (os.mkdir, (str(self.marker),))


def malicious(marker: Path) -> str:
    """A pickle (as the pickle serializer stores it) that creates ``marker``."""
    return base64.b64encode(pickle.dumps(Planted(marker))).decode("ascii")


# -- the stores -------------------------------------------------------------------------


class Database:
    """Plain SQL on the test's store, from outside durably."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind = kind
        self.target = target

    def execute(self, statement: str, *parameters: object) -> int:
        if self.kind == "sqlite":
            import sqlite3

            connection = sqlite3.connect(self.target)
            try:
                changed = connection.execute(statement, parameters).rowcount
                connection.commit()
            finally:
                connection.close()
            return changed
        with psycopg.connect(postgres_url(), autocommit=True) as connection:
            connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.target)))
            cursor = connection.execute(statement.replace("?", "%s"), parameters)  # type: ignore[arg-type]
            return cursor.rowcount

    def tables(self) -> list[str]:
        if self.kind == "sqlite":
            import sqlite3

            connection = sqlite3.connect(self.target)
            try:
                rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                return sorted(name for (name,) in rows)
            finally:
                connection.close()
        with psycopg.connect(postgres_url(), autocommit=True) as connection:
            rows = connection.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (self.target,),
            )
            return sorted(name for (name,) in rows)


@pytest.fixture(params=["sqlite", "postgres"])
def store_and_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Callable[[], Store], Database, str | None]]:
    """A factory of stores on one database, plain SQL on it, and its CLI URL."""
    if request.param == "sqlite":
        path = tmp_path / "durably.db"
        yield (lambda: SqliteStore(path)), Database("sqlite", str(path)), f"sqlite:///{path}"
        return
    require_postgres()
    schema = request.getfixturevalue("postgres_schema")
    from durably.store.postgres import PostgresStore

    yield (
        (lambda: PostgresStore(postgres_url(), schema=schema, pool_size=2)),
        Database("postgres", schema),
        None,
    )


# -- planted pickles --------------------------------------------------------------------


def register(app: Durably) -> dict[str, Any]:
    async def fetch() -> str:
        return "fetched"

    @app.workflow(name="waits")
    async def waits(ctx: Context, label: str) -> object:
        await ctx.step("fetch", fetch)
        return await ctx.wait_signal("go")

    @app.workflow(name="finishes")
    async def finishes(ctx: Context, label: str) -> str:
        return label

    @app.workflow(name="fails")
    async def fails(ctx: Context, label: str) -> str:
        raise ValueError(label)

    return {"waits": waits, "finishes": finishes, "fails": fails}


async def wait_for_status(app: Durably, workflow_id: str, *statuses: WorkflowStatus) -> None:
    async for info in app.watch(workflow_id):
        if info.status in statuses:
            return


async def plant_everywhere(
    make_store: Callable[[], Store], database: Database, marker: Path
) -> None:
    """Workflows in every state, then a malicious pickle in every payload column."""
    app = Durably(make_store(), inline_wait=0)
    register(app)
    async with app:
        for label in ("input", "step", "signal"):
            await app.start("waits", label, workflow_id=f"plant-{label}")
        for label in ("result", "disguised"):
            await app.run("finishes", label, workflow_id=f"plant-{label}")
        with contextlib.suppress(WorkflowFailedError):
            await app.run("fails", "error", workflow_id="plant-error")
        for label in ("input", "step", "signal"):
            await wait_for_status(app, f"plant-{label}", WorkflowStatus.SUSPENDED)
    client = Durably(make_store(), worker=False)
    async with client:
        await client.send_signal("plant-signal", "go", "harmless")
    pickled = malicious(marker)
    changes = [
        (
            "UPDATE workflows SET input = ?, serializer = 'pickle' WHERE workflow_id = ?",
            pickled,
            "plant-input",
        ),
        (
            "UPDATE operations SET result = ?, serializer = 'pickle' WHERE workflow_id = ?",
            pickled,
            "plant-step",
        ),
        (
            "UPDATE signals SET payload = ?, serializer = 'pickle' WHERE workflow_id = ?",
            pickled,
            "plant-signal",
        ),
        (
            "UPDATE workflows SET result = ?, serializer = 'pickle' WHERE workflow_id = ?",
            pickled,
            "plant-result",
        ),
        ("UPDATE workflows SET result = ? WHERE workflow_id = ?", pickled, "plant-disguised"),
        ("UPDATE workflows SET error = ? WHERE workflow_id = ?", pickled, "plant-error"),
    ]
    for statement, value, workflow_id in changes:
        assert database.execute(statement, value, workflow_id) >= 1, statement


PLANTED = ["input", "step", "signal", "result", "disguised", "error"]


def run_cli(url: str, arguments: list[str]) -> tuple[int, str]:
    """Run the operator CLI (``durably ... --json --db URL``); its exit code and output."""
    cli = Path(sys.executable).with_name("durably")
    shown = subprocess.run(
        [str(cli), *arguments, "--json", "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return shown.returncode, shown.stdout + shown.stderr


async def read_everything(app: Durably) -> list[str]:
    """Everything an app can do with the planted workflows; the errors it met."""
    met: list[str] = []
    for label in ("input", "step"):
        with contextlib.suppress(durably.WorkflowFinishedError):
            await app.send_signal(f"plant-{label}", "go", "please")
    for label in PLANTED:
        workflow_id = f"plant-{label}"
        try:
            await app.handle(workflow_id).result(timeout=timedelta(seconds=30))
        except (WorkflowFailedError, PayloadError) as error:
            met.append(f"{workflow_id}: {error}")
        await app.get_workflow(workflow_id)
        async for _ in app.watch(workflow_id):
            break
        await app.store.load_history(workflow_id)
        await app.store.list_signals(workflow_id)
    await app.list_workflows(limit=1000)
    return met


async def test_a_planted_pickle_is_never_executed(
    store_and_database: tuple[Callable[[], Store], Database, str | None],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """A pickle planted in a workflow's input, a step result, a signal, a result, an
    error and a failed attempt, read through recovery, results, queries, watching and
    the operator CLI by apps that did not opt in: it never runs. The same pickle does
    run for an app configured with PickleSerializer (so it is live)."""
    make_store, database, cli_url = store_and_database
    marker = tmp_path / "planted-pickle-ran"
    await plant_everywhere(make_store, database, marker)

    app = Durably(make_store(), inline_wait=0)
    register(app)
    async with app:
        met = await read_everything(app)
    assert not marker.exists(), "a stored pickle was executed"
    assert len(met) == len(PLANTED), met
    assert any("never unpickles" in error for error in met), met
    if cli_url is not None:
        for arguments in (["list"], *(["show", f"plant-{label}"] for label in PLANTED)):
            returncode, output = run_cli(cli_url, arguments)
            assert returncode == 0, output
        assert not marker.exists(), "the operator CLI executed a stored pickle"

    opted_in = Durably(make_store(), serializer=PickleSerializer(), worker=False)
    register(opted_in)
    async with opted_in:
        with contextlib.suppress(Exception):
            await opted_in.handle("plant-result").result()
    assert marker.exists(), "control: the planted pickle is live for an app that opted in"
    record_property("bad_inputs", len(PLANTED) + 1)


async def get(app: Any, path: str) -> tuple[int, str]:
    """One GET to an ASGI app, in process (no server, no HTTP client library)."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"dashboard.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("dashboard.test", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    (status,) = [message["status"] for message in sent if message["type"] == "http.response.start"]
    body = b"".join(
        message.get("body", b"") for message in sent if message["type"] == "http.response.body"
    )
    return status, body.decode("utf-8")


#: Where each planted pickle shows in the dashboard's JSON document of its workflow.
SHOWN_AT: dict[str, Callable[[dict[str, Any]], object]] = {
    "input": lambda document: document["workflow"]["input"],
    "step": lambda document: document["timeline"][0]["result"],
    "signal": lambda document: document["signals"][0]["payload"],
    "result": lambda document: document["workflow"]["result"],
    "disguised": lambda document: document["workflow"]["result"],
    "error": lambda document: document["workflow"]["error"],
}


async def test_the_dashboard_shows_a_planted_pickle_without_running_it(
    store_and_database: tuple[Callable[[], Store], Database, str | None],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    """The dashboard (its ASGI app, in process) serves the list, each planted
    workflow's page, its live fragment and its JSON: every answer is a 200, no pickle
    runs, and a pickled payload is described by its serializer and size, never
    decoded; a payload that is not the JSON it claims, or an unreadable error, is
    shown as such (as text)."""
    from durably.dashboard import Dashboard

    make_store, database, _ = store_and_database
    marker = tmp_path / "planted-pickle-ran"
    await plant_everywhere(make_store, database, marker)
    pickled = malicious(marker)
    dashboard = Dashboard(make_store(), token="test-token")  # noqa: S106 (a test value)
    async with dashboard.app.router.lifespan_context(dashboard.app):
        for path in ("/", "/?status=SUSPENDED", "/?fragment=1", "/api/counts"):
            status, page = await get(dashboard.app, path)
            assert status == 200, (path, page)
        status, page = await get(dashboard.app, "/")
        assert all(f"plant-{label}" in page for label in PLANTED), page
        status, text = await get(dashboard.app, "/api/workflows?limit=500")
        assert status == 200, text
        listed = {document["workflow_id"] for document in json.loads(text)["workflows"]}
        assert listed >= {f"plant-{label}" for label in PLANTED}, listed
        for label in PLANTED:
            workflow_id = f"plant-{label}"
            status, page = await get(dashboard.app, f"/workflows/{workflow_id}")
            assert status == 200 and workflow_id in page, page
            status, fragment = await get(dashboard.app, f"/workflows/{workflow_id}/live")
            assert status == 200 and 'id="status"' in fragment, fragment
            status, text = await get(dashboard.app, f"/api/workflows/{workflow_id}")
            assert status == 200, text
            shown = SHOWN_AT[label](json.loads(text))
            if label == "disguised":
                assert shown == {"unreadable_json": pickled}, shown
            elif label == "error":
                assert isinstance(shown, dict) and shown["type"] == "CorruptRecordError", shown
                assert "unreadable stored error" in shown["message"], shown
            else:
                assert shown == {"serializer": "pickle", "bytes": len(pickled)}, shown
                assert "&#34;serializer&#34;: &#34;pickle&#34;" in fragment, fragment
    assert not marker.exists(), "the dashboard executed a stored pickle"
    pickle.loads(base64.b64decode(pickled))  # noqa: S301 (the control: it is live)
    assert marker.exists(), "control: unpickling the planted payload runs it"
    record_property("bad_inputs", len(PLANTED))


DANGEROUS_ERRORS = [
    ("os", "system"),
    ("subprocess", "Popen"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("pickle", "loads"),
    ("antigravity", "open"),
    ("this", "d"),
    ("durably.errors", "_Abandon"),
    ("builtins", "SystemExit"),
    ("builtins", "KeyboardInterrupt"),
]


@pytest.mark.parametrize(("module", "name"), DANGEROUS_ERRORS)
async def test_a_planted_error_record_never_imports_or_calls_anything(
    tmp_path: Path, module: str, name: str
) -> None:
    """A recorded step error is rebuilt only as an already imported Exception class
    built from its message: an error record naming a function, a module never imported
    or a BaseException is replayed as StepError, and nothing is imported or called."""
    marker = tmp_path / "error-record-ran"
    path = tmp_path / "durably.db"
    app = Durably(SqliteStore(path), inline_wait=0)

    async def refuse() -> None:
        raise LookupError("refused")

    @app.workflow(name="tolerant")
    async def tolerant(ctx: Context) -> str:
        try:
            await ctx.step("refuse", refuse)
        except Exception as error:  # what a replay raises, reported as the result
            await ctx.sleep("pause", timedelta(milliseconds=1))
            return f"{type(error).__module__}.{type(error).__qualname__}"
        return "no error"

    async with app:
        assert await app.run(tolerant, workflow_id="first") == "builtins.LookupError"
        await app.start(tolerant, workflow_id="planted")
        await wait_for_status(app, "planted", WorkflowStatus.SUSPENDED, WorkflowStatus.COMPLETED)
    was_imported = module in sys.modules
    record = json.dumps(
        {"type": name, "module": module, "message": f"mkdir {marker}", "traceback": None}
    )
    database = Database("sqlite", str(path))
    database.execute(
        "UPDATE workflows SET status = 'SUSPENDED', result = NULL, "
        "finished_at = NULL, wake_at = 0, owner = NULL WHERE workflow_id = 'planted'"
    )
    assert (
        database.execute(
            "UPDATE operations SET error = ? WHERE workflow_id = 'planted' AND name = 'refuse'",
            record,
        )
        == 1
    )
    database.execute("DELETE FROM operations WHERE workflow_id = 'planted' AND seq > 0")
    replaying = Durably(SqliteStore(path), inline_wait=0)
    replaying.workflow(name="tolerant")(tolerant)
    async with replaying:
        result = await replaying.handle("planted").result()
    assert result == "durably.errors.StepError"
    assert not marker.exists()
    assert (module in sys.modules) == was_imported, f"{module} was imported"


def test_only_the_pickle_serializer_deserializes_with_code_execution() -> None:
    """No module of durably calls a deserializer that can run code (pickle, marshal,
    shelve, yaml.load, eval, exec), except PickleSerializer.loads, which an app must
    configure explicitly, and the ``exec`` of durably._fast_init, which runs source made
    of a dataclass's own field names (checked to be identifiers), never of data.
    Checked on the source, so new code paths are covered too."""
    dangerous = {
        ("pickle", "loads"),
        ("pickle", "load"),
        ("pickle", "Unpickler"),
        ("marshal", "loads"),
        ("marshal", "load"),
        ("shelve", "open"),
        ("yaml", "load"),
        ("yaml", "unsafe_load"),
        ("dill", "loads"),
        ("jsonpickle", "decode"),
    }
    found: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scope = {node: "" for node in ast.walk(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                for child in ast.walk(node):
                    scope[child] = f"{scope[child]}.{node.name}" if scope[child] else node.name
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            function = node.func
            name = None
            if isinstance(function, ast.Attribute) and isinstance(function.value, ast.Name):
                name = (function.value.id, function.attr)
            elif isinstance(function, ast.Name) and function.id in ("eval", "exec"):
                name = ("builtins", function.id)
            if name in dangerous or (name is not None and name[0] == "builtins"):
                found.append(f"{path.relative_to(SOURCE)}:{node.lineno} {scope[node]} {name}")
    assert len(found) == 2, found
    assert found[0].startswith("_fast_init.py:") and "('builtins', 'exec')" in found[0], found
    assert found[1].startswith("codec.py:") and "PickleSerializer.loads" in found[1], found


# -- SQL parameters ----------------------------------------------------------------------

NASTY = [
    "o'brien",
    'say "hi"',
    "'; DROP TABLE workflows; --",
    '"); DELETE FROM operations; --',
    "100%",
    "%s",
    "%(workflow_id)s",
    "%%",
    "a;b;c",
    "\\'",
    "back\\slash",
    "$1",
    ":name",
    "?",
    "{}",
    "`tick`",
    "ünïcødé ✓ 中文",
    "/* comment */",
    "x' OR '1'='1",
]
IDENTIFIER = st.one_of(
    st.sampled_from(NASTY),
    st.text(
        alphabet=st.characters(exclude_categories=["Cs", "Cc"], include_characters="'\";%\\"),
        min_size=1,
        max_size=40,
    ).filter(lambda text: text == text.strip() and text.strip() != ""),
)


@contextlib.asynccontextmanager
async def open_app(make_store: Callable[[], Store]) -> AsyncIterator[tuple[Durably, Any]]:
    app = Durably(make_store(), inline_wait=timedelta(seconds=5))
    names: dict[str, Any] = {}

    async def echo(value: str) -> str:
        return value

    def workflow_named(name: str) -> Any:
        if name not in names:

            async def body(ctx: Context, step: str, signal: str, value: str) -> list[object]:
                echoed = await ctx.step(step, echo, value)
                received = await ctx.wait_signal(signal)
                return [echoed, received]

            names[name] = app.workflow(name=name)(body)
        return names[name]

    async with app:
        yield app, workflow_named


async def test_names_ids_and_values_with_sql_syntax_round_trip(
    store_and_database: tuple[Callable[[], Store], Database, str | None],
    record_property: Callable[[str, object], None],
) -> None:
    """Workflow ids and names, step and signal names, dedup keys and payloads made of
    quotes, semicolons, ``%``, placeholders and comments are stored and read back
    exactly, found by the filters that use them, and no table is harmed."""
    make_store, database, _ = store_and_database
    tried = 0
    async with open_app(make_store) as (app, workflow_named):
        tables = database.tables()
        assert "workflows" in tables

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(
            workflow_id=IDENTIFIER,
            name=IDENTIFIER,
            step=IDENTIFIER,
            signal=IDENTIFIER,
            key=IDENTIFIER,
            value=IDENTIFIER,
        )
        def round_trip(
            workflow_id: str, name: str, step: str, signal: str, key: str, value: str
        ) -> None:
            nonlocal tried
            tried += 1
            unique = f"{workflow_id}·{uuid.uuid4().hex[:6]}"
            future = asyncio.run_coroutine_threadsafe(
                check(app, workflow_named(name), unique, name, step, signal, key, value), loop
            )
            future.result(timeout=60)

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(round_trip)
    assert database.tables() == tables
    assert tried >= 25
    record_property("bad_inputs", tried)


async def check(
    app: Durably,
    workflow: Any,
    workflow_id: str,
    name: str,
    step: str,
    signal: str,
    key: str,
    value: str,
) -> None:
    handle = await app.start(workflow, step, signal, value, workflow_id=workflow_id)
    assert await app.send_signal(workflow_id, signal, value, dedup_key=key) is True
    assert await app.send_signal(workflow_id, signal, "again", dedup_key=key) is False
    assert await handle.result() == [value, value]
    info = await app.get_workflow(workflow_id)
    assert (info.workflow_id, info.workflow_name) == (workflow_id, name)
    listed = await app.list_workflows(name=name, limit=1000)
    assert workflow_id in [listed_info.workflow_id for listed_info in listed]
    history = await app.store.load_history(workflow_id)
    assert [operation.name for operation in history.operations.values()] == [step, signal]
    signals = await app.store.list_signals(workflow_id)
    assert [(s.name, s.dedup_key) for s in signals] == [(signal, key)]


def test_no_sql_statement_is_built_from_values() -> None:
    """Every statement durably executes is a named query, a fixed text, or a psycopg
    ``sql.SQL`` composition; the only formatted ones insert an int() (PRAGMAs take no
    parameters) or a module constant (a savepoint name)."""
    problems: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("execute", "executemany", "executescript")
                and node.args
            ):
                continue
            statement = node.args[0]
            where = f"{path.relative_to(SOURCE)}:{node.lineno}"
            if isinstance(statement, ast.JoinedStr):
                values = [part for part in statement.values if isinstance(part, ast.FormattedValue)]
                safe = all(
                    (
                        isinstance(part.value, ast.Call)
                        and getattr(part.value.func, "id", "") == "int"
                    )
                    or (part.format_spec is not None and "d" in ast.unparse(part.format_spec))
                    or (isinstance(part.value, ast.Name) and part.value.id.lstrip("_").isupper())
                    for part in values
                )
                if not safe:
                    problems.append(f"{where}: {ast.unparse(statement)}")
            elif isinstance(statement, ast.BinOp) or (
                isinstance(statement, ast.Call)
                and isinstance(statement.func, ast.Attribute)
                and statement.func.attr == "format"
                and not ast.unparse(statement).startswith("sql.SQL(")
            ):
                problems.append(f"{where}: {ast.unparse(statement)}")
    assert problems == []


# -- file modes ---------------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
async def test_the_database_its_wal_and_shm_are_created_private(tmp_path: Path, mask: int) -> None:
    """Whatever the umask (even 000), the database, -wal and -shm files that durably
    creates are 0600, through a URL as through SqliteStore."""
    path = tmp_path / "private.db"
    with umask(mask):
        app = Durably(f"sqlite:///{path}")

        @app.workflow()
        async def hello(ctx: Context) -> str:
            return await ctx.step("greet", lambda: "hi")

        async with app:
            await app.run(hello)
            for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                assert file.exists(), file
                assert mode(file) == 0o600, (file, oct(mode(file)))


async def test_directories_created_for_the_database_are_private(tmp_path: Path) -> None:
    """Directories durably creates for a new database are 0700 whatever the umask."""
    path = tmp_path / "new" / "nested" / "app.db"
    with umask(0o000):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    assert mode(tmp_path / "new") == 0o700
    assert mode(path.parent) == 0o700
