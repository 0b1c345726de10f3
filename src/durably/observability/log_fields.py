"""Workflow and step fields on log records: durably's own and, if you wish, yours.

Add :class:`WorkflowLogFilter` to a handler and every record that goes through it
carries ``workflow_id``, ``workflow_name``, ``step``, ``seq``, ``attempt`` and
``replaying``, taken from the context the record was logged in: durably's records
about a run, your records inside steps (``def`` steps in threads too), inside the
workflow body and inside compensations. Outside any workflow the fields hold the
filter's ``missing`` value. Nothing has to be passed along by hand.

``replaying`` is true while a workflow body re-runs operations that are already
recorded (after a suspension or a recovery): ``WorkflowLogFilter(drop_replayed=True)``
drops those records, so a body's log lines are not repeated on each run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import MutableMapping
from typing import Any

from durably.observability.scope import current_run_scope
from durably.step_call import running_step, workflow_body_context

#: The attributes :class:`WorkflowLogFilter` sets on records, in this order.
FIELDS = ("workflow_id", "workflow_name", "step", "seq", "attempt", "replaying")


def workflow_log_fields() -> dict[str, Any]:
    """The fields of the workflow run, step and attempt running in the current context.

    Returns:
        A dict with every name of :data:`FIELDS`; a value is None where it does not
        apply (``step``, ``seq`` and ``attempt`` outside a step, everything outside a
        workflow) and ``replaying`` is a bool.
    """
    step = running_step()
    scope = current_run_scope()
    body = workflow_body_context()
    workflow_id = step.workflow_id if step is not None else None
    if workflow_id is None and scope is not None:
        workflow_id = scope.workflow_id
    return {
        "workflow_id": workflow_id,
        "workflow_name": None if scope is None else scope.workflow_name,
        "step": None if step is None else step.name,
        "seq": None if step is None else step.seq,
        "attempt": None if step is None else step.attempt,
        "replaying": bool(getattr(body, "is_replaying", False)),
    }


class WorkflowLogFilter(logging.Filter):
    """Sets the workflow and step fields (:data:`FIELDS`) on every record it sees.

    Add it to a handler (``handler.addFilter(WorkflowLogFilter())``) so that records
    of every logger, durably's and yours, are enriched; then use the fields in a
    format (``"%(workflow_id)s %(step)s %(message)s"``) or a structured formatter
    such as :class:`JsonLogFormatter`. A field already set on the record (through
    ``extra=``) is kept.

    Args:
        missing: The value of a field that does not apply (default None; ``"-"``
            reads better in plain-text formats).
        drop_replayed: Drop records logged by a workflow body while it replays
            recorded operations.
    """

    def __init__(self, *, missing: object = None, drop_replayed: bool = False) -> None:
        super().__init__()
        self._missing = missing
        self._drop_replayed = drop_replayed

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the fields; False (drop it) for a replayed record when asked to."""
        fields = workflow_log_fields()
        if self._drop_replayed and fields["replaying"]:
            return False
        for name, value in fields.items():
            if name not in record.__dict__:
                setattr(record, name, self._missing if value is None else value)
        return True


def add_workflow_fields(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding the workflow and step fields that apply.

    Put it in structlog's ``processors`` list; fields that do not apply are left out,
    fields already in the event are kept.
    """
    for name, value in workflow_log_fields().items():
        if value is not None and value is not False:
            event_dict.setdefault(name, value)
    return event_dict


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the workflow fields
    that are set, and the exception's traceback if any.

    Use it with :class:`WorkflowLogFilter` on the same handler.
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None and value is not False:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
