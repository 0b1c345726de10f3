"""Turning exceptions into stored error records and back, safely."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable

from durably.errors import StepError, WorkflowFailedError
from durably.models import ErrorInfo
from durably.redaction import RedactingFormatter

#: Default error formatter: the exception's text, cut at 1,000 characters.
MAX_ERROR_MESSAGE = 1_000


def default_error_formatter(error: BaseException) -> str:
    """``str(error)`` cut at 1,000 characters (the seed's default)."""
    text = str(error)
    if len(text) > MAX_ERROR_MESSAGE:
        return text[:MAX_ERROR_MESSAGE] + "…"
    return text


def error_to_info(
    error: BaseException, formatter: Callable[[BaseException], str] = default_error_formatter
) -> ErrorInfo:
    """Describe an exception for storage; the formatter redacts what must not be stored.

    The traceback keeps only frame locations (file, line, function): no message line
    and no source text, so the formatter sees every piece of text derived from the
    exception and no literal from the code is stored. A :class:`RedactingFormatter`
    also redacts the traceback (paths and function names can hold secrets too).
    """
    error_type = type(error)
    frames = (
        "".join(
            f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n'
            for frame in traceback.extract_tb(error.__traceback__)
        )
        or None
    )
    if frames is not None and isinstance(formatter, RedactingFormatter):
        frames = formatter.redact(frames)
    return ErrorInfo(
        type=error_type.__qualname__,
        module=error_type.__module__,
        message=formatter(error),
        traceback=frames,
    )


def rebuild_error(info: ErrorInfo) -> Exception:
    """Rebuild the recorded exception when that is safe, else a :class:`StepError`.

    Safe means: the exception class is already imported (looked up in
    ``sys.modules``, never imported on behalf of stored data), is an ``Exception``
    subclass, and can be built from its message alone.
    """
    module = sys.modules.get(info.module or "")
    candidate: object = module
    for part in info.type.split("."):
        candidate = getattr(candidate, part, None)
    if isinstance(candidate, type) and issubclass(candidate, Exception):
        try:
            rebuilt = candidate(info.message)
        except Exception:  # noqa: S110 - any constructor failure means "cannot rebuild"
            pass
        else:
            return rebuilt
    return StepError(f"{info.type}: {info.message}", error_type=info.type, traceback=info.traceback)


def workflow_failure(
    workflow_id: str, status: str, info: ErrorInfo | None, *, what: str = "workflow"
) -> WorkflowFailedError:
    """The error for a workflow (``what``: "workflow", "child workflow") that ended in
    ``status`` rather than COMPLETED, with its recorded error; the recorded exception,
    rebuilt when that is safe, is its ``__cause__``."""
    detail = f": {info.type}: {info.message}" if info is not None else ""
    error = WorkflowFailedError(
        f"{what} {workflow_id!r} ended {status}{detail}",
        workflow_id=workflow_id,
        status=status,
        error_type=None if info is None else info.type,
        error_message=None if info is None else info.message,
        traceback=None if info is None else info.traceback,
    )
    if info is not None:
        error.__cause__ = rebuild_error(info)
    return error
