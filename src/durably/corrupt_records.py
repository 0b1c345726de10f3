"""Recorded operations that cannot be read back: the run stops, the workflow is parked.

A replayed step result or recorded value that cannot be decoded (a truncated or
edited row, a serializer this app may not read, a value that no longer fits the
step's return type) or a recorded step error that cannot be read is a problem of the
stored history, not of the workflow's business. Raising it into the body would let
user code catch it and go on with made-up data, or fail the workflow and run its
compensations because of a bad row. Instead the run stops with :class:`CorruptHistory`
(a control-flow jump that ``except Exception`` cannot swallow) and the runner parks the
workflow with a :class:`~durably.errors.CorruptRecordError` that says which operation is
unreadable and what to do. Other workflows are not affected.

Signal payloads are not covered: a payload that does not fit the waiter's
``payload_type`` is raised into the body on the first run, so replay raises it too.
"""

from __future__ import annotations

import json

from durably.codec import PayloadCodec
from durably.error_records import rebuild_error
from durably.errors import CorruptRecordError, PayloadError, _ControlFlow
from durably.models import ErrorInfo, OperationRecord

#: Longest part of a cause quoted in a parked workflow's error (its message is stored).
MAX_CAUSE = 300


class CorruptHistory(_ControlFlow):
    """Stop the run: a recorded operation cannot be read back (the runner parks it)."""

    def __init__(self, error: CorruptRecordError) -> None:
        super().__init__(str(error))
        self.error = error


def _advice(workflow_id: str, from_step: str | None) -> str:
    fork = (
        ""
        if from_step is None
        else f", or fork it with `durably retry {workflow_id} --from-step {from_step}` to run "
        f"that operation and the rest again"
    )
    return (
        f"Nothing more of the workflow ran and no compensation ran. Look at it with "
        f"`durably show {workflow_id}`; repair the stored row (or deploy code that can read "
        f"it) and run `durably resume {workflow_id}`{fork}"
    )


def _shortened(text: str) -> str:
    return text if len(text) <= MAX_CAUSE else text[:MAX_CAUSE] + "…"


def unreadable_operation(
    workflow_id: str, record: OperationRecord, cause: str
) -> CorruptRecordError:
    """The error a workflow is parked with when its operation ``record`` is unreadable."""
    return CorruptRecordError(
        f"workflow {workflow_id!r} is parked: its recorded {record.kind.lower()} "
        f"{record.name!r} (operation #{record.seq}) is corrupt: {_shortened(cause)}. "
        f"{_advice(workflow_id, str(record.seq) if record.seq >= 0 else None)}.",
        workflow_id=workflow_id,
        seq=record.seq,
        explained=True,
    )


def unreadable_history(workflow_id: str, error: CorruptRecordError) -> CorruptRecordError:
    """The error a workflow is parked with when the store cannot read its rows."""
    parked = CorruptRecordError(
        f"workflow {workflow_id!r} is parked: {_shortened(str(error))}. "
        f"{_advice(workflow_id, 'N')} (N: the number of the unreadable operation).",
        workflow_id=workflow_id,
        explained=True,
    )
    parked.__cause__ = error
    return parked


def decode_recorded_result(
    codec: PayloadCodec, record: OperationRecord, hint: object, *, workflow_id: str, what: str
) -> object:
    """The recorded result of ``record``, decoded into ``hint``.

    Raises:
        CorruptRecordError: the result cannot be decoded (see :func:`unreadable_operation`).
    """
    try:
        return codec.decode(record.result, record.serializer, hint, what=what)
    except PayloadError as error:
        raise unreadable_operation(workflow_id, record, str(error)) from None


def recorded_error(record: OperationRecord, *, workflow_id: str) -> Exception:
    """The exception a FAILED ``record`` recorded, rebuilt (see ``rebuild_error``).

    Raises:
        CorruptRecordError: the recorded error is missing or unreadable.
    """
    if record.error is None:
        raise unreadable_operation(workflow_id, record, "it failed but its error is missing")
    try:
        data = json.loads(record.error)
        info = ErrorInfo(
            type=_text(data["type"]),
            module=_optional_text(data.get("module")),
            message=_text(data["message"]),
            traceback=_optional_text(data.get("traceback")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise unreadable_operation(
            workflow_id, record, f"its recorded error is unreadable: {record.error!r}"
        ) from None
    return rebuild_error(info)


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, not {type(value).__name__}")
    return value


def _optional_text(value: object) -> str | None:
    return None if value is None else _text(value)
