"""In-process metrics: workflow runs by outcome, step attempts by outcome, latencies.

:class:`Metrics` is an observer (``Durably(observers=[metrics])``) that counts and
times what the app runs, with the standard library only. Read it with
:meth:`Metrics.snapshot`; export it as Prometheus text with
:meth:`MetricsSnapshot.prometheus_text`, or use
:class:`durably.observability.otel.OpenTelemetryObserver` to send the same numbers to
OpenTelemetry. Durations come from the app's clock (a ``FakeClock`` in tests), and only
live attempts are counted: steps replayed from history run nothing.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from durably.observers import AttemptEnd, AttemptInfo, Observer, RunEnd, RunInfo

K = TypeVar("K")

#: Histogram bucket upper bounds, in seconds (the last bucket is +Inf).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Durations seen, in seconds: count, sum, extremes and a histogram.

    ``bucket_counts[i]`` counts durations up to ``bounds[i]`` and above the previous
    bound; the last entry counts those above every bound.
    """

    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = 0.0

    @property
    def mean(self) -> float:
        """The average duration (0.0 when nothing was seen)."""
        return self.total / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """An upper estimate of the ``q`` quantile (0 < q <= 1): the bound of the bucket
        that holds it, never more than the largest duration seen (0.0 when empty).

        Raises:
            ValueError: ``q`` is not in (0, 1].
        """
        if not 0 < q <= 1:
            raise ValueError(f"a quantile is in (0, 1], not {q!r}")
        if not self.count:
            return 0.0
        rank = math.ceil(q * self.count)
        seen = 0
        for index, in_bucket in enumerate(self.bucket_counts):
            seen += in_bucket
            if seen >= rank:
                bound = self.bounds[index] if index < len(self.bounds) else math.inf
                return min(bound, self.maximum)
        return self.maximum

    def merged(self, other: LatencyStats) -> LatencyStats:
        """Both sets of durations together (the bounds must be the same)."""
        if other.bounds != self.bounds:
            raise ValueError("latency stats with different buckets cannot be merged")
        return LatencyStats(
            bounds=self.bounds,
            bucket_counts=tuple(
                a + b for a, b in zip(self.bucket_counts, other.bucket_counts, strict=True)
            ),
            count=self.count + other.count,
            total=self.total + other.total,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
        )


@dataclass(slots=True)
class _Histogram:
    bounds: tuple[float, ...]
    buckets: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = 0.0

    def __post_init__(self) -> None:
        self.buckets = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        self.count += 1
        self.total += seconds
        self.minimum = min(self.minimum, seconds)
        self.maximum = max(self.maximum, seconds)

    def frozen(self) -> LatencyStats:
        return LatencyStats(
            bounds=self.bounds,
            bucket_counts=tuple(self.buckets),
            count=self.count,
            total=self.total,
            minimum=self.minimum,
            maximum=self.maximum,
        )


#: (workflow name, outcome)
RunKey = tuple[str, str]
#: (workflow name, step name, outcome)
AttemptKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The metrics at one moment. Filters left as None match everything.

    Run outcomes are the status a run wrote, in lower case (``"completed"``,
    ``"failed"``, ``"suspended"``, ``"parked"``...) or ``"abandoned"``; attempt
    outcomes are those of :class:`~durably.observers.AttemptOutcome`.
    """

    bounds: tuple[float, ...]
    runs_started: Counter[str]
    runs: Counter[RunKey]
    recoveries: Counter[str]
    attempts: Counter[AttemptKey]
    run_latency: dict[RunKey, LatencyStats]
    step_latency: dict[AttemptKey, LatencyStats]

    def workflow_runs(self, outcome: str | None = None, *, workflow: str | None = None) -> int:
        """How many runs ended (with ``outcome``, of ``workflow``)."""
        return sum(
            count
            for (name, ended), count in self.runs.items()
            if (workflow is None or name == workflow) and (outcome is None or ended == outcome)
        )

    def step_attempts(
        self, outcome: str | None = None, *, step: str | None = None, workflow: str | None = None
    ) -> int:
        """How many live attempts of steps and compensations ended (with ``outcome``)."""
        return sum(
            count for key, count in self.attempts.items() if _matches(key, workflow, step, outcome)
        )

    @property
    def retries(self) -> int:
        """How many attempts failed and were retried."""
        return self.step_attempts("retrying")

    def step_latency_of(
        self, step: str | None = None, *, workflow: str | None = None, outcome: str | None = None
    ) -> LatencyStats:
        """The durations of the matching attempts (all outcomes unless given)."""
        return _merge(
            self.bounds,
            (
                stats
                for key, stats in self.step_latency.items()
                if _matches(key, workflow, step, outcome)
            ),
        )

    def run_latency_of(
        self, workflow: str | None = None, *, outcome: str | None = None
    ) -> LatencyStats:
        """The durations of the matching runs (from claim to end, not the workflow's
        whole life: a suspended workflow has several runs)."""
        return _merge(
            self.bounds,
            (
                stats
                for (name, ended), stats in self.run_latency.items()
                if (workflow is None or name == workflow) and (outcome is None or ended == outcome)
            ),
        )

    def prometheus_text(self, prefix: str = "durably") -> str:
        """The metrics in Prometheus' text exposition format (counters and histograms
        in seconds), to serve from your own ``/metrics`` endpoint."""
        lines = [
            f"# TYPE {prefix}_workflow_runs_started_total counter",
            *(
                f"{prefix}_workflow_runs_started_total{_labels(workflow=name)} {count}"
                for name, count in sorted(self.runs_started.items())
            ),
            f"# TYPE {prefix}_workflow_runs_total counter",
            *(
                f"{prefix}_workflow_runs_total{_labels(workflow=name, outcome=ended)} {count}"
                for (name, ended), count in sorted(self.runs.items())
            ),
            f"# TYPE {prefix}_workflow_recoveries_total counter",
            *(
                f"{prefix}_workflow_recoveries_total{_labels(workflow=name)} {count}"
                for name, count in sorted(self.recoveries.items())
            ),
            f"# TYPE {prefix}_step_attempts_total counter",
            *(
                f"{prefix}_step_attempts_total"
                f"{_labels(workflow=name, step=step, outcome=ended)} {count}"
                for (name, step, ended), count in sorted(self.attempts.items())
            ),
            f"# TYPE {prefix}_step_duration_seconds histogram",
        ]
        for (name, step, ended), stats in sorted(self.step_latency.items()):
            labels = {"workflow": name, "step": step, "outcome": ended}
            lines.extend(_histogram_lines(f"{prefix}_step_duration_seconds", labels, stats))
        lines.append(f"# TYPE {prefix}_workflow_run_duration_seconds histogram")
        for (name, ended), stats in sorted(self.run_latency.items()):
            labels = {"workflow": name, "outcome": ended}
            lines.extend(_histogram_lines(f"{prefix}_workflow_run_duration_seconds", labels, stats))
        return "\n".join(lines) + "\n"


class Metrics(Observer):
    """An observer counting workflow runs and step attempts and timing them.

    Thread-safe: the hooks run on the app's event loop, :meth:`snapshot` may be called
    from any thread. Labels are workflow names, step names and outcomes, never ids, so
    the number of series stays small.

    Args:
        buckets: Histogram bucket upper bounds in seconds, increasing.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(float(bound) for bound in buckets)
        if not bounds or any(b <= a for a, b in itertools.pairwise(bounds)):
            raise ValueError(f"histogram buckets must be increasing, not {buckets!r}")
        self._bounds = bounds
        self._lock = threading.Lock()
        self._runs_started: Counter[str] = Counter()
        self._runs: Counter[RunKey] = Counter()
        self._recoveries: Counter[str] = Counter()
        self._attempts: Counter[AttemptKey] = Counter()
        self._run_latency: dict[RunKey, _Histogram] = {}
        self._step_latency: dict[AttemptKey, _Histogram] = {}

    def on_workflow_run_start(self, run: RunInfo) -> None:
        """Count the run (and the recovery, when it is one)."""
        with self._lock:
            self._runs_started[run.workflow_name] += 1
            if run.recovered:
                self._recoveries[run.workflow_name] += 1

    def on_workflow_run_end(self, run: RunInfo, end: RunEnd) -> None:
        """Count the run's outcome and time it."""
        key = (run.workflow_name, end.outcome)
        with self._lock:
            self._runs[key] += 1
            self._histogram(self._run_latency, key).observe(
                _seconds(end.finished_at - run.started_at)
            )

    def on_step_attempt_end(self, attempt: AttemptInfo, end: AttemptEnd) -> None:
        """Count the attempt's outcome and time it."""
        key = (attempt.workflow_name, attempt.step_name, end.outcome.value)
        with self._lock:
            self._attempts[key] += 1
            self._histogram(self._step_latency, key).observe(
                _seconds(end.finished_at - attempt.started_at)
            )

    def snapshot(self) -> MetricsSnapshot:
        """A copy of the metrics now."""
        with self._lock:
            return MetricsSnapshot(
                bounds=self._bounds,
                runs_started=Counter(self._runs_started),
                runs=Counter(self._runs),
                recoveries=Counter(self._recoveries),
                attempts=Counter(self._attempts),
                run_latency={key: value.frozen() for key, value in self._run_latency.items()},
                step_latency={key: value.frozen() for key, value in self._step_latency.items()},
            )

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._lock:
            for counter in (self._runs_started, self._runs, self._recoveries, self._attempts):
                counter.clear()
            self._run_latency.clear()
            self._step_latency.clear()

    def _histogram(self, table: dict[K, _Histogram], key: K) -> _Histogram:
        histogram = table.get(key)
        if histogram is None:
            histogram = table[key] = _Histogram(self._bounds)
        return histogram


def _seconds(micros: int) -> float:
    return max(micros, 0) / 1_000_000


def _matches(key: AttemptKey, workflow: str | None, step: str | None, outcome: str | None) -> bool:
    name, step_name, ended = key
    return (
        (workflow is None or name == workflow)
        and (step is None or step_name == step)
        and (outcome is None or ended == outcome)
    )


def _merge(bounds: tuple[float, ...], stats: Iterable[LatencyStats]) -> LatencyStats:
    total = LatencyStats(bounds=bounds, bucket_counts=(0,) * (len(bounds) + 1))
    for each in stats:
        total = total.merged(each)
    return total


def _labels(**labels: str) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _histogram_lines(name: str, labels: dict[str, str], stats: LatencyStats) -> list[str]:
    lines = []
    cumulative = 0
    for bound, in_bucket in zip((*stats.bounds, math.inf), stats.bucket_counts, strict=True):
        cumulative += in_bucket
        le = "+Inf" if bound == math.inf else repr(bound)
        lines.append(f"{name}_bucket{_labels(**labels, le=le)} {cumulative}")
    lines.append(f"{name}_sum{_labels(**labels)} {stats.total!r}")
    lines.append(f"{name}_count{_labels(**labels)} {stats.count}")
    return lines
