"""Operator views as plain JSON data: what ``durably ... --json`` prints and what the
dashboard's API serves. Times are ISO 8601 in UTC; payloads are JSON values (see
:func:`~durably.admin.inspection.payload_value`)."""

from __future__ import annotations

from typing import Any

from durably.admin.actions import ForkResult
from durably.admin.doctor import Diagnosis, ExecutorState, Finding, HealthReport
from durably.admin.dry_run import ReplayReport
from durably.admin.inspection import TimelineEntry, WorkflowDetail, WorkflowPage, payload_value
from durably.models import (
    AttemptRecord,
    ErrorInfo,
    OperationKind,
    SignalRecord,
    WorkflowRecord,
    micros_to_datetime,
)

Document = dict[str, Any]


def moment(micros: int | None) -> str | None:
    """Epoch microseconds as an ISO 8601 UTC time."""
    return None if micros is None else micros_to_datetime(micros).isoformat()


def error_document(info: ErrorInfo | None) -> Document | None:
    """A recorded error."""
    if info is None:
        return None
    return {
        "type": info.type,
        "module": info.module,
        "message": info.message,
        "traceback": info.traceback,
    }


def workflow_document(record: WorkflowRecord) -> Document:
    """A workflow's record."""
    return {
        "workflow_id": record.workflow_id,
        "workflow_name": record.workflow_name,
        "status": str(record.status),
        "version": record.version,
        "created_at": moment(record.created_at),
        "updated_at": moment(record.updated_at),
        "finished_at": moment(record.finished_at),
        "input": payload_value(record.input, record.serializer),
        "result": payload_value(record.result, record.serializer),
        "error": error_document(record.error_info),
        "owner": record.owner,
        "lease_until": moment(record.lease_until),
        "wake_at": moment(record.wake_at),
        "deadline_at": moment(record.deadline_at),
        "wait_reason": record.wait_reason,
        "cancel_requested": record.cancel_requested,
        "compensate_on_cancel": record.compensate_on_cancel,
        "recovery_attempts": record.recovery_attempts,
        "queue_name": record.queue_name,
        "priority": record.priority,
        "started_at": moment(record.started_at),
    }


def page_document(page: WorkflowPage) -> Document:
    """A page of workflows, with the offset of the next page."""
    return {
        "workflows": [workflow_document(record) for record in page.workflows],
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": page.next_offset,
    }


def signal_document(signal: SignalRecord) -> Document:
    """A signal in an inbox."""
    return {
        "signal_id": signal.signal_id,
        "name": signal.name,
        "payload": payload_value(signal.payload, signal.serializer),
        "dedup_key": signal.dedup_key,
        "sent_at": moment(signal.created_at),
        "consumed_at": moment(signal.consumed_at),
        "consumed_by_operation": signal.consumed_seq,
    }


def attempt_document(attempt: AttemptRecord) -> Document:
    """A failed attempt of a step or compensation."""
    return {
        "attempt": attempt.attempt,
        "error": error_document(ErrorInfo.from_json(attempt.error)),
        "started_at": moment(attempt.started_at),
        "finished_at": moment(attempt.finished_at),
        "next_attempt_at": moment(attempt.next_attempt_at),
    }


def timeline_document(entry: TimelineEntry) -> Document:
    """One operation of a timeline."""
    duration = entry.duration
    return {
        "seq": entry.seq,
        "kind": None if entry.kind is None else str(entry.kind),
        "name": entry.name,
        "status": entry.status,
        "is_compensation": entry.is_compensation,
        "attempts": entry.attempts,
        "started_at": moment(entry.started_at),
        "finished_at": moment(entry.finished_at),
        "duration_ms": None if duration is None else duration / 1000,
        "wake_at": moment(entry.wake_at),
        "result": payload_value(entry.result, entry.serializer),
        "error": error_document(entry.error),
        "failed_attempts": [attempt_document(attempt) for attempt in entry.failed_attempts],
        "signal": None if entry.signal is None else signal_document(entry.signal),
        "child_workflow_id": _child_workflow_id(entry),
    }


def _child_workflow_id(entry: TimelineEntry) -> str | None:
    """The child workflow a ``CHILD`` or ``CHILD_RESULT`` operation is about."""
    if entry.kind is OperationKind.CHILD_RESULT:
        return entry.name
    if entry.kind is OperationKind.CHILD:
        started = payload_value(entry.result, entry.serializer)
        return started if isinstance(started, str) else None
    return None


def detail_document(detail: WorkflowDetail) -> Document:
    """A workflow with its timeline and inbox."""
    return {
        "workflow": workflow_document(detail.workflow),
        "timeline": [timeline_document(entry) for entry in detail.timeline],
        "signals": [signal_document(signal) for signal in detail.signals],
    }


def fork_document(fork: ForkResult) -> Document:
    """A fork made by ``retry --from-step``."""
    return {
        "source_workflow_id": fork.source.workflow_id,
        "workflow": workflow_document(fork.fork),
        "from_step": fork.from_seq,
        "replayed_operations": fork.copied,
        "replayed_failures": fork.copied_failures,
        "signals_resent": fork.signals,
    }


def replay_document(report: ReplayReport) -> Document:
    """The outcome of a dry-run replay."""
    return {
        "workflow_id": report.workflow.workflow_id,
        "workflow_name": report.workflow.workflow_name,
        "recorded_status": str(report.workflow.status),
        "recorded_version": report.workflow.version,
        "code_version": report.code_version,
        "recorded_operations": report.recorded_operations,
        "replayed_to": report.replayed_to,
        "diverged": report.diverged,
        "message": report.message,
        "error": error_document(report.error),
    }


def finding_document(finding: Finding) -> Document:
    """One finding of the doctor."""
    return {
        "summary": finding.summary,
        "actions": list(finding.actions),
        "is_problem": finding.is_problem,
    }


def diagnosis_document(diagnosis: Diagnosis) -> Document:
    """The doctor's findings about one workflow."""
    record = diagnosis.workflow
    return {
        "workflow_id": record.workflow_id,
        "workflow_name": record.workflow_name,
        "status": str(record.status),
        "is_problem": diagnosis.is_problem,
        "findings": [finding_document(finding) for finding in diagnosis.findings],
    }


def executor_document(executor: ExecutorState) -> Document:
    """A registered executor."""
    return {
        "executor_id": executor.executor_id,
        "hostname": executor.hostname,
        "pid": executor.pid,
        "heartbeat_at": moment(executor.heartbeat_at),
        "is_alive": executor.is_alive,
        "reason": executor.reason,
    }


def health_document(report: HealthReport) -> Document:
    """The doctor's view of a whole store."""
    return {
        "executors": [executor_document(executor) for executor in report.executors],
        "counts": {str(status): total for status, total in sorted(report.counts.items())},
        "examined": report.examined,
        "truncated": report.truncated,
        "problems": [diagnosis_document(diagnosis) for diagnosis in report.problems],
    }
