"""Pure replay decisions: what a durable operation does given the recorded history.

No I/O and no asyncio: the context asks these functions and acts on the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from durably.errors import NonDeterminismError
from durably.models import History, OperationKind, OperationRecord

#: What ``ctx.patched()`` does (see :func:`patch_decision`).
PatchAnswer = Literal["recorded", "old_path", "live"]


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
        record
        for seq, record in sorted(history.operations.items())
        if seq >= 0 and seq not in seen and record.kind is not OperationKind.PATCH
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


def next_operation_seq(history: History, seq: int) -> int:
    """The sequence number the next operation takes when ``seq`` is next: ``seq``, or
    the first one after the patch markers recorded from ``seq`` on.

    A marker carries no result; passing over the markers that the code does not ask
    about lets a change's ``if ctx.patched(...)`` be deleted, with its old branch, once
    no workflow started before the change is still running.
    """
    while (record := history.operations.get(seq)) is not None and (
        record.kind is OperationKind.PATCH
    ):
        seq += 1
    return seq


def patch_decision(
    history: History, *, seq: int, change_id: str, last_recorded_seq: int
) -> tuple[PatchAnswer, int]:
    """What ``ctx.patched(change_id)`` does when the next operation would take ``seq``.

    Returns:
        ``("recorded", marker_seq)``: the marker of this change is recorded there (after
        only other markers): the new path, replayed. ``("old_path", seq)``: the history
        holds another operation at the first position that is not a marker (or failed
        attempts, or a gap left by an operation still in flight when the run stopped):
        the run that recorded it took the old path, and replay must go on with it, the
        position untaken. ``("live", seq)``: nothing is recorded from there on: new code
        runs live and takes the new path, recording a marker at that position.
    """
    while (record := history.operations.get(seq)) is not None and (
        record.kind is OperationKind.PATCH
    ):
        if record.name == change_id:
            return "recorded", seq
        seq += 1
    if record is not None or seq in history.attempts or seq <= last_recorded_seq:
        return "old_path", seq
    return "live", seq


def compensation_seq(registration_index: int) -> int:
    """The sequence number under which a compensation is recorded (negative)."""
    return -(registration_index + 1)
