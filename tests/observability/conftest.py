"""Fixtures for the observability tests: OpenTelemetry SDK in memory, run watchers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from durably.observers import Observer, RunEnd, RunInfo


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    """Keeps every finished span."""
    return InMemorySpanExporter()


@pytest.fixture
def tracer_provider(span_exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    """A tracer provider exporting each span to ``span_exporter`` as it ends."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """Collects metrics on demand."""
    return InMemoryMetricReader()


@pytest.fixture
def meter_provider(metric_reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """A meter provider read by ``metric_reader``."""
    provider = MeterProvider(metric_readers=[metric_reader])
    yield provider
    provider.shutdown()


class RunWatcher(Observer):
    """Lets a test wait for runs to end, without sleeping."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []
        self._changed: asyncio.Event | None = None

    def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
        self.ended.append((run.workflow_id, end.outcome))
        if self._changed is not None:
            self._changed.set()

    async def wait_for(self, workflow_id: str, outcome: str, count: int = 1) -> None:
        """Return once ``count`` runs of the workflow ended with ``outcome``."""
        self._changed = self._changed or asyncio.Event()
        async with asyncio.timeout(60):  # a safety net against hangs, not a timing check
            while self.ended.count((workflow_id, outcome)) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def watcher() -> RunWatcher:
    """A run watcher to pass among an app's observers."""
    return RunWatcher()


def spans_named(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    """The finished spans whose name starts with ``prefix``, in the order they ended."""
    return [span for span in exporter.get_finished_spans() if span.name.startswith(prefix)]
