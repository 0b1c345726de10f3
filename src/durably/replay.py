"""Pure replay decisions: what a durable operation does given the recorded history.

No I/O and no asyncio: the context asks these functions and acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from durably.errors import NonDeterminismError
from durably.models import History, OperationKind, OperationRecord


def recorded_operation(
    history: History,
    *,
    workflow_id: str,
    seq: int,
    kind: OperationKind,
    name: str,
) -> OperationRecord | None:
    """The record at ``seq`` if the operation was recorded, None if it runs live.

    Raises:
        NonDeterminismError: the record at ``seq`` is of another kind or name: the
            workflow's code no longer takes the path it took when it was recorded.
    """
    record = history.operations.get(seq)
    if record is None:
        return None
    if record.kind != kind or record.name != name:
        raise NonDeterminismError(
            f"workflow {workflow_id!r} is not deterministic: at operation #{seq} the "
            f"history records {record.kind.lower()} {record.name!r} but the code now runs "
            f"{kind.lower()} {name!r}. Deploy code that takes the recorded path (use "
            f"ctx.patched() for changes to running workflows), then resume the workflow."
        )
    return record


def unvisited_operations(history: History, visited: Iterable[int]) -> list[OperationRecord]:
    """Recorded body operations that a finished replay never reached (seq >= 0)."""
    seen = set(visited)
    return [
        record for seq, record in sorted(history.operations.items()) if seq >= 0 and seq not in seen
    ]


def check_fully_replayed(history: History, *, workflow_id: str, visited: Iterable[int]) -> None:
    """Raise when the body ended without reaching every recorded operation.

    Raises:
        NonDeterminismError: naming the first operation the code no longer reaches.
    """
    missing = unvisited_operations(history, visited)
    if missing:
        first = missing[0]
        raise NonDeterminismError(
            f"workflow {workflow_id!r} is not deterministic: it finished without reaching "
            f"{first.kind.lower()} {first.name!r} recorded at operation #{first.seq}. "
            f"Deploy code that takes the recorded path, then resume the workflow."
        )


def compensation_seq(registration_index: int) -> int:
    """The sequence number under which a compensation is recorded (negative)."""
    return -(registration_index + 1)
