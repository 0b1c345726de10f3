"""The timeline's Gantt geometry: bars on the workflow's span, open-ended ones, failed
attempts as marks, and sleeps that are over."""

from __future__ import annotations

from typing import Any

from durably.admin.inspection import RETRYING, TimelineEntry
from durably.dashboard.gantt import MIN_WIDTH, build_gantt
from durably.models import AttemptRecord, OperationKind, WorkflowRecord, WorkflowStatus


def _entry(seq: int, kind: OperationKind | None, status: str, **fields: Any) -> TimelineEntry:
    values: dict[str, Any] = {
        "name": f"op{seq}",
        "attempts": 1,
        "started_at": None,
        "finished_at": None,
        "wake_at": None,
        "result": None,
        "serializer": "json",
        "error": None,
        "failed_attempts": (),
        "signal": None,
    }
    values.update(fields)
    return TimelineEntry(seq=seq, kind=kind, status=status, **values)


def _record(status: WorkflowStatus, finished_at: int | None) -> WorkflowRecord:
    return WorkflowRecord(
        workflow_id="w", workflow_name="n", status=status, created_at=1_000, finished_at=finished_at
    )


def test_bars_are_placed_on_the_workflows_span() -> None:
    failure = AttemptRecord(
        workflow_id="w", seq=1, attempt=1, error="{}", started_at=1_100, finished_at=1_200
    )
    timeline = (
        _entry(0, OperationKind.STEP, "COMPLETED", started_at=1_000, finished_at=1_100),
        _entry(
            1,
            OperationKind.STEP,
            "COMPLETED",
            started_at=1_100,
            finished_at=1_500,
            attempts=2,
            failed_attempts=(failure,),
        ),
        _entry(2, OperationKind.SIGNAL, "WAITING", started_at=1_500),
    )
    gantt = build_gantt(_record(WorkflowStatus.SUSPENDED, None), timeline, now=2_000)
    assert (gantt.start, gantt.end) == (1_000, 2_000)
    first, second, waiting = gantt.bars
    assert (first.left, first.width, first.open_ended) == (0.0, 10.0, False)
    assert (second.left, second.width) == (10.0, 40.0)
    assert [(mark.left, mark.width) for mark in second.marks] == [(10.0, 10.0)]
    assert (waiting.left, waiting.width, waiting.open_ended) == (50.0, 50.0, True)
    assert (waiting.kind, waiting.state, waiting.label) == ("signal", "waiting", "WAITING")


def test_instant_operations_stay_visible_and_inside_the_chart() -> None:
    timeline = (
        _entry(0, OperationKind.NOW, "COMPLETED", started_at=3_000, finished_at=3_000),
        _entry(-1, OperationKind.COMPENSATION, "COMPLETED", started_at=3_000, finished_at=3_000),
    )
    gantt = build_gantt(_record(WorkflowStatus.COMPENSATED, 3_000), timeline, now=9_000)
    for bar in gantt.bars:
        assert bar.width >= MIN_WIDTH and bar.left + bar.width <= 100.0
    assert [bar.kind for bar in gantt.bars] == ["now", "compensation"]


def test_a_sleep_past_its_wake_up_is_shown_as_elapsed_and_a_retry_as_retrying() -> None:
    timeline = (
        _entry(0, OperationKind.SLEEP, "WAITING", started_at=1_000, wake_at=1_400),
        _entry(1, None, RETRYING, started_at=1_500),
        _entry(2, OperationKind.SLEEP, "WAITING", started_at=1_600, wake_at=5_000),
    )
    gantt = build_gantt(_record(WorkflowStatus.RUNNING, None), timeline, now=2_000)
    elapsed, retrying, sleeping = gantt.bars
    assert (elapsed.label, elapsed.state, elapsed.open_ended) == ("ELAPSED", "completed", False)
    assert (elapsed.left, elapsed.width) == (0.0, 40.0)
    assert (retrying.kind, retrying.state) == ("retrying", "retrying")
    assert (sleeping.label, sleeping.state, sleeping.open_ended) == ("WAITING", "waiting", True)
