"""Observability for durably: log fields, in-process metrics, OpenTelemetry.

- :class:`WorkflowLogFilter` (and :class:`JsonLogFormatter`, the structlog processor
  :func:`add_workflow_fields`): every log record carries the workflow id and name, the
  step, its sequence number and attempt.
- :class:`Metrics`: an observer counting workflow runs and step attempts by outcome
  and timing them; :meth:`Metrics.snapshot` reads it, Prometheus text included.
- :class:`OpenTelemetryObserver` (``pip install 'durably[otel]'``): spans for workflow
  runs and step attempts, and the same metrics through OpenTelemetry.

Only the standard library is imported until ``OpenTelemetryObserver`` is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from durably.observability.log_fields import (
        FIELDS,
        JsonLogFormatter,
        WorkflowLogFilter,
        add_workflow_fields,
        workflow_log_fields,
    )
    from durably.observability.metrics import LatencyStats, Metrics, MetricsSnapshot
    from durably.observability.otel import OpenTelemetryObserver

__all__ = [
    "FIELDS",
    "JsonLogFormatter",
    "LatencyStats",
    "Metrics",
    "MetricsSnapshot",
    "OpenTelemetryObserver",
    "WorkflowLogFilter",
    "add_workflow_fields",
    "workflow_log_fields",
]

_MODULES = {
    "FIELDS": "log_fields",
    "JsonLogFormatter": "log_fields",
    "WorkflowLogFilter": "log_fields",
    "add_workflow_fields": "log_fields",
    "workflow_log_fields": "log_fields",
    "LatencyStats": "metrics",
    "Metrics": "metrics",
    "MetricsSnapshot": "metrics",
    "OpenTelemetryObserver": "otel",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'durably.observability' has no attribute {name!r}")
    return getattr(importlib.import_module(f"durably.observability.{module}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
