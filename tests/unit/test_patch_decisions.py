"""What ``ctx.patched()`` answers for every shape of recorded history (pure decisions)."""

from __future__ import annotations

from durably.models import (
    AttemptRecord,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
)
from durably.replay import next_operation_seq, patch_decision, unvisited_operations


def _operation(
    seq: int, kind: OperationKind = OperationKind.STEP, name: str = "s"
) -> OperationRecord:
    return OperationRecord(
        workflow_id="w",
        seq=seq,
        kind=kind,
        name=name,
        status=OperationStatus.COMPLETED,
        started_at=0,
        finished_at=0,
    )


def _marker(seq: int, change_id: str) -> OperationRecord:
    return _operation(seq, OperationKind.PATCH, change_id)


def _history(*operations: OperationRecord, attempts: tuple[int, ...] = ()) -> History:
    return History(
        operations={operation.seq: operation for operation in operations},
        attempts={
            seq: [
                AttemptRecord(
                    workflow_id="w", seq=seq, attempt=1, error="{}", started_at=0, finished_at=0
                )
            ]
            for seq in attempts
        },
    )


def _decide(history: History, seq: int, change_id: str = "fix") -> tuple[str, int]:
    last = max((s for s in history.operations if s >= 0), default=-1)
    return patch_decision(history, seq=seq, change_id=change_id, last_recorded_seq=last)


def test_past_the_end_of_the_history_the_new_path_runs_live() -> None:
    """Nothing recorded from here on: new code is running, so it takes the new path."""
    assert _decide(_history(_operation(0)), 1) == ("live", 1)
    assert _decide(_history(), 0) == ("live", 0)


def test_a_recorded_marker_replays_the_new_path() -> None:
    """The run that recorded this history took the new path here."""
    assert _decide(_history(_marker(1, "fix"), _operation(2)), 1) == ("recorded", 1)


def test_another_operation_here_means_the_old_path() -> None:
    """Recorded by the old code: replay must go on with what it recorded."""
    assert _decide(_history(_operation(0), _operation(1)), 1) == ("old_path", 1)


def test_failed_attempts_here_mean_the_old_path() -> None:
    """A step of the old code was being retried at this position."""
    assert _decide(_history(_operation(0), attempts=(1,)), 1) == ("old_path", 1)


def test_a_gap_before_later_records_means_the_old_path() -> None:
    """An operation of the old code was in flight here (a later one, run concurrently,
    was recorded): the old code reached this position."""
    assert _decide(_history(_operation(0), _operation(2)), 1) == ("old_path", 1)


def test_markers_of_other_changes_are_looked_past() -> None:
    """Several changes at one place, asked in any order, each find their marker."""
    history = _history(_marker(0, "first"), _marker(1, "second"), _operation(2))
    assert _decide(history, 0, "second") == ("recorded", 1)
    assert _decide(history, 0, "first") == ("recorded", 0)
    assert _decide(history, 0, "third") == ("old_path", 2)
    assert _decide(_history(_marker(0, "removed")), 0) == ("live", 1)


def test_the_next_operation_passes_over_markers_nobody_asks_about() -> None:
    """Deleting a patched() call (and its old branch) keeps new-path histories replaying."""
    history = _history(_marker(0, "a"), _marker(1, "b"), _operation(2), _marker(3, "c"))
    assert next_operation_seq(history, 0) == 2
    assert next_operation_seq(history, 2) == 2
    assert next_operation_seq(history, 3) == 4


def test_an_unreached_marker_is_not_a_removed_operation() -> None:
    """A body that ends before a trailing marker has not diverged from its history."""
    history = _history(_operation(0), _marker(1, "fix"))
    assert unvisited_operations(history, [0]) == []
    assert unvisited_operations(_history(_operation(0), _operation(1)), [0]) == [_operation(1)]
