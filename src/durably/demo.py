"""``durably demo``: the product in one minute, on a local SQLite file.

The parent process runs an order workflow in a child process, kills the child with
SIGKILL in the middle of a step, starts a new child that resumes the workflow from its
last recorded step, then shows a failing payment being compensated and a workflow
that sleeps durably and waits for a signal sent from another process. Every step
appends a line to a side-effect log, so the timeline shows which process really ran
each step and which steps were replayed from the database instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from durably.context import Context
from durably.engine import Durably
from durably.errors import WorkflowFailedError, WorkflowNotFoundError
from durably.handles import WorkflowHandle
from durably.models import OperationKind, OperationStatus, micros_to_datetime
from durably.retry import RetryPolicy
from durably.step_call import current_step
from durably.store.sqlite import SqliteStore

#: A child process started with this variable blocks inside ``pack_order`` until killed.
BLOCK_VARIABLE = "DURABLY_DEMO_BLOCK_IN_PACK"
LOG_VARIABLE = "DURABLY_DEMO_LOG"


@dataclass(frozen=True)
class Order:
    """What the customer ordered."""

    order_id: str
    item: str
    quantity: int
    card: str


def _log(event: str, **fields: object) -> None:
    """Append one side effect to the shared log (one line, flushed and fsynced)."""
    step = current_step()
    line = json.dumps(
        {
            "event": event,
            "pid": os.getpid(),
            "workflow": step.workflow_id,
            "seq": step.seq,
            **fields,
        }
    )
    with open(os.environ[LOG_VARIABLE], "a", encoding="utf-8") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())


def build_app(database: Path, *, worker: bool = True) -> Durably:
    """The demo's app: an order checkout workflow and a delivery workflow."""
    app = Durably(SqliteStore(database), poll_interval=timedelta(milliseconds=200), worker=worker)

    async def validate_order(order: Order) -> bool:
        _log("step", step="validate_order")
        return order.quantity > 0

    async def reserve_inventory(order: Order) -> str:
        _log("step", step="reserve_inventory")
        return f"reservation-{order.order_id}"

    async def release_inventory(reservation: str) -> None:
        _log("compensation", step="release_inventory", reservation=reservation)

    async def charge_payment(order: Order) -> str:
        key = current_step().idempotency_key
        _log("step", step="charge_payment", idempotency_key=key)
        if order.card == "declined":
            raise PermissionError("card declined by the bank")
        return f"payment-{order.order_id}"

    async def refund_payment(payment: str) -> None:
        _log("compensation", step="refund_payment", payment=payment)

    async def pack_order(order: Order) -> str:
        _log("step", step="pack_order")
        if os.environ.get(BLOCK_VARIABLE):
            _log("blocked", step="pack_order")
            await asyncio.Event().wait()
        return f"parcel-{order.order_id}"

    async def ship_order(parcel: str) -> str:
        _log("step", step="ship_order")
        return f"tracking-{parcel}"

    @app.workflow(name="checkout")
    async def checkout(ctx: Context, order: Order) -> str:
        if not await ctx.step("validate_order", validate_order, order):
            raise ValueError("empty order")
        await ctx.step("reserve_inventory", reserve_inventory, order, compensate=release_inventory)
        await ctx.step(
            "charge_payment",
            charge_payment,
            order,
            retry=RetryPolicy.exponential(3, initial_delay=0.05, dont_retry_on=(PermissionError,)),
            compensate=refund_payment,
        )
        parcel = await ctx.step("pack_order", pack_order, order)
        return await ctx.step("ship_order", ship_order, parcel)

    async def record_delivery(note: str) -> str:
        _log("step", step="record_delivery")
        return note

    @app.workflow(name="delivery")
    async def delivery(ctx: Context, order_id: str) -> str:
        await ctx.sleep("settlement", timedelta(seconds=2))
        note = await ctx.wait_signal("delivered", timeout=timedelta(minutes=5))
        return await ctx.step("record_delivery", record_delivery, f"{order_id}: {note}")

    return app


async def _child(database: Path, action: str, workflow_id: str) -> None:
    """What a child process does: start or resume a workflow and print its outcome."""
    app = build_app(database)
    async with app:
        handle: WorkflowHandle[Any]
        if action == "checkout":
            card = "declined" if workflow_id.endswith("2") else "visa"
            order = Order(order_id=workflow_id, item="keyboard", quantity=1, card=card)
            handle = await app.start("checkout", order, workflow_id=workflow_id)
        elif action == "delivery":
            handle = await app.start("delivery", workflow_id, workflow_id=workflow_id)
        else:
            handle = app.handle(workflow_id)
        try:
            print(json.dumps({"result": await handle.result()}), flush=True)
        except WorkflowFailedError as error:
            print(json.dumps({"failed": error.status, "error": error.error_message}), flush=True)


def _spawn(
    database: Path, log: Path, action: str, workflow_id: str, *, block: bool
) -> subprocess.Popen[str]:
    environment = {**os.environ, LOG_VARIABLE: str(log)}
    environment.pop(BLOCK_VARIABLE, None)
    if block:
        environment[BLOCK_VARIABLE] = "1"
    return subprocess.Popen(  # noqa: S603 - our own module, run by this interpreter
        [sys.executable, "-m", "durably.demo", str(database), action, workflow_id],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_log(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]


def _wait_for_log(log: Path, event: str, step: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["event"] == event and e.get("step") == step for e in _read_log(log)):
            return
        time.sleep(0.02)
    raise RuntimeError(f"the demo child never reached {event} {step}")


async def _timeline(database: Path, workflow_id: str, log: Path, pids: dict[int, str]) -> list[str]:
    store = SqliteStore(database)
    await store.open()
    try:
        record = await store.get_workflow(workflow_id)
        history = await store.load_history(workflow_id)
    finally:
        await store.close()
    assert record is not None
    runs: dict[int, list[str]] = {}
    for entry in _read_log(log):
        if entry["workflow"] == workflow_id and entry["event"] in ("step", "compensation"):
            process = pids.get(int(str(entry["pid"])), "?")
            runs.setdefault(int(str(entry["seq"])), []).append(process)
    lines = [f"  {workflow_id}  {record.workflow_name}  ->  {record.status}"]
    operations = sorted(history.operations.values(), key=lambda op: (op.seq < 0, abs(op.seq)))
    for operation in operations:
        when = micros_to_datetime(operation.finished_at or operation.started_at).strftime(
            "%H:%M:%S.%f"
        )[:-3]
        label = f"#{operation.seq:<3}" if operation.seq >= 0 else "undo"
        ran_in = runs.get(operation.seq, [])
        if operation.kind is OperationKind.SLEEP:
            detail = "durable timer, survives restarts"
        elif operation.kind is OperationKind.SIGNAL:
            detail = "signal consumed from the inbox"
        elif operation.status is OperationStatus.FAILED:
            info = operation.error_info
            detail = f"FAILED after {operation.attempts} attempt(s): {info.message if info else ''}"
        else:
            detail = "ran in " + ", then ".join(ran_in) if ran_in else "recorded"
        lines.append(
            f"    {label} {operation.kind.lower():<12} {operation.name:<28} {when}  {detail}"
        )
    return lines


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(directory: Path | None = None) -> int:
    """Run the whole demo; return the process exit code."""
    workdir = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="durably-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "demo.db"
    log = workdir / "side-effects.log"
    for stale in (database, log):
        stale.unlink(missing_ok=True)
    _say(f"durably demo — database: {database}")
    _say()
    _say("1. Crash and resume")
    first = _spawn(database, log, "checkout", "order-1001", block=True)
    pids = {first.pid: "process 1"}
    _say(f"   process 1 (pid {first.pid}) starts workflow order-1001 ...")
    _wait_for_log(log, "blocked", "pack_order")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    _say("   process 1 is inside step pack_order: kill -9 (SIGKILL). It is gone.")
    second = _spawn(database, log, "resume", "order-1001", block=False)
    pids[second.pid] = "process 2"
    output, _ = second.communicate(timeout=60)
    _say(f"   process 2 (pid {second.pid}) opens the same file and resumes it: {output.strip()}")
    for line in asyncio.run(_timeline(database, "order-1001", log, pids)):
        _say(line)
    _say("   Steps #0-#2 were replayed from the database by process 2, not run again;")
    _say("   pack_order, interrupted by the crash, ran again (steps are at-least-once).")
    _say()
    _say("2. A declined payment is compensated (saga)")
    third = _spawn(database, log, "checkout", "order-1002", block=False)
    pids[third.pid] = "process 3"
    output, _ = third.communicate(timeout=60)
    _say(f"   process 3: {output.strip()}")
    for line in asyncio.run(_timeline(database, "order-1002", log, pids)):
        _say(line)
    _say()
    _say("3. A durable sleep and a signal from another process")
    fourth = _spawn(database, log, "delivery", "order-1003", block=False)
    pids[fourth.pid] = "process 4"
    _say(f"   process 4 (pid {fourth.pid}) starts order-1003: sleep 2 s, then wait for 'delivered'")
    asyncio.run(_send_delivered(database))
    _say("   this process sends signal 'delivered' to order-1003 (it waits in the inbox)")
    output, _ = fourth.communicate(timeout=60)
    _say(f"   process 4: {output.strip()}")
    for line in asyncio.run(_timeline(database, "order-1003", log, pids)):
        _say(line)
    _say()
    _say(f"The database and the side-effect log are in {workdir}")
    return 0


async def _send_delivered(database: Path) -> None:
    app = build_app(database, worker=False)
    async with app:
        deadline = time.monotonic() + 30.0
        while True:  # until process 4 has recorded the workflow
            try:
                await app.send_signal("order-1003", "delivered", "left at the front door")
                return
            except WorkflowNotFoundError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(_child(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
