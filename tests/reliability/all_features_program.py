"""Workflows that use every durable feature, for the SIGKILL sweep (``sweep_driver.py``).

Three workflows run in one worker process, one after the other:

* ``pay-1`` (``payment``, started with a deadline): recorded ``uuid4`` and ``now``; a
  step with a compensation given on the step; a child workflow started with
  ``ctx.start_child`` (with a deadline of its own) that runs while the parent goes on,
  its result awaited later through its handle; a step that fails twice and succeeds
  on its third attempt (fixed retry, durable backoff); a compensation registered with
  ``ctx.on_failure``; two concurrent steps (``asyncio.gather``); a durable sleep; a
  signal sent with a dedup key; a signal wait that times out; two child workflows at
  once (``ctx.map``); a plain ``def`` step run in a worker thread. Each child
  (``pack``) runs one step. (``children=False`` leaves the three children out.)
* ``decline-1`` (``declined``): a step whose compensation fails once and is retried,
  then a step that fails without retry: the workflow is compensated.
* ``cancel-1`` (``cancellable``): a step with a compensation, then a wait for a signal
  that never comes; the program cancels it (with compensation) once it is suspended.

Every step and compensation body appends one fsynced line to a side-effect log, as an
external system would see it, and may SIGKILL the process right after (``inside:``).

Usage (the driver imports this module and calls :func:`run_worker` and
:func:`run_client` in forked children)::

    python all_features_program.py TARGET_JSON LOG [CRASH]

``TARGET_JSON`` names the store: ``{"kind": "sqlite", "path": ...}`` or
``{"kind": "postgres", "url": ..., "schema": ...}``. ``CRASH`` is ``before:N`` /
``after:N`` (SIGKILL at the N-th progress write, before or after it commits) or
``inside:STEP`` / ``inside:STEP@ATTEMPT`` (SIGKILL inside that step's body, after
its side effect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import durably
from durably import Context, Durably, RetryPolicy, Store, WorkflowFailedError, WorkflowStatus
from durably.testing.faults import CrashAt, FaultInjectingStore

#: Writes that advance a workflow. Background writes (claims, heartbeats, releases)
#: are not counted, so that the N-th boundary is the same point in every run.
PROGRESS_WRITES = frozenset(
    {
        "create_workflow",
        "record_operation",
        "record_attempt",
        "set_workflow_status",
        "suspend_workflow",
        "request_cancel",
        "append_signal",
        "consume_signal",
    }
)

PAYMENT, DECLINE, CANCEL = "pay-1", "decline-1", "cancel-1"
#: The children of ``pay-1``, by the numbers of the operations that start them (see
#: ``payment``; ``ctx.map`` numbers two operations per child: its start, its result).
CRATE, LAMP, CHAIR = f"{PAYMENT}:3", f"{PAYMENT}:11", f"{PAYMENT}:13"
CHILD_IDS = (CRATE, LAMP, CHAIR)
WORKFLOW_IDS = (PAYMENT, DECLINE, CANCEL, *CHILD_IDS)
#: The durable deadlines given at start: long enough never to pass, even in the sweep.
DEADLINE = timedelta(minutes=10)
APPROVAL = "approved-by-ops"
APPROVAL_DEDUP_KEY = "approve-pay-1"
#: How often the watchdog looks for a workflow stranded by the known engine defect.
ORPHAN_CHECK_SECONDS = 1.0
#: The writes by which a run records its progress: the repeat sweep kills each process
#: right after the first of these. Not creations and signals, which the program's
#: idempotent starts and sends make in every process (a child's creation, and the
#: signals that link it to its parent, are swept by the after mode on SQLite).
RUN_WRITES = PROGRESS_WRITES - {"create_workflow", "append_signal", "request_cancel"}
#: Every step and compensation body, by (workflow, name): the inside-step crash points.
BODIES = (
    (PAYMENT, "reserve"),
    (PAYMENT, "charge"),
    (PAYMENT, "notify-email"),
    (PAYMENT, "notify-sms"),
    (PAYMENT, "ship"),
    (DECLINE, "hold"),
    (DECLINE, "authorize"),
    (DECLINE, "hold:compensate"),
    (CANCEL, "book"),
    (CANCEL, "book:compensate"),
)
#: The step bodies of the children (with ``children=True``).
CHILD_BODIES = ((CRATE, "pack-crate"), (LAMP, "pack-lamp"), (CHAIR, "pack-chair"))
#: Crash points inside a particular attempt of a retried body.
ATTEMPT_BODIES = (("charge", 2), ("charge", 3), ("hold:compensate", 2))


@dataclass
class Order:
    """The input of every workflow."""

    order_id: str
    amount_cents: int


@dataclass
class Receipt:
    """The result of ``payment``: every value a feature produced."""

    order_id: str
    reservation: str
    payment: str
    notices: list[str]
    approval: str
    note: str | None
    crate: str | None
    parcels: list[str]
    shipment: str


def open_target(target: dict[str, str]) -> Store:
    """The store described by ``target`` (unopened)."""
    if target["kind"] == "sqlite":
        return durably.SqliteStore(target["path"])
    from durably.store.postgres import PostgresStore

    return PostgresStore(target["url"], schema=target["schema"], pool_size=4)


class SideEffects:
    """The external world: one fsynced line per body execution, and the inside crash."""

    def __init__(self, log: Path, crash: str | None) -> None:
        self.log = log
        self.inside: tuple[str, int | None] | None = None
        if crash and crash.startswith("inside:"):
            name, _, attempt = crash.removeprefix("inside:").partition("@")
            self.inside = (name, int(attempt) if attempt else None)

    def record(self) -> None:
        """Log the body running now; SIGKILL this process if it is the crash point."""
        step = durably.current_step()
        line = json.dumps(
            {
                "pid": os.getpid(),
                "workflow": step.workflow_id,
                "seq": step.seq,
                "name": step.name,
                "attempt": step.attempt,
            }
        )
        with self.log.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        inside = self.inside
        if inside is not None and inside[0] == step.name and inside[1] in (None, step.attempt):
            os.kill(os.getpid(), signal.SIGKILL)


def build(
    target: dict[str, str],
    log: Path,
    crash: str | None = None,
    *,
    worker: bool = True,
    max_recovery_attempts: int = 10,
    crash_methods: frozenset[str] = PROGRESS_WRITES,
    children: bool = True,
) -> tuple[Durably, CrashAt]:
    """The app with its three workflows (and the children's), its store wrapped with
    the crash hook; ``children=False``: ``payment`` starts no children.

    Returns:
        The app, and the counter of progress writes it made.
    """
    effects = SideEffects(log, crash)
    hook = CrashAt("never", 0)
    if crash and not crash.startswith("inside:"):
        phase, count = crash.split(":")
        hook = CrashAt(phase, int(count), crash_methods)
    counter = CrashAt("after", -1, PROGRESS_WRITES)

    def both(phase: str, method: str) -> None:
        counter(phase, method)
        hook(phase, method)

    store = FaultInjectingStore(open_target(target), both)
    app = Durably(
        store,
        poll_interval=timedelta(milliseconds=20),
        inline_wait=0,
        lease_duration=timedelta(seconds=30),
        compensation_retry=RetryPolicy.fixed(3, timedelta(milliseconds=5)),
        max_recovery_attempts=max_recovery_attempts,
        worker=worker,
    )

    async def reserve(order_id: str) -> str:
        effects.record()
        return f"hold-{order_id}"

    async def release(reservation: str) -> None:
        effects.record()

    async def charge(order_id: str, amount_cents: int) -> str:
        effects.record()
        if durably.current_step().attempt < 3:
            raise ConnectionError("payment gateway timeout")
        return f"charge-{order_id}-{amount_cents}"

    async def refund(payment: str) -> None:
        effects.record()

    async def notify(channel: str) -> str:
        effects.record()
        return f"{channel}-sent"

    def ship(order_id: str) -> str:  # a plain def step: runs in a worker thread
        effects.record()
        return f"parcel-{order_id}"

    async def pack_item(item: str) -> str:
        effects.record()
        return f"box({item})"

    @app.workflow(name="pack")
    async def pack(ctx: Context, item: str) -> str:
        return await ctx.step(f"pack-{item}", pack_item, item)

    @app.workflow(name="payment")
    async def payment(ctx: Context, order: Order) -> Receipt:
        await ctx.uuid4()
        await ctx.now()
        reservation = await ctx.step("reserve", reserve, order.order_id, compensate=release)
        crating = None
        if children:  # the child runs meanwhile (while the parent waits to retry)
            crating = await ctx.start_child(pack, "crate", timeout=DEADLINE)
        paid = await ctx.step(
            "charge",
            charge,
            order.order_id,
            order.amount_cents,
            retry=RetryPolicy.fixed(3, timedelta(milliseconds=100)),
        )
        ctx.on_failure(refund, paid, retry=RetryPolicy.fixed(3, timedelta(milliseconds=5)))
        notices = await asyncio.gather(
            ctx.step("notify-email", notify, "email"), ctx.step("notify-sms", notify, "sms")
        )
        await ctx.sleep("settle", timedelta(milliseconds=100))
        approval = await ctx.wait_signal("approve", timeout=timedelta(minutes=5), payload_type=str)
        note = await ctx.wait_signal("note", timeout=timedelta(milliseconds=100), payload_type=str)
        crate, parcels = None, []
        if crating is not None:
            crate = await crating.result()
            parcels = (await ctx.map(pack, ["lamp", "chair"])).values
        shipment = await ctx.step("ship", ship, order.order_id)
        return Receipt(
            order_id=order.order_id,
            reservation=reservation,
            payment=paid,
            notices=list(notices),
            approval=str(approval),
            note=note,
            crate=crate,
            parcels=parcels,
            shipment=shipment,
        )

    async def hold(order_id: str) -> str:
        effects.record()
        return f"hold-{order_id}"

    async def unhold(reservation: str) -> None:
        effects.record()
        if durably.current_step().attempt == 1:
            raise TimeoutError("inventory service busy")

    async def authorize(order_id: str) -> None:
        effects.record()
        raise PermissionError("card declined")

    @app.workflow(name="declined")
    async def declined(ctx: Context, order: Order) -> str:
        await ctx.step("hold", hold, order.order_id, compensate=unhold)
        await ctx.step(
            "authorize",
            authorize,
            order.order_id,
            retry=RetryPolicy.fixed(3, 0, dont_retry_on=(PermissionError,)),
        )
        return "unreachable"

    async def book(order_id: str) -> str:
        effects.record()
        return f"room-{order_id}"

    async def unbook(booking: str) -> None:
        effects.record()

    @app.workflow(name="cancellable")
    async def cancellable(ctx: Context, order: Order) -> str:
        await ctx.step("book", book, order.order_id, compensate=unbook)
        await ctx.wait_signal("go")
        return "unreachable"

    return app, counter


async def send_approval(app: Durably) -> None:
    """Send the approval (idempotent by its dedup key); ignore a workflow that does not
    exist yet (the worker will start it) or has finished."""
    with contextlib.suppress(durably.WorkflowNotFoundError, durably.WorkflowFinishedError):
        await app.send_signal(PAYMENT, "approve", APPROVAL, dedup_key=APPROVAL_DEDUP_KEY)


async def cancel_once_waiting(app: Durably) -> None:
    """Cancel ``cancel-1`` (with compensation) once it waits for its signal, unless a
    cancellation is already recorded or it has finished."""
    async for _ in app.watch(CANCEL):
        record = await app.store.get_workflow(CANCEL)
        assert record is not None
        if record.cancel_requested or record.status.is_terminal:
            return
        if record.status is WorkflowStatus.SUSPENDED:
            with contextlib.suppress(durably.WorkflowFinishedError):
                await app.cancel(CANCEL, compensate=True)
            return


async def describe(app: Durably, workflow_id: str) -> dict[str, Any]:
    """The final outcome of one workflow, as JSON data."""
    try:
        value = await app.handle(workflow_id).result()
    except WorkflowFailedError as error:
        return {"status": str(error.status), "error": error.error_message}
    result = asdict(value) if isinstance(value, Receipt) else value
    return {"status": "COMPLETED", "result": result}


async def run_script(app: Durably, *, children: bool) -> dict[str, Any]:
    """Start (idempotently) and finish every workflow; return their outcomes (the
    children's too, if ``payment`` starts them).

    One workflow after the other, so that the N-th write is the same point in every
    run (a recovered workflow may still run alongside the next one).
    """
    order = Order("A-17", 4200)
    outcome = {}
    await app.start("payment", order, workflow_id=PAYMENT, timeout=DEADLINE)
    await send_approval(app)
    outcome[PAYMENT] = await describe(app, PAYMENT)
    for child_id in CHILD_IDS if children else ():
        outcome[child_id] = await describe(app, child_id)
    await app.start("declined", order, workflow_id=DECLINE)
    outcome[DECLINE] = await describe(app, DECLINE)
    await app.start("cancellable", order, workflow_id=CANCEL)
    await cancel_once_waiting(app)
    outcome[CANCEL] = await describe(app, CANCEL)
    return outcome


async def find_orphan(app: Durably) -> str:
    """Return the id of a workflow this process owns but does not run, once it has
    been so at two checks a second apart.

    That state is a known engine defect (a claim made while the workflow's previous
    run is still ending is dropped; see test_engine_liveness.py): the heartbeat then
    keeps the lease forever and the workflow never finishes in this process. The sweep
    counts such runs and lets a new process recover them, instead of hanging.
    """
    strikes: dict[str, int] = {}
    while True:
        await asyncio.sleep(ORPHAN_CHECK_SECONDS)
        for workflow_id in WORKFLOW_IDS:
            record = await app.store.get_workflow(workflow_id)
            orphaned = (
                record is not None
                and record.status in (WorkflowStatus.RUNNING, WorkflowStatus.COMPENSATING)
                and record.owner == app.executor_id
                and workflow_id not in app._runs
            )
            strikes[workflow_id] = strikes.get(workflow_id, 0) + 1 if orphaned else 0
            if strikes[workflow_id] >= 2:
                return workflow_id


async def run_worker(
    target: dict[str, str], log: Path, crash: str | None, *, children: bool = True, **options: Any
) -> dict[str, Any]:
    """Run the script in a worker app; return the outcomes and the writes counted, or
    the workflow left orphaned by the known engine defect."""
    app, counter = build(target, log, crash, children=children, **options)
    async with app:
        script = asyncio.ensure_future(run_script(app, children=children))
        watchdog = asyncio.ensure_future(find_orphan(app))
        await asyncio.wait({script, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        for task in (script, watchdog):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if not script.cancelled():
        return {"outcome": script.result(), "boundaries": counter.seen}
    return {"orphaned": watchdog.result(), "boundaries": counter.seen}


async def run_client(target: dict[str, str], log: Path) -> None:
    """A client process (no worker): sends the approval while no worker runs."""
    app, _ = build(target, log, None, worker=False)
    async with app:
        await send_approval(app)


def main() -> None:
    """Run the worker once and print its outcome as one JSON line."""
    target, log = json.loads(sys.argv[1]), Path(sys.argv[2])
    crash = sys.argv[3] if len(sys.argv) > 3 else None
    print(json.dumps(asyncio.run(run_worker(target, log, crash))), flush=True)


if __name__ == "__main__":
    main()
