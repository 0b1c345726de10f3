"""The geometry of a workflow's step timeline drawn as a simple Gantt chart.

Each timeline entry becomes one row: a bar from its first start to its end (or to
now while it runs, or to its wake-up time while a sleep or signal wait is pending),
and a mark for each failed attempt. Positions are percentages of the workflow's
span, so the page needs no script to draw them.
"""

from __future__ import annotations

from dataclasses import dataclass

from durably.admin.inspection import RETRYING, TimelineEntry
from durably.models import OperationKind, OperationStatus, WorkflowRecord

#: The narrowest bar drawn, in percent of the span, so that instant operations show.
MIN_WIDTH = 0.6


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A failed attempt drawn on its row."""

    left: float
    width: float
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One row of the chart."""

    entry: TimelineEntry
    #: step, sleep, signal, compensation, retrying, event, stream (its entries and
    #: its end), child (its start), child-result (the wait for it: the bar spans the
    #: child's run), map or another kind, lower case.
    kind: str
    #: completed, failed, waiting or retrying.
    state: str
    #: The status shown: the recorded one, ELAPSED for a sleep that is over,
    #: CLOSED for the end of a stream, or NEW PATH for a ``ctx.patched()`` marker.
    label: str
    left: float
    width: float
    #: Whether the bar ends at "now" or at a pending wake-up, not at a recorded end.
    open_ended: bool
    marks: tuple[Mark, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Gantt:
    """The rows of a chart, with the span they are drawn on (epoch microseconds)."""

    start: int
    end: int
    bars: tuple[Bar, ...]


def _kind(entry: TimelineEntry) -> str:
    if entry.status == RETRYING:
        return "retrying"
    if entry.is_compensation or entry.kind is OperationKind.COMPENSATION:
        return "compensation"
    if entry.kind is OperationKind.STREAM_CLOSE:
        return "stream"
    if entry.kind is OperationKind.CHILD_RESULT:
        return "child-result"
    return "other" if entry.kind is None else str(entry.kind).lower()


def _state(entry: TimelineEntry) -> str:
    if entry.status == RETRYING:
        return "retrying"
    if entry.status == OperationStatus.FAILED:
        return "failed"
    if entry.status == OperationStatus.WAITING:
        return "waiting"
    return "completed"


def build_gantt(record: WorkflowRecord, timeline: tuple[TimelineEntry, ...], now: int) -> Gantt:
    """Lay out ``timeline`` on the span from the workflow's creation to its end (or to
    ``now``, or to the latest pending wake-up)."""
    start = record.created_at
    ends = [record.finished_at if record.finished_at is not None else now]
    for entry in timeline:
        for moment in (entry.started_at, entry.finished_at):
            if moment is not None:
                start = min(start, moment)
                ends.append(moment)
        for attempt in entry.failed_attempts:
            start = min(start, attempt.started_at)
    end = max(ends)
    if end <= start:
        end = start + 1
    span = end - start

    def position(begin: int, finish: int) -> tuple[float, float]:
        left = min(max((begin - start) / span * 100, 0.0), 100.0 - MIN_WIDTH)
        width = max((finish - begin) / span * 100, MIN_WIDTH)
        return round(left, 3), round(min(width, 100.0 - left), 3)

    last_seq = max((entry.seq for entry in timeline), default=-1)
    bars = []
    for entry in timeline:
        begin = entry.started_at if entry.started_at is not None else start
        state, label = _state(entry), entry.status
        if entry.kind is OperationKind.STREAM_CLOSE:
            label = "CLOSED"
        elif entry.kind is OperationKind.PATCH:
            label = "NEW PATH"  # the marker of a ctx.patched() change this run took
        finished_at = entry.finished_at
        if (
            entry.kind is OperationKind.SLEEP
            and finished_at is None
            and entry.wake_at is not None
            and (entry.wake_at <= now or record.status.is_terminal or entry.seq < last_seq)
        ):
            # A sleep's record keeps its wake-up time; once past it, the sleep is over.
            finished_at, state, label = max(entry.wake_at, begin), "completed", "ELAPSED"
        open_ended = finished_at is None
        finish = finished_at if finished_at is not None else end
        left, width = position(begin, max(finish, begin))
        marks = tuple(
            Mark(
                left=position(attempt.started_at, attempt.finished_at)[0],
                width=position(attempt.started_at, attempt.finished_at)[1],
                label=f"attempt {attempt.attempt} failed",
            )
            for attempt in entry.failed_attempts
        )
        bars.append(
            Bar(
                entry=entry,
                kind=_kind(entry),
                state=state,
                label=label,
                left=left,
                width=width,
                open_ended=open_ended,
                marks=marks,
            )
        )
    return Gantt(start=start, end=end, bars=tuple(bars))
