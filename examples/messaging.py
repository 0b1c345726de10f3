"""Messaging: guaranteed delivery of the messages written while offline. Each message
reaches the recipient exactly once and in order, however often the network drops or
the app is killed; the broker refuses a message it already has (by message id).

    python examples/messaging.py queue --to bob "TEXT" ["TEXT" ...]   # while offline
    python examples/messaging.py flush [--network-drops 1]              # back online

Both take [--state DIR] [--db FILE].
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from fake_services.messaging import Broker, Outbox

import durably


def build_app(database: Path, outbox: Outbox, broker: Broker) -> durably.Durably:
    """The delivery workflow and its steps, on ``database``."""
    app = durably.Durably(f"sqlite:///{database}")

    # Unreachable broker: keep trying with growing delays (the attempt count is durable).
    @app.step(retry=durably.RetryPolicy.exponential(10, initial_delay=0.1, max_delay=30))
    async def send(message_id: str) -> int:
        message = outbox.message(message_id)
        # The message's own id, not the step's key: if the same message ever ended up in
        # two flushes, the broker would still take it once.
        return broker.publish(message, idempotency_key=message.message_id)

    @app.step()
    async def mark_delivered(message_id: str, sequence: int) -> None:
        outbox.mark_delivered(message_id, sequence)

    @app.workflow(name="flush_outbox")
    async def flush_outbox(ctx: durably.Context, message_ids: list[str]) -> int:
        for message_id in message_ids:  # one at a time: the chat keeps their order
            sequence = await send(message_id)
            await mark_delivered(message_id, sequence)
        return len(message_ids)

    return app


async def flush(app: durably.Durably, outbox: Outbox) -> int:
    """Finish any flush a killed process left, then send what is still queued."""
    async with app:  # resumes unfinished flushes in the background
        for info in await app.list_workflows(name="flush_outbox"):
            if not info.status.is_terminal:
                print(f"{info.workflow_id}: found {info.status}, finishing it first")
                await app.handle(info.workflow_id).result()
        pending = outbox.pending()
        if not pending:
            print("outbox: nothing to send")
            return 0
        workflow_id = f"flush-{pending[0]}-to-{pending[-1]}"
        print(f"{workflow_id}: sending {len(pending)} messages")
        try:
            handle: durably.WorkflowHandle[int] = await app.start(
                "flush_outbox", pending, workflow_id=workflow_id
            )
            sent = await handle.result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {sent} messages delivered")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; queue messages or deliver the queue."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "durably-examples" / "messaging"
    )
    common.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    queue = commands.add_parser("queue", parents=[common], help="write messages while offline")
    queue.add_argument("--to", required=True)
    queue.add_argument("texts", nargs="+")
    send = commands.add_parser("flush", parents=[common], help="deliver the queued messages")
    send.add_argument("--network-drops", type=int, default=1, help="failed sends per message")
    args = parser.parse_args(argv)
    outbox = Outbox(args.state)
    if args.command == "queue":
        for text in args.texts:
            outbox.queue(args.to, text)
        return 0
    broker = Broker(args.state, timeouts={"publish": args.network_drops})
    app = build_app(args.db or args.state / "workflows.db", outbox, broker)
    return asyncio.run(flush(app, outbox))


if __name__ == "__main__":
    sys.exit(main())
