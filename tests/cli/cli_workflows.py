"""Workflows that the CLI tests record, and that ``durably replay --app`` imports.

``app`` is the code as recorded; ``changed_app`` inserts a step into ``approval``
before ``charge`` (old histories no longer replay, although it declares that it also
runs their version 1, so its workers resume them and park them); ``extended_app`` adds a step
after ``charge`` that writes the file named by ``$DURABLY_CLI_TEST_MARKER`` (old
histories of waiting workflows still replay; the new step would run live). Run as a
program: ``stuck URL ID`` starts a ``stuck`` workflow, prints ``blocked`` once its
step is running and blocks there until killed; ``fork-and-crash URL ID NEW_ID`` forks
a workflow and is killed with SIGKILL halfway through copying its history.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import durably
from durably import admin
from durably.clock import SystemClock
from durably.store import open_store
from durably.testing import CrashAt, FaultInjectingStore


@dataclass(frozen=True)
class Order:
    """An order to check out."""

    order_id: str
    total_cents: int


class PaymentDeclinedError(Exception):
    """The card was declined."""


#: Steps that really ran in this process, as (step, order id): replayed ones are absent.
STEP_CALLS: list[tuple[str, str]] = []
#: Whether ``charge_when_allowed`` succeeds; a test sets it to "deploy a fix".
charges_allowed = False


async def reserve(order: Order) -> str:
    """Reserve the goods."""
    return f"reservation-{order.order_id}"


async def release(reservation: str) -> None:
    """Give the goods back."""


async def charge(order: Order) -> int:
    """Charge the card."""
    return order.total_cents


async def decline(order: Order) -> int:
    """A card that is always declined."""
    raise PaymentDeclinedError(f"card declined for {order.order_id}")


async def refund_unavailable(order: Order) -> None:
    """A compensation that cannot succeed."""
    raise ConnectionError("refund service unavailable")


async def counted_reserve(order: Order) -> str:
    """Reserve the goods, remembering that the step ran."""
    STEP_CALLS.append(("reserve", order.order_id))
    return f"reservation-{order.order_id}"


async def charge_when_allowed(order: Order) -> int:
    """A charge that fails until ``charges_allowed`` is set."""
    STEP_CALLS.append(("charge", order.order_id))
    if not charges_allowed:
        raise PaymentDeclinedError(f"payments are switched off for {order.order_id}")
    return order.total_cents


def notify(order: Order) -> str:
    """A step with a visible side effect: it writes the marker file."""
    marker = os.environ.get("DURABLY_CLI_TEST_MARKER")
    if marker:
        Path(marker).write_text(order.order_id, encoding="utf-8")
    return "notified"


async def audit(order: Order) -> str:
    """A step that only the changed code runs."""
    return f"audited {order.order_id}"


async def block_forever(order: Order) -> str:
    """Announce that the step runs, then never return."""
    print("blocked", flush=True)
    await asyncio.Event().wait()
    return "unreachable"


def build_app(store: Any, *, variant: str = "recorded", **options: Any) -> durably.Durably:
    """The app with every test workflow registered (``variant``: recorded, changed or
    extended; see the module docstring)."""
    changed = variant == "changed"
    options.setdefault("inline_wait", 0)
    app = durably.Durably(store, **options)

    @app.workflow(
        name="approval",
        version={"changed": "2", "extended": "3"}.get(variant, "1"),
        also_runs=["1"] if changed else (),
    )
    async def approval(ctx: durably.Context, order: Order) -> str:
        reservation = await ctx.step("reserve", reserve, order, compensate=release)
        if changed:
            await ctx.step("audit", audit, order)
        paid = await ctx.step("charge", charge, order)
        if variant == "extended":
            await ctx.step("notify", notify, order)
        approved_by = await ctx.wait_signal("approved", payload_type=str)
        return f"{reservation}, {paid} cents, approved by {approved_by}"

    @app.workflow(name="declined", version="1")
    async def declined(ctx: durably.Context, order: Order) -> int:
        await ctx.step("reserve", reserve, order, compensate=release)
        return await ctx.step("charge", decline, order)

    @app.workflow(name="unrefundable", version="1")
    async def unrefundable(ctx: durably.Context, order: Order) -> int:
        ctx.on_failure(refund_unavailable, order, retry=durably.RetryPolicy.none())
        return await ctx.step("charge", decline, order)

    @app.workflow(name="failing", version="1")
    async def failing(ctx: durably.Context, order: Order) -> int:
        await ctx.step("reserve", reserve, order)
        return await ctx.step("charge", decline, order)

    @app.workflow(name="checkout", version="1")
    async def checkout(ctx: durably.Context, order: Order) -> str:
        reservation = await ctx.step("reserve", counted_reserve, order)
        paid = await ctx.step("charge", charge_when_allowed, order)
        return f"{reservation} paid {paid}"

    @app.workflow(name="cooling", version="1")
    async def cooling(ctx: durably.Context, order: Order) -> str:
        reservation = await ctx.step("reserve", reserve, order)
        await ctx.sleep("cool-off", timedelta(days=1))
        return reservation

    @app.workflow(name="stuck", version="1")
    async def stuck(ctx: durably.Context, order: Order) -> str:
        await ctx.step("reserve", reserve, order)
        return await ctx.step("block", block_forever, order)

    return app


app = build_app("memory://")
changed_app = build_app("memory://", variant="changed")
extended_app = build_app("memory://", variant="extended")


async def _run_stuck(url: str, workflow_id: str) -> None:
    async with build_app(url) as running:
        await running.start("stuck", Order(workflow_id, 100), workflow_id=workflow_id)
        await asyncio.Event().wait()


async def _fork_and_crash(url: str, workflow_id: str, fork_id: str) -> None:
    """Fork from after the last recorded operation; SIGKILL this process right after
    the first operation is copied."""
    crash = CrashAt("after", 1, frozenset({"record_operation"}))
    store: Any = FaultInjectingStore(open_store(url), crash)
    await store.open()
    history = await store.load_history(workflow_id)
    await admin.fork_workflow(
        store,
        workflow_id,
        from_seq=len(history.operations),
        new_workflow_id=fork_id,
        now=SystemClock().now(),
    )
    raise AssertionError("the fork should have been killed while copying")


if __name__ == "__main__":
    command, database_url, target = sys.argv[1:4]
    if command == "stuck":
        asyncio.run(_run_stuck(database_url, target))
    elif command == "fork-and-crash":
        asyncio.run(_fork_and_crash(database_url, target, sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {command!r}")
