"""Traces, logs and metrics of one workflow: ``python observability_tour.py``.

Needs ``pip install 'durably[otel]' opentelemetry-sdk``. Spans go to an in-memory
exporter here and are printed as a tree; in production you would configure an OTLP
exporter on the TracerProvider instead.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import durably
from durably.observability import Metrics, OpenTelemetryObserver, WorkflowLogFilter

# Logs: every record through this handler gets the workflow and step fields.
handler = logging.StreamHandler(sys.stdout)
handler.addFilter(WorkflowLogFilter(missing="-"))
handler.setFormatter(
    logging.Formatter(
        "%(levelname)s %(name)s [%(workflow_id)s %(step)s seq=%(seq)s "
        "attempt=%(attempt)s replaying=%(replaying)s] %(message)s"
    )
)
logging.basicConfig(level=logging.INFO, handlers=[handler])
log = logging.getLogger("shop")

# Traces and metrics: two observers.
spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
metrics = Metrics()
app = durably.Durably(
    "memory://",
    observers=[OpenTelemetryObserver(tracer_provider=tracer_provider), metrics],
    inline_wait=timedelta(milliseconds=100),  # longer waits suspend the workflow
)

failures = ["payment gateway timed out"]


@app.step(retry=durably.RetryPolicy.fixed(3, timedelta(milliseconds=50)))
async def charge(order_id: str, amount: int) -> str:
    log.info("charging %d cents", amount)
    if failures:
        raise ConnectionError(failures.pop())
    return f"payment-{order_id}"


@app.step()
async def ship(order_id: str) -> str:
    log.info("handing the parcel to the carrier")
    return f"parcel-{order_id}"


@app.workflow(name="checkout")
async def checkout(ctx: durably.Context, order_id: str, amount: int) -> str:
    log.info("checkout of %s", order_id)
    await charge(order_id, amount)
    await ctx.sleep("cooling-off", timedelta(milliseconds=300))  # suspends, then replays
    return await ship(order_id)


def print_tree(finished: tuple[ReadableSpan, ...]) -> None:
    """Each span under its parent, with the attributes that tell what happened."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(finished, key=lambda span: span.start_time or 0):
        parent = span.parent.span_id if span.parent else None
        children.setdefault(parent, []).append(span)

    def show(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            attributes = {key: str(value) for key, value in (span.attributes or {}).items()}
            detail = (
                f"outcome={attributes['durably.run.outcome']}"
                if "durably.run.outcome" in attributes
                else f"seq={attributes['durably.step.seq']} "
                f"attempt={attributes['durably.step.attempt']} "
                f"outcome={attributes['durably.step.outcome']}"
            )
            links = " (linked to the previous run)" if span.links else ""
            print(f"{'  ' * depth}{span.name}: {detail} {span.status.status_code.name}{links}")
            show(span.context.span_id, depth + 1)

    show(None, 0)


async def main() -> None:
    async with app:
        handle = await app.start(checkout, "A-17", 4200, workflow_id="order-A-17")
        result = await handle.result()
    print(f"result: {result}\n")
    print_tree(spans.get_finished_spans())
    snapshot = metrics.snapshot()
    print(f"\nruns: {dict(sorted(snapshot.runs.items()))}")
    print(f"attempts: {dict(sorted(snapshot.attempts.items()))}")
    print(f"retries: {snapshot.retries}")
    exposition = snapshot.prometheus_text().splitlines()
    print("\n".join(line for line in exposition if line.startswith("durably_workflow_runs")))
    charge_latency = snapshot.step_latency_of("charge")
    print(f"charge latency: {charge_latency.count} attempts, max {charge_latency.maximum:.4f} s")


if __name__ == "__main__":
    asyncio.run(main())
