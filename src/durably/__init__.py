"""durably: crash-proof durable workflows for Python.

A workflow is a Python function whose steps are checkpointed to a database; kill the
process at any point and the workflow resumes from the last completed step.
"""

from __future__ import annotations

from durably.codec import JsonSerializer, PickleSerializer, Serializer
from durably.composition import ChildHandle
from durably.context import Context
from durably.encryption import EncryptedSerializer
from durably.engine import Durably, RecoveryReport
from durably.errors import (
    AppClosedError,
    CompensationError,
    ConfigurationError,
    CorruptRecordError,
    DurablyError,
    InvalidTransitionError,
    LeaseLostError,
    MapFailedError,
    NonDeterminismError,
    PayloadError,
    PayloadTooLargeError,
    SchemaVersionError,
    StepError,
    StepTimeoutError,
    StoreError,
    WorkflowCancelled,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowFinishedError,
    WorkflowNotFoundError,
    WorkflowNotRegisteredError,
    WorkflowTimeoutError,
)
from durably.fan_out import ItemStatus, MapItem, MapResult
from durably.handles import CheckpointInfo, WorkflowHandle, WorkflowInfo
from durably.integrations.process import serve
from durably.models import ErrorInfo, WorkflowStatus
from durably.observers import Observer
from durably.queues import Queue
from durably.retry import RetryPolicy
from durably.step_call import StepInfo, current_step
from durably.store import MemoryStore, SqliteStore, Store, open_store
from durably.sync import SyncDurably, SyncWorkflowHandle
from durably.sync_context import SyncChildHandle, SyncContext

__version__ = "0.1.0"

__all__ = [
    # the app
    "Durably",
    "SyncDurably",
    "Context",
    "SyncContext",
    "ChildHandle",
    "SyncChildHandle",
    "MapResult",
    "MapItem",
    "ItemStatus",
    "RetryPolicy",
    "Queue",
    "StepInfo",
    "current_step",
    "WorkflowHandle",
    "SyncWorkflowHandle",
    "WorkflowInfo",
    "CheckpointInfo",
    "WorkflowStatus",
    "ErrorInfo",
    "RecoveryReport",
    "Observer",
    "serve",
    # storage and payloads
    "Store",
    "MemoryStore",
    "SqliteStore",
    "open_store",
    "Serializer",
    "JsonSerializer",
    "PickleSerializer",
    "EncryptedSerializer",
    # errors
    "DurablyError",
    "AppClosedError",
    "CompensationError",
    "MapFailedError",
    "ConfigurationError",
    "CorruptRecordError",
    "InvalidTransitionError",
    "LeaseLostError",
    "NonDeterminismError",
    "PayloadError",
    "PayloadTooLargeError",
    "SchemaVersionError",
    "StepError",
    "StepTimeoutError",
    "StoreError",
    "WorkflowCancelled",
    "WorkflowConflictError",
    "WorkflowFailedError",
    "WorkflowFinishedError",
    "WorkflowNotFoundError",
    "WorkflowNotRegisteredError",
    "WorkflowTimeoutError",
    "__version__",
]
