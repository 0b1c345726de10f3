"""User code as a typed application writes it; `mypy --strict` must accept it and infer
the types asserted below (checked by tests/public_types/test_public_types.py, never imported)."""

from __future__ import annotations

from typing import assert_type

from durably import Context, Durably, SyncDurably, SyncWorkflowHandle, WorkflowHandle

app = Durably("sqlite:///typed.db")


@app.workflow()
async def add_one(ctx: Context, value: int) -> int:
    return await ctx.step("add", _plus_one, value)


async def _plus_one(value: int) -> int:
    return value + 1


async def client() -> None:
    assert_type(await app.run(add_one, 1), int)
    handle = await app.start(add_one, 1)
    assert_type(handle, WorkflowHandle[int])
    assert_type(await handle.result(), int)
    assert_type(await app.get_event("id", "progress", type=int), int | None)


sync_app = SyncDurably("sqlite:///typed-sync.db")


@sync_app.workflow()
def shout(ctx: object, text: str) -> str:
    return text.upper()


async def queued_client() -> None:
    handle = await app.enqueue(add_one, 1, queue="default")
    assert_type(handle, WorkflowHandle[int])


def sync_client() -> None:
    assert_type(sync_app.run(shout, "hi"), str)
    handle = sync_app.start(shout, "hi")
    assert_type(handle, SyncWorkflowHandle[str])
    assert_type(handle.result(), str)
    assert_type(sync_app.enqueue(shout, "hi", queue="default"), SyncWorkflowHandle[str])
