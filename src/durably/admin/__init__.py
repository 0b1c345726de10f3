"""Operator actions on a store, shared by the ``durably`` command line and the dashboard.

Every function takes an open :class:`~durably.store.Store` (any backend; see
:func:`open_operator_store`) and the current time where it matters, and works
through the store protocol only:

* reading: :func:`list_workflows`, :func:`describe_workflow` (the step timeline);
* acting: :func:`send_signal`, :func:`cancel_workflow`, :func:`resume_workflow`,
  :func:`fork_workflow` (retry from a step), :func:`plan_purge` and :func:`purge`;
* checking code: :func:`load_app` and :func:`replay_workflow` (a dry run that
  writes nothing);
* explaining: :func:`diagnose_workflow` and :func:`check_store` (the doctor).
"""

from __future__ import annotations

from durably.admin.actions import (
    DEFAULT_PURGE_STATUSES,
    RESUMABLE_STATUSES,
    ForkResult,
    OperatorActionError,
    PurgePlan,
    allowed_actions,
    cancel_workflow,
    fork_workflow,
    plan_purge,
    purge,
    resume_workflow,
    send_signal,
)
from durably.admin.doctor import (
    Diagnosis,
    ExecutorState,
    Finding,
    HealthReport,
    check_store,
    describe_duration,
    diagnose,
    diagnose_workflow,
    executor_states,
)
from durably.admin.dry_run import END_OF_HISTORY, ReplayReport, replay_workflow
from durably.admin.inspection import (
    RETRYING,
    TimelineEntry,
    WorkflowDetail,
    WorkflowPage,
    build_timeline,
    describe_workflow,
    failed_operation,
    get_workflow,
    list_workflows,
    payload_value,
)
from durably.admin.stores import open_operator_store
from durably.app_loading import load_app

__all__ = [
    "open_operator_store",
    # reading
    "WorkflowPage",
    "WorkflowDetail",
    "TimelineEntry",
    "RETRYING",
    "list_workflows",
    "get_workflow",
    "describe_workflow",
    "build_timeline",
    "failed_operation",
    "payload_value",
    # acting
    "OperatorActionError",
    "RESUMABLE_STATUSES",
    "allowed_actions",
    "DEFAULT_PURGE_STATUSES",
    "ForkResult",
    "PurgePlan",
    "send_signal",
    "cancel_workflow",
    "resume_workflow",
    "fork_workflow",
    "plan_purge",
    "purge",
    # checking code
    "END_OF_HISTORY",
    "ReplayReport",
    "load_app",
    "replay_workflow",
    # explaining
    "ExecutorState",
    "Finding",
    "Diagnosis",
    "HealthReport",
    "executor_states",
    "diagnose",
    "diagnose_workflow",
    "check_store",
    "describe_duration",
]
