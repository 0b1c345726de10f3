"""Pure replay and saga decisions: no event loop, no store."""

from __future__ import annotations

import pytest

from durably.errors import NonDeterminismError
from durably.models import History, OperationKind, OperationRecord, OperationStatus
from durably.replay import (
    check_fully_replayed,
    compensation_seq,
    recorded_operation,
    unvisited_operations,
)
from durably.saga import CompensationStack


def record(seq: int, kind: OperationKind = OperationKind.STEP, name: str = "a") -> OperationRecord:
    """A completed operation record."""
    return OperationRecord(
        workflow_id="w", seq=seq, kind=kind, name=name, status=OperationStatus.COMPLETED
    )


def test_unrecorded_operation_runs_live() -> None:
    """No record at the sequence number means: execute."""
    assert (
        recorded_operation(History(), workflow_id="w", seq=0, kind=OperationKind.STEP, name="a")
        is None
    )


def test_matching_record_is_replayed() -> None:
    """A record of the same kind and name is returned for replay."""
    history = History(operations={0: record(0)})
    found = recorded_operation(history, workflow_id="w", seq=0, kind=OperationKind.STEP, name="a")
    assert found == record(0)


@pytest.mark.parametrize(("kind", "name"), [(OperationKind.STEP, "b"), (OperationKind.SLEEP, "a")])
def test_other_kind_or_name_is_non_determinism(kind: OperationKind, name: str) -> None:
    """A different kind or name at the same position raises NonDeterminismError."""
    history = History(operations={0: record(0)})
    with pytest.raises(NonDeterminismError, match="#0"):
        recorded_operation(history, workflow_id="w", seq=0, kind=kind, name=name)


def test_unvisited_operations_ignore_compensations() -> None:
    """Compensations (negative seq) are not body operations."""
    history = History(
        operations={
            0: record(0),
            1: record(1, name="b"),
            -1: record(-1, OperationKind.COMPENSATION),
        }
    )
    assert unvisited_operations(history, [0]) == [record(1, name="b")]
    with pytest.raises(NonDeterminismError, match="'b'"):
        check_fully_replayed(history, workflow_id="w", visited=[0])
    check_fully_replayed(history, workflow_id="w", visited=[0, 1])


def test_compensation_sequence_numbers_are_negative_and_distinct() -> None:
    """Registration 0 is recorded at -1, 1 at -2."""
    assert [compensation_seq(i) for i in range(3)] == [-1, -2, -3]


def test_unwind_order_is_reverse_registration_of_armed_entries() -> None:
    """Only armed compensations unwind, last registered first."""
    stack = CompensationStack()
    stack.register("a", print, armed=True)
    unarmed = stack.register("b", print, armed=False)
    stack.register("c", print, armed=True)
    assert [entry.name for entry in stack.unwind_order()] == ["c", "a"]
    unarmed.armed = True
    assert [entry.name for entry in stack.unwind_order()] == ["c", "b", "a"]
    assert stack.has_armed
    assert not CompensationStack().has_armed
