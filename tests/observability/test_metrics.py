"""Metrics: runs by outcome, attempts by outcome, retries and latencies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from tests.observability.conftest import RunWatcher

from durably import Context, Durably, MemoryStore, RetryPolicy, WorkflowFailedError
from durably.observability import LatencyStats, Metrics, OpenTelemetryObserver
from durably.testing import FakeClock


def build_shop(app: Durably, clock: FakeClock) -> dict[str, Callable[..., Any]]:
    """Workflows whose steps take known virtual times: 0.25 s to pack, 2 s per
    delivery attempt (the first one fails and is retried), and one that fails."""
    deliveries: list[int] = []

    async def pack() -> None:
        clock.advance(timedelta(milliseconds=250))

    async def deliver() -> None:
        clock.advance(timedelta(seconds=2))
        deliveries.append(1)
        if len(deliveries) == 1:
            raise ConnectionError("van broke down")

    async def reject() -> None:
        raise ValueError("address unknown")

    @app.workflow(name="ship")
    async def ship(ctx: Context) -> None:
        await ctx.step("pack", pack)
        await ctx.step("deliver", deliver, retry=RetryPolicy.fixed(2, 0))

    @app.workflow(name="refuse")
    async def refuse(ctx: Context) -> None:
        await ctx.step("pack", pack)
        await ctx.step("reject", reject)

    return {"ship": ship, "refuse": refuse}


async def test_counts_by_outcome_and_latencies_on_the_virtual_clock(clock: FakeClock) -> None:
    """Completed and failed runs, completed, retried and failed attempts are counted;
    each latency is the virtual time its step took."""
    metrics = Metrics()
    app = Durably(MemoryStore(), clock=clock, observers=[metrics])
    shop = build_shop(app, clock)
    async with app:
        await app.run(shop["ship"])
        with pytest.raises(WorkflowFailedError):
            await app.run(shop["refuse"])

    snapshot = metrics.snapshot()
    assert snapshot.runs_started == {"ship": 1, "refuse": 1}
    assert snapshot.workflow_runs() == 2
    assert snapshot.workflow_runs("completed") == 1
    assert snapshot.workflow_runs("failed", workflow="refuse") == 1
    assert snapshot.workflow_runs("failed", workflow="ship") == 0
    assert snapshot.step_attempts() == 5
    assert snapshot.step_attempts("completed") == 3
    assert snapshot.step_attempts("failed", step="reject") == 1
    assert snapshot.retries == 1
    assert snapshot.step_attempts("retrying", step="deliver", workflow="ship") == 1

    pack = snapshot.step_latency_of("pack")
    assert (pack.count, pack.total, pack.minimum, pack.maximum) == (2, 0.5, 0.25, 0.25)
    assert pack.quantile(0.5) == 0.25
    deliver = snapshot.step_latency_of("deliver", workflow="ship")
    assert (deliver.count, deliver.mean) == (2, 2.0)
    assert snapshot.step_latency_of("deliver", outcome="retrying").count == 1
    assert snapshot.step_latency_of("reject").total == 0.0
    ship_runs = snapshot.run_latency_of("ship")
    assert (ship_runs.count, ship_runs.total) == (1, 4.25)


async def test_replayed_steps_are_not_counted_and_runs_count_suspensions(
    clock: FakeClock,
) -> None:
    """A workflow that suspends has two runs (suspended, completed) and a recovery-free
    replay: its first step is counted once."""
    metrics, watcher = Metrics(), RunWatcher()
    app = Durably(MemoryStore(), clock=clock, observers=[metrics, watcher])

    async def noop() -> None:
        return None

    @app.workflow(name="nightly")
    async def nightly(ctx: Context) -> None:
        await ctx.step("collect", noop)
        await ctx.sleep("until night", timedelta(hours=8))
        await ctx.step("report", noop)

    async with app:
        handle = await app.start(nightly, workflow_id="nightly-1")
        await watcher.wait_for("nightly-1", "suspended")
        clock.advance(timedelta(hours=8))
        await handle.result()
        await watcher.wait_for("nightly-1", "completed")

    snapshot = metrics.snapshot()
    assert snapshot.runs_started == {"nightly": 2}
    assert snapshot.runs == {("nightly", "suspended"): 1, ("nightly", "completed"): 1}
    assert snapshot.attempts == {
        ("nightly", "collect", "completed"): 1,
        ("nightly", "report", "completed"): 1,
    }


async def test_a_recovered_run_is_counted_as_a_recovery(
    app_factory: Callable[..., Durably],
) -> None:
    """A workflow left behind by a closed app and resumed by the next one counts one
    abandoned run, one recovery and one completed run."""
    metrics, watcher = Metrics(), RunWatcher()
    started, release = asyncio.Event(), asyncio.Event()

    async def wait_for_release() -> None:
        started.set()
        await release.wait()

    def register(app: Durably) -> Callable[..., Any]:
        @app.workflow(name="held")
        async def held(ctx: Context) -> None:
            await ctx.step("hold", wait_for_release)

        return held

    first = app_factory(observers=[metrics, watcher])
    held = register(first)
    async with first:
        await first.start(held, workflow_id="held-1")
        await started.wait()
    release.set()
    second = app_factory(observers=[metrics, watcher])
    register(second)
    async with second:
        await second.handle("held-1").result()

    snapshot = metrics.snapshot()
    assert snapshot.recoveries == {"held": 1}
    assert snapshot.workflow_runs("abandoned") == 1
    assert snapshot.workflow_runs("completed") == 1
    assert snapshot.step_attempts("interrupted", step="hold") == 1
    assert snapshot.step_attempts("completed", step="hold") == 1


async def test_prometheus_text_has_counters_and_cumulative_buckets(clock: FakeClock) -> None:
    """The exposition text lists each series with its labels; histogram buckets are
    cumulative and end with +Inf, then _sum and _count."""
    metrics = Metrics(buckets=[0.1, 1.0])
    app = Durably(MemoryStore(), clock=clock, observers=[metrics])
    shop = build_shop(app, clock)
    async with app:
        await app.run(shop["ship"])

    text = metrics.snapshot().prometheus_text()
    lines = text.splitlines()
    assert 'durably_workflow_runs_total{workflow="ship",outcome="completed"} 1' in lines
    assert (
        'durably_step_attempts_total{workflow="ship",step="deliver",outcome="retrying"} 1' in lines
    )
    pack = 'workflow="ship",step="pack",outcome="completed"'
    assert [
        line for line in lines if line.startswith("durably_step_duration_seconds") and pack in line
    ] == [
        f'durably_step_duration_seconds_bucket{{{pack},le="0.1"}} 0',
        f'durably_step_duration_seconds_bucket{{{pack},le="1.0"}} 1',
        f'durably_step_duration_seconds_bucket{{{pack},le="+Inf"}} 1',
        f"durably_step_duration_seconds_sum{{{pack}}} 0.25",
        f"durably_step_duration_seconds_count{{{pack}}} 1",
    ]
    metrics.reset()
    assert metrics.snapshot().workflow_runs() == 0


def test_latency_quantiles_come_from_the_buckets() -> None:
    """A quantile is the upper bound of its bucket, capped by the largest duration."""
    stats = LatencyStats(
        bounds=(0.1, 1.0, 10.0),
        bucket_counts=(5, 4, 1, 0),
        count=10,
        total=9.0,
        minimum=0.05,
        maximum=7.0,
    )
    assert stats.quantile(0.5) == 0.1
    assert stats.quantile(0.9) == 1.0
    assert stats.quantile(1.0) == 7.0
    with pytest.raises(ValueError, match="quantile"):
        stats.quantile(0)
    assert LatencyStats(bounds=(1.0,), bucket_counts=(0, 0)).quantile(0.99) == 0.0


def test_buckets_must_increase() -> None:
    """Buckets out of order are refused with the reason."""
    with pytest.raises(ValueError, match="increasing"):
        Metrics(buckets=[1.0, 0.5])


async def test_opentelemetry_metrics_have_counts_and_durations(
    clock: FakeClock, meter_provider: MeterProvider, metric_reader: InMemoryMetricReader
) -> None:
    """The OpenTelemetry observer records run and attempt counters and duration
    histograms (in seconds) with workflow, step and outcome attributes."""
    observer = OpenTelemetryObserver(meter_provider=meter_provider, traces=False)
    app = Durably(MemoryStore(), clock=clock, observers=[observer])
    shop = build_shop(app, clock)
    async with app:
        await app.run(shop["ship"])

    data = metric_reader.get_metrics_data()
    assert data is not None
    points: dict[str, dict[tuple[tuple[str, object], ...], Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "durably"
            for metric in scope.metrics:
                points[metric.name] = {
                    tuple(sorted((point.attributes or {}).items())): point
                    for point in metric.data.data_points
                }
    runs = points["durably.workflow.runs"]
    assert [point.value for point in runs.values()] == [1]
    attempts = {
        (dict(key)["durably.step.name"], dict(key)["durably.step.outcome"]): point.value
        for key, point in points["durably.step.attempts"].items()
    }
    assert attempts == {
        ("pack", "completed"): 1,
        ("deliver", "retrying"): 1,
        ("deliver", "completed"): 1,
    }
    durations = {
        (dict(key)["durably.step.name"], dict(key)["durably.step.outcome"]): (
            point.count,
            point.sum,
        )
        for key, point in points["durably.step.duration"].items()
    }
    assert durations == {
        ("pack", "completed"): (1, 0.25),
        ("deliver", "retrying"): (1, 2.0),
        ("deliver", "completed"): (1, 2.0),
    }
    [run_duration] = points["durably.workflow.run.duration"].values()
    assert (run_duration.count, run_duration.sum) == (1, 4.25)
