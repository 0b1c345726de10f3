"""Versions: each executor resumes the versions it runs; ctx.patched() lets new code
branch while old histories replay the old path."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from durably import (
    ConfigurationError,
    Context,
    Durably,
    MemoryStore,
    SyncContext,
    WorkflowStatus,
    admin,
)
from durably.admin.documents import timeline_document
from durably.dashboard.gantt import build_gantt
from durably.models import OperationKind
from durably.registry import source_version
from durably.testing import FakeClock

HOUR = timedelta(hours=1)


async def wait_for_status(app: Durably, workflow_id: str, status: WorkflowStatus) -> None:
    """Poll until the workflow has ``status``, for at most 30 s of wall time: a plain
    ``def`` workflow's body runs in a thread, which a loaded machine may keep waiting
    longer than any fixed number of loop iterations."""
    deadline = time.monotonic() + 30
    while (await app.get_workflow(workflow_id)).status is not status:
        assert time.monotonic() < deadline, f"{workflow_id} never became {status}"
        await asyncio.sleep(0.001)


async def kinds(app: Durably, workflow_id: str) -> list[tuple[OperationKind, str]]:
    """The recorded body operations of a workflow, in order."""
    history = await app.store.load_history(workflow_id)
    return [(op.kind, op.name) for seq, op in sorted(history.operations.items()) if seq >= 0]


async def test_new_code_finishes_old_workflows_on_the_old_path_and_new_ones_on_the_new_path(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The upgrade: workflows started by v1 and waiting on a timer are resumed by v2
    (which declares it runs v1) and replay the old path; v2's own take the new one."""
    ran: list[tuple[str, str]] = []

    async def charge(order_id: str) -> None:
        ran.append((order_id, "charge"))

    async def fraud_check(order_id: str) -> None:
        ran.append((order_id, "fraud-check"))

    async def ship(order_id: str) -> None:
        ran.append((order_id, "ship"))

    old_app = app_factory()

    @old_app.workflow(name="order", version="1")
    async def order_v1(ctx: Context, order_id: str) -> str:
        await ctx.step("charge", charge, order_id)
        await ctx.sleep("cool-off", HOUR)
        await ctx.step("ship", ship, order_id)
        return "old path"

    async with old_app:
        for workflow_id in ("old-1", "old-2"):
            await old_app.start(order_v1, workflow_id, workflow_id=workflow_id)
            await wait_for_status(old_app, workflow_id, WorkflowStatus.SUSPENDED)

    new_app = app_factory()

    @new_app.workflow(name="order", version="2", also_runs=["1"])
    async def order_v2(ctx: Context, order_id: str) -> str:
        await ctx.step("charge", charge, order_id)
        path = "old path"
        if await ctx.patched("fraud-check"):
            await ctx.step("fraud-check", fraud_check, order_id)
            path = "new path"
        await ctx.sleep("cool-off", HOUR)
        await ctx.step("ship", ship, order_id)
        return path

    async with new_app:
        dry_run = await admin.replay_workflow(new_app.store, new_app, "old-1", now=clock.now())
        assert not dry_run.diverged, dry_run.message
        await new_app.start(order_v2, "new-1", workflow_id="new-1")
        await wait_for_status(new_app, "new-1", WorkflowStatus.SUSPENDED)
        clock.advance(HOUR)
        results = {
            workflow_id: await new_app.handle(workflow_id).result()
            for workflow_id in ("old-1", "old-2", "new-1")
        }
        assert results == {"old-1": "old path", "old-2": "old path", "new-1": "new path"}
        assert await kinds(new_app, "old-1") == [
            (OperationKind.STEP, "charge"),
            (OperationKind.SLEEP, "cool-off"),
            (OperationKind.STEP, "ship"),
        ]
        assert await kinds(new_app, "new-1") == [
            (OperationKind.STEP, "charge"),
            (OperationKind.PATCH, "fraud-check"),
            (OperationKind.STEP, "fraud-check"),
            (OperationKind.SLEEP, "cool-off"),
            (OperationKind.STEP, "ship"),
        ]
        versions = {w: (await new_app.get_workflow(w)).version for w in ("old-1", "new-1")}
        assert versions == {"old-1": "1", "new-1": "2"}
    assert [step for workflow_id, step in ran if workflow_id == "old-2"] == ["charge", "ship"]
    assert [step for workflow_id, step in ran if workflow_id == "new-1"] == [
        "charge",
        "fraud-check",
        "ship",
    ]


def register_report(app: Durably, version: str) -> None:
    """A workflow ``report`` that waits an hour and says which version finished it."""

    @app.workflow(name="report", version=version)
    async def report(ctx: Context) -> str:
        await ctx.sleep("wait", HOUR)
        return f"finished by version {version}"


async def test_a_worker_leaves_the_versions_it_does_not_run_to_a_worker_that_runs_them(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """A rolling deploy: a v2 worker leaves a due v1 workflow untouched (not failed, not
    parked); a v1 worker on the same database finishes it; v2 finishes its own, and
    runs what an outdated v1 client starts (it never ran, so it takes version 2)."""
    first = app_factory()
    register_report(first, "1")
    async with first:
        await first.start("report", workflow_id="old")
        await wait_for_status(first, "old", WorkflowStatus.SUSPENDED)
    new_worker = app_factory()
    register_report(new_worker, "2")
    async with new_worker:
        before = await new_worker.store.get_workflow("old")
        clock.advance(2 * HOUR)
        assert (await new_worker.recover()).resumed == ()
        assert await new_worker.store.get_workflow("old") == before
        client = app_factory(worker=False)
        register_report(client, "1")
        async with client:
            await client.start("report", workflow_id="fresh")
        await new_worker.start("report", workflow_id="new")
        for workflow_id in ("fresh", "new"):
            await wait_for_status(new_worker, workflow_id, WorkflowStatus.SUSPENDED)
        assert (await new_worker.get_workflow("fresh")).version == "2"
        old_worker = app_factory()
        register_report(old_worker, "1")
        async with old_worker:
            assert await old_worker.handle("old").result() == "finished by version 1"
            clock.advance(HOUR)
            assert await new_worker.handle("new").result() == "finished by version 2"
            assert await new_worker.handle("fresh").result() == "finished by version 2"


async def test_the_doctor_says_that_no_worker_runs_the_version_and_what_to_do(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """With the deployed app: its version, and the two ways out. Without it: no live
    executor resumes that version."""
    first = app_factory()
    register_report(first, "1")
    async with first:
        await first.start("report", workflow_id="old")
        await wait_for_status(first, "old", WorkflowStatus.SUSPENDED)
    deployed = app_factory()
    register_report(deployed, "2")
    async with deployed:
        clock.advance(2 * HOUR)
        now = clock.now()
        diagnosis = await admin.diagnose_workflow(deployed.store, "old", now=now, app=deployed)
        record = diagnosis.workflow
    assert diagnosis.is_problem
    (finding,) = [f for f in diagnosis.findings if "version" in f.summary]
    assert finding.is_problem
    assert finding.summary == (
        "it was recorded by version '1' of 'report'; the given app runs version '2': "
        "workers running this code never resume it, so it waits for one that does"
    )
    assert "keep a worker running the code of version '1'" in finding.actions[0]
    assert "@app.workflow(version='2', also_runs=['1'])" in finding.actions[1]
    assert "`durably replay old --app module:app`" in finding.actions[1]
    live = admin.ExecutorState(
        executor_id="e", hostname="elsewhere", pid=1, heartbeat_at=now, is_alive=True, reason=None
    )
    (unclaimed,) = admin.diagnose(record, now=now, executors=[live])
    assert unclaimed.is_problem
    assert "none of them seems to run version '1' of workflow 'report'" in unclaimed.summary
    assert "`durably doctor old --app module:app`" in unclaimed.actions[0]


async def test_a_patch_can_be_deleted_once_no_workflow_predates_it(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """Code without the ``if`` keeps only the new path: histories with the marker still
    replay (it is passed over); a history from before the patch would not."""

    async def greet(word: str) -> str:
        return word

    old_app = app_factory()

    @old_app.workflow(name="greet", version="1")
    async def greet_v1(ctx: Context) -> str:
        greeting = await ctx.step("say-hi", greet, "hi")
        await ctx.sleep("pause", HOUR)
        return greeting

    patched_app = app_factory()

    @patched_app.workflow(name="greet", version="2", also_runs=["1"])
    async def greet_v2(ctx: Context) -> str:
        if await ctx.patched("say-hello"):
            greeting = await ctx.step("say-hello", greet, "hello")
        else:
            greeting = await ctx.step("say-hi", greet, "hi")
        await ctx.sleep("pause", HOUR)
        return greeting

    async with old_app:
        await old_app.start(greet_v1, workflow_id="from-v1")
        await wait_for_status(old_app, "from-v1", WorkflowStatus.SUSPENDED)
    async with patched_app:
        await patched_app.start(greet_v2, workflow_id="from-v2")
        await wait_for_status(patched_app, "from-v2", WorkflowStatus.SUSPENDED)
    cleaned_app = app_factory()

    @cleaned_app.workflow(name="greet", version="3", also_runs=["2"])
    async def greet_v3(ctx: Context) -> str:
        greeting = await ctx.step("say-hello", greet, "hello")
        await ctx.sleep("pause", HOUR)
        return greeting

    async with cleaned_app:
        too_early = await admin.replay_workflow(
            cleaned_app.store, cleaned_app, "from-v1", now=clock.now()
        )
        assert too_early.diverged
        assert "the history records step 'say-hi'" in too_early.message
        clock.advance(HOUR)
        assert await cleaned_app.handle("from-v2").result() == "hello"
        assert (await cleaned_app.get_workflow("from-v1")).status is WorkflowStatus.SUSPENDED


def test_a_def_workflow_branches_with_patched_too() -> None:
    """SyncContext.patched: False when replaying a history from before the change, True
    live and when replaying its marker."""
    clock = FakeClock()
    store = MemoryStore()

    async def scenario() -> dict[str, object]:
        old_app = Durably(store, clock=clock)

        @old_app.workflow(name="sync-flow", version="1")
        def flow_v1(ctx: SyncContext) -> str:
            ctx.sleep("pause", HOUR)
            return "old"

        async with old_app:
            await old_app.start(flow_v1, workflow_id="old")
            await wait_for_status(old_app, "old", WorkflowStatus.SUSPENDED)
        new_app = Durably(store, clock=clock)

        @new_app.workflow(name="sync-flow", version="2", also_runs=["1"])
        def flow_v2(ctx: SyncContext) -> str:
            taken = ctx.patched("new-greeting")
            ctx.sleep("pause", HOUR)
            return "new" if taken else "old"

        async with new_app:
            await new_app.start(flow_v2, workflow_id="new")
            await wait_for_status(new_app, "new", WorkflowStatus.SUSPENDED)
            clock.advance(HOUR)
            return {w: await new_app.handle(w).result() for w in ("old", "new")}

    assert asyncio.run(scenario()) == {"old": "old", "new": "new"}


async def test_the_timeline_shows_the_patch_marker() -> None:
    """Operators see which change a workflow took: kind PATCH, named by the change."""
    app = Durably(MemoryStore(), clock=FakeClock())

    @app.workflow(name="marked", version="1")
    async def marked(ctx: Context) -> bool:
        return await ctx.patched("new-pricing")

    async with app:
        handle = await app.start(marked, workflow_id="m")
        assert await handle.result() is True
        detail = await admin.describe_workflow(app.store, "m")
    (entry,) = detail.timeline
    assert timeline_document(entry)["kind"] == "PATCH"
    assert timeline_document(entry)["name"] == "new-pricing"
    (bar,) = build_gantt(detail.workflow, detail.timeline, now=0).bars
    assert (bar.kind, bar.label) == ("patch", "NEW PATH")


def test_versions_are_declared_as_strings_and_also_runs_as_a_list() -> None:
    """A common slip (also_runs="1", version=2) is refused at registration, saying how."""
    app = Durably(MemoryStore())

    async def body(ctx: Context) -> None:
        return None

    with pytest.raises(ConfigurationError, match=r'also_runs=\["1"\]'):
        app.workflow(name="a", version="2", also_runs="1")(body)
    with pytest.raises(ConfigurationError, match=r"version of workflow 'b' must be a string"):
        app.workflow(name="b", version=2)(body)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must not be empty"):
        app.workflow(name="c", also_runs=[""])(body)
    app.workflow(name="d", version="3", also_runs=["1", "2", "3"])(body)
    assert app.registry.versions()["d"] == ("3", "1", "2")


# -- the version by default: a hash of the workflow's source ----------------------------


def register_nightly_v1(app: Durably) -> None:
    @app.workflow(name="nightly")
    async def nightly(ctx: Context) -> str:
        await ctx.sleep("wait", HOUR)
        return "first body"


def register_nightly_v2(app: Durably) -> None:
    @app.workflow(name="nightly")
    async def nightly(ctx: Context) -> str:
        await ctx.sleep("wait", HOUR)
        return "edited body"


async def test_without_a_version_the_hash_of_the_source_is_recorded(
    app_factory: Callable[..., Durably],
) -> None:
    """No version=: the workflow records the first 12 hex digits of the SHA-256 of its
    source (decorator included), the same for the same source."""
    app = app_factory()
    register_nightly_v1(app)
    definition = app.registry.workflows["nightly"]
    source = inspect.getsource(definition.fn)
    expected = hashlib.sha256(source.encode()).hexdigest()[:12]
    assert source.lstrip().startswith('@app.workflow(name="nightly")')
    assert definition.version == source_version(definition.fn) == expected
    again = app_factory()
    register_nightly_v1(again)
    assert again.registry.workflows["nightly"].version == expected
    async with app:
        await app.start("nightly", workflow_id="n")
        assert (await app.get_workflow("n")).version == expected


async def test_an_edited_body_gets_another_version_that_does_not_resume_the_old_workflow(
    app_factory: Callable[..., Durably], clock: FakeClock
) -> None:
    """The same name with another body is another version: an app running the edited
    code leaves the workflow the first body started alone; the first body finishes it."""
    first = app_factory()
    register_nightly_v1(first)
    async with first:
        await first.start("nightly", workflow_id="old")
        await wait_for_status(first, "old", WorkflowStatus.SUSPENDED)
    edited = app_factory()
    register_nightly_v2(edited)
    old_version = first.registry.workflows["nightly"].version
    new_version = edited.registry.workflows["nightly"].version
    assert len(new_version) == 12 and new_version != old_version
    async with edited:
        before = await edited.store.get_workflow("old")
        clock.advance(2 * HOUR)
        assert (await edited.recover()).resumed == ()
        assert await edited.store.get_workflow("old") == before
        await edited.start("nightly", workflow_id="new")
        await wait_for_status(edited, "new", WorkflowStatus.SUSPENDED)
        assert (await edited.get_workflow("new")).version == new_version
    again = app_factory()
    register_nightly_v1(again)
    async with again:
        assert await again.handle("old").result() == "first body"
        assert (await again.get_workflow("new")).status is WorkflowStatus.SUSPENDED


async def test_a_workflow_whose_source_cannot_be_read_records_an_empty_version() -> None:
    """No source to hash (a function made by exec): the version is "" and it runs."""
    namespace: dict[str, Any] = {}
    code = "async def generated(ctx):\n    return 'made at runtime'\n"
    exec(compile(code, "<generated>", "exec"), namespace)  # noqa: S102 - no file to read
    assert source_version(namespace["generated"]) == ""
    assert source_version(len) == ""  # a builtin has no Python source either
    app = Durably(MemoryStore())
    app.workflow(name="generated")(namespace["generated"])
    assert app.registry.versions() == {"generated": ("",)}
    async with app:
        assert await app.run("generated", workflow_id="g") == "made at runtime"
        assert (await app.get_workflow("g")).version == ""
