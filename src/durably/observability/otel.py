"""OpenTelemetry traces and metrics for durably (``pip install 'durably[otel]'``).

:class:`OpenTelemetryObserver` turns the observer hooks into spans and metric points:

- one span per **run** of a workflow (``workflow <name>``): from its claim to its end
  (finished, suspended, parked or abandoned). A workflow that sleeps, waits for a
  signal or is recovered after a crash has several runs; each is a span carrying
  ``durably.workflow.id``, and it links to the previous run's span when that run
  happened in this process. The first run is a child of the span that was current
  where ``app.start()`` was called.
- one span per live **attempt** of a step (``step <name>``) or compensation
  (``compensation <name>``), a child of its run's span. Steps replayed from history
  run nothing and produce no span. While a step's function runs its span is the
  current span, so spans made by your code or by instrumented libraries inside the
  step nest under it.
- counters ``durably.workflow.runs`` and ``durably.step.attempts`` (by workflow,
  step and outcome) and histograms ``durably.workflow.run.duration`` and
  ``durably.step.duration`` (seconds).

Span times come from the app's clock, so a ``FakeClock`` gives reproducible traces.
"""

from __future__ import annotations

from collections import OrderedDict
from contextvars import Token
from dataclasses import dataclass

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace
    from opentelemetry.trace import Link, Span, Status, StatusCode
except ImportError as error:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "durably's OpenTelemetry support needs the otel extra: pip install 'durably[otel]' "
        f"({error})"
    ) from error

from durably.models import OperationKind, WorkflowStatus
from durably.observers import AttemptEnd, AttemptInfo, AttemptOutcome, Observer, RunEnd, RunInfo

#: The instrumentation scope name of durably's tracer and meter.
INSTRUMENTATION_NAME = "durably"

#: Run statuses whose span is marked as an error.
ERROR_STATUSES = frozenset(
    {
        WorkflowStatus.FAILED,
        WorkflowStatus.COMPENSATED,
        WorkflowStatus.COMPENSATION_FAILED,
        WorkflowStatus.PARKED,
    }
)

#: How many finished runs to remember, to link a workflow's next run to its last one.
LINKED_RUNS_KEPT = 10_000


@dataclass(slots=True)
class _Open:
    """A span in progress and the context token that made it current."""

    span: Span
    token: Token[otel_context.Context]


class OpenTelemetryObserver(Observer):
    """Spans for workflow runs and step attempts, and metrics, sent to OpenTelemetry.

    Pass it as ``Durably(observers=[OpenTelemetryObserver()])``; configure exporters
    on the OpenTelemetry SDK as usual.

    Args:
        tracer_provider: Where spans go (default: the global tracer provider).
        meter_provider: Where metrics go (default: the global meter provider).
        traces: Make spans.
        metrics: Record metrics.

    Attributes set on spans: ``durably.workflow.id``, ``durably.workflow.name``,
    ``durably.workflow.version``, ``durably.executor.id``, ``durably.run.recovered``,
    ``durably.run.outcome`` on run spans; ``durably.workflow.id``,
    ``durably.workflow.name``, ``durably.step.name``, ``durably.step.kind``,
    ``durably.step.seq``, ``durably.step.attempt``, ``durably.step.idempotency_key``,
    ``durably.step.outcome`` on attempt spans. A failed attempt (also one that will be
    retried) and a run that ends ``FAILED``, ``COMPENSATED``, ``COMPENSATION_FAILED``
    or ``PARKED`` get an error status and the exception as an event.
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: otel_metrics.MeterProvider | None = None,
        traces: bool = True,
        metrics: bool = True,
    ) -> None:
        from durably import __version__

        self._tracer = (
            trace.get_tracer(INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider)
            if traces
            else None
        )
        self._runs: dict[int, _Open] = {}
        self._attempts: dict[int, _Open] = {}
        self._last_run: OrderedDict[str, trace.SpanContext] = OrderedDict()
        self._instruments: _Instruments | None = None
        if metrics:
            meter = otel_metrics.get_meter(
                INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider
            )
            self._instruments = _Instruments(meter)

    # -- runs -----------------------------------------------------------------------

    def on_workflow_run_start(self, run: RunInfo) -> None:
        """Open the run's span and make it current for the run's task."""
        if self._tracer is None:
            return
        previous = self._last_run.get(run.workflow_id)
        span = self._tracer.start_span(
            f"workflow {run.workflow_name}",
            start_time=_nanos(run.started_at),
            links=[Link(previous, {"durably.link": "previous run"})] if previous else None,
            attributes={
                "durably.workflow.id": run.workflow_id,
                "durably.workflow.name": run.workflow_name,
                "durably.workflow.version": run.version,
                "durably.executor.id": run.executor_id,
                "durably.run.recovered": run.recovered,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._runs[id(run)] = _Open(span, token)

    def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
        """Close the run's span with its outcome; count and time the run."""
        if self._instruments is not None:
            self._instruments.record_run(run, end)
        opened = self._runs.pop(id(run), None)
        if opened is None:
            return
        span = opened.span
        span.set_attribute("durably.run.outcome", end.outcome)
        if end.status in ERROR_STATUSES:
            if end.error is not None:
                span.record_exception(end.error, timestamp=_nanos(end.finished_at))
            span.set_status(Status(StatusCode.ERROR, _describe(end.status, end.error)))
        elif end.status is None and end.error is not None:
            span.add_event(
                "abandoned", {"durably.reason": str(end.error)}, timestamp=_nanos(end.finished_at)
            )
        _detach(opened.token)
        span.end(end_time=_nanos(end.finished_at))
        self._remember(run.workflow_id, span.get_span_context())

    # -- attempts -------------------------------------------------------------------

    def on_step_attempt_start(self, attempt: AttemptInfo) -> None:
        """Open the attempt's span and make it current while the step runs."""
        if self._tracer is None:
            return
        kind = "compensation" if attempt.kind is OperationKind.COMPENSATION else "step"
        span = self._tracer.start_span(
            f"{kind} {attempt.step_name}",
            start_time=_nanos(attempt.started_at),
            attributes={
                "durably.workflow.id": attempt.workflow_id,
                "durably.workflow.name": attempt.workflow_name,
                "durably.step.name": attempt.step_name,
                "durably.step.kind": kind,
                "durably.step.seq": attempt.seq,
                "durably.step.attempt": attempt.attempt,
                "durably.step.idempotency_key": attempt.idempotency_key,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._attempts[id(attempt)] = _Open(span, token)

    def on_step_attempt_end(self, attempt: AttemptInfo, end: AttemptEnd) -> None:
        """Close the attempt's span with its outcome; count and time the attempt."""
        if self._instruments is not None:
            self._instruments.record_attempt(attempt, end)
        opened = self._attempts.pop(id(attempt), None)
        if opened is None:
            return
        span = opened.span
        span.set_attribute("durably.step.outcome", end.outcome.value)
        if end.error is not None:
            if end.outcome is AttemptOutcome.INTERRUPTED:
                span.add_event(
                    "interrupted",
                    {"durably.reason": type(end.error).__name__},
                    timestamp=_nanos(end.finished_at),
                )
            else:
                span.record_exception(end.error, timestamp=_nanos(end.finished_at))
                description = f"{type(end.error).__name__}: {end.error}"
                span.set_status(Status(StatusCode.ERROR, description))
        _detach(opened.token)
        span.end(end_time=_nanos(end.finished_at))

    def _remember(self, workflow_id: str, span_context: trace.SpanContext) -> None:
        self._last_run[workflow_id] = span_context
        self._last_run.move_to_end(workflow_id)
        while len(self._last_run) > LINKED_RUNS_KEPT:
            self._last_run.popitem(last=False)


class _Instruments:
    """durably's metric instruments on one meter."""

    def __init__(self, meter: otel_metrics.Meter) -> None:
        self.runs = meter.create_counter(
            "durably.workflow.runs", unit="{run}", description="Workflow runs ended, by outcome"
        )
        self.run_duration = meter.create_histogram(
            "durably.workflow.run.duration",
            unit="s",
            description="Duration of workflow runs (claim to end)",
        )
        self.attempts = meter.create_counter(
            "durably.step.attempts",
            unit="{attempt}",
            description="Live step and compensation attempts ended, by outcome",
        )
        self.attempt_duration = meter.create_histogram(
            "durably.step.duration", unit="s", description="Duration of live step attempts"
        )

    def record_run(self, run: RunInfo, end: RunEnd) -> None:
        attributes = {
            "durably.workflow.name": run.workflow_name,
            "durably.run.outcome": end.outcome,
        }
        self.runs.add(1, attributes)
        self.run_duration.record(_seconds(end.finished_at - run.started_at), attributes)

    def record_attempt(self, attempt: AttemptInfo, end: AttemptEnd) -> None:
        attributes = {
            "durably.workflow.name": attempt.workflow_name,
            "durably.step.name": attempt.step_name,
            "durably.step.kind": attempt.kind.value.lower(),
            "durably.step.outcome": end.outcome.value,
        }
        self.attempts.add(1, attributes)
        self.attempt_duration.record(_seconds(end.finished_at - attempt.started_at), attributes)


def _nanos(micros: int) -> int:
    return micros * 1000


def _seconds(micros: int) -> float:
    return max(micros, 0) / 1_000_000


def _describe(status: WorkflowStatus | None, error: BaseException | None) -> str:
    if error is None:
        return f"workflow ended {status}"
    return f"workflow ended {status}: {type(error).__name__}: {error}"


def _detach(token: Token[otel_context.Context]) -> None:
    otel_context.detach(token)
