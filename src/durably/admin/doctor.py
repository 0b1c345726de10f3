"""Why is a workflow not progressing? Findings and the actions that fix them.

The diagnosis reads the workflow's record (status, owner, lease, wake-up, wait
reason, error), its history (a failing step's attempts), its inbox, and the
registered executors with their heartbeats. It never writes.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from durably.admin.actions import FORK_OWNER_PREFIX
from durably.admin.inspection import get_workflow
from durably.engine import Durably
from durably.models import (
    TERMINAL_STATUSES,
    ErrorInfo,
    History,
    OperationStatus,
    SignalRecord,
    WorkflowRecord,
    WorkflowStatus,
    micros_to_datetime,
)
from durably.store.base import Store
from durably.worker import is_process_alive

#: An executor whose last heartbeat is older than this is presumed gone. Executors
#: heartbeat every third of their lease (10 s with the default 30 s lease).
STALE_HEARTBEAT = 90 * 1_000_000
#: Work that has been due this long without being claimed means nobody claims it
#: (claim loops poll every second by default).
OVERDUE = 60 * 1_000_000

_SIGNAL_REASON = re.compile(r"waiting for signal '(?P<name>[^']*)'")


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutorState:
    """A registered executor and whether it looks alive."""

    executor_id: str
    hostname: str
    pid: int
    heartbeat_at: int
    is_alive: bool
    #: Why it is presumed dead (None when alive).
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing the doctor noticed, and what to do about it."""

    summary: str
    actions: tuple[str, ...] = ()
    #: True when the workflow cannot progress without someone acting.
    is_problem: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnosis:
    """Everything the doctor found about one workflow."""

    workflow: WorkflowRecord
    findings: tuple[Finding, ...]

    @property
    def is_problem(self) -> bool:
        """Whether any finding needs someone to act."""
        return any(finding.is_problem for finding in self.findings)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthReport:
    """The doctor's view of a whole store."""

    executors: tuple[ExecutorState, ...]
    counts: dict[WorkflowStatus, int]
    #: Diagnoses of the workflows that need someone to act.
    problems: tuple[Diagnosis, ...]
    #: How many unfinished (or dead-letter) workflows were examined.
    examined: int
    #: True when there were more than the examination limit.
    truncated: bool


async def executor_states(store: Store, *, now: int) -> tuple[ExecutorState, ...]:
    """The registered executors, each judged alive or not."""
    here = socket.gethostname()
    states = []
    for executor_id, hostname, pid, heartbeat_at in await store.list_executors():
        reason = None
        if hostname == here and not is_process_alive(pid):
            reason = f"process {pid} on this host is not running"
        elif now - heartbeat_at > STALE_HEARTBEAT:
            reason = f"no heartbeat for {describe_duration(now - heartbeat_at)}"
        states.append(
            ExecutorState(
                executor_id=executor_id,
                hostname=hostname,
                pid=pid,
                heartbeat_at=heartbeat_at,
                is_alive=reason is None,
                reason=reason,
            )
        )
    return tuple(states)


async def diagnose_workflow(
    store: Store, workflow_id: str, *, now: int, app: Durably | None = None
) -> Diagnosis:
    """Explain why ``workflow_id`` is (or is not) progressing and what to do.

    Args:
        store: The store.
        workflow_id: The workflow.
        now: The current time.
        app: The deployed code, when known: lets the doctor check that it registers
            the workflow and runs the recorded version.

    Raises:
        WorkflowNotFoundError: unknown id.
    """
    record = await get_workflow(store, workflow_id)
    history = await store.load_history(workflow_id)
    signals = await store.list_signals(workflow_id)
    executors = await executor_states(store, now=now)
    findings = diagnose(
        record,
        now=now,
        executors=executors,
        history=history,
        signals=signals,
    )
    if app is not None:
        findings = (*findings, *_code_findings(record, app))
    return Diagnosis(workflow=record, findings=findings)


async def check_store(store: Store, *, now: int, limit: int = 1000) -> HealthReport:
    """Diagnose every unfinished workflow (and every dead letter), up to ``limit``,
    and report those that need someone to act."""
    executors = await executor_states(store, now=now)
    watched = [
        status
        for status in WorkflowStatus
        if status not in TERMINAL_STATUSES or status is WorkflowStatus.COMPENSATION_FAILED
    ]
    records = await store.list_workflows(statuses=watched, limit=limit + 1)
    problems = []
    for record in records[:limit]:
        diagnosis = Diagnosis(
            workflow=record,
            findings=diagnose(record, now=now, executors=executors),
        )
        if diagnosis.is_problem:
            problems.append(diagnosis)
    return HealthReport(
        executors=executors,
        counts=await store.count_workflows(),
        problems=tuple(problems),
        examined=min(len(records), limit),
        truncated=len(records) > limit,
    )


def diagnose(
    record: WorkflowRecord,
    *,
    now: int,
    executors: Sequence[ExecutorState],
    history: History | None = None,
    signals: Collection[SignalRecord] = (),
) -> tuple[Finding, ...]:
    """The findings about one workflow (pure: everything is passed in)."""
    workflow_id = record.workflow_id
    status = record.status
    findings: list[Finding] = []
    if status is WorkflowStatus.PARKED:
        findings.append(_parked(record, history))
    elif status in TERMINAL_STATUSES:
        findings.append(_finished(record, history))
    elif status is WorkflowStatus.SUSPENDED:
        findings.extend(_suspended(record, now, executors, signals))
    else:
        findings.extend(_leased(record, now, executors, history))
    if record.cancel_requested and status not in TERMINAL_STATUSES:
        findings.append(
            Finding(
                summary="its cancellation was requested"
                + (" (with compensation)" if record.compensate_on_cancel else "")
                + ": the executor running it stops it at its next heartbeat or operation",
            )
        )
    if record.recovery_attempts and status is not WorkflowStatus.PARKED:
        findings.append(
            Finding(
                summary=f"its run was interrupted {record.recovery_attempts} time(s) in a row "
                f"(the process running it died): a step may be crashing the process",
                actions=(f"look at the last operation in `durably show {workflow_id}`",),
            )
        )
    return tuple(findings)


def _finished(record: WorkflowRecord, history: History | None) -> Finding:
    workflow_id = record.workflow_id
    status = record.status
    when = _moment(record.finished_at)
    error = record.error_info
    cause = "" if error is None else f": {error.type}: {error.message}"
    if status is WorkflowStatus.COMPLETED:
        return Finding(summary=f"it completed at {when}; nothing to do")
    if status is WorkflowStatus.CANCELLED:
        return Finding(summary=f"it was cancelled at {when}; nothing to do")
    retry = f"`durably retry {workflow_id} --from-step {_failed_seq(history)}`"
    if status is WorkflowStatus.COMPENSATED:
        return Finding(
            summary=f"it failed and was compensated at {when}{cause}",
            actions=(f"to run it again after fixing the cause: {retry}",),
        )
    if status is WorkflowStatus.FAILED:
        return Finding(
            summary=f"it failed at {when}{cause}",
            actions=(
                f"fix the cause, then run its failed step again: `durably resume {workflow_id}`",
                f"or start a copy from an earlier step: {retry}",
            ),
            is_problem=True,
        )
    failed = []
    if history is not None:
        failed = [
            operation.name
            for seq, operation in sorted(history.operations.items())
            if seq < 0 and operation.status is OperationStatus.FAILED
        ]
    listed = f" (failed: {', '.join(failed)})" if failed else ""
    actions = [f"undo by hand what the failed compensation(s){listed} should have undone"]
    actions.append(f"or fix them and run them again: `durably resume {workflow_id}`")
    return Finding(
        summary=f"its compensation failed at {when}: it is a dead letter{cause}",
        actions=tuple(actions),
        is_problem=True,
    )


def _parked(record: WorkflowRecord, history: History | None) -> Finding:
    workflow_id = record.workflow_id
    error = record.error_info
    body = [] if history is None else [op for seq, op in history.operations.items() if seq >= 0]
    resume = f"`durably resume {workflow_id}`"
    if error is not None and error.type == "NonDeterminismError":
        return Finding(
            summary=f"it is parked on non-determinism: {error.message}",
            actions=(
                "deploy code that takes the recorded path (guard changes with ctx.patched())",
                f"check it: `durably replay {workflow_id} --app module:app`",
                f"then {resume}",
            ),
            is_problem=True,
        )
    if error is not None and error.type == "PayloadError":
        return Finding(
            summary=f"it is parked because its input cannot be read: {error.message}",
            actions=(f"deploy code whose types read the recorded input, then {resume}",),
            is_problem=True,
        )
    last = ""
    if body:
        final = max(body, key=lambda operation: operation.seq)
        last = f"; its last recorded operation is #{final.seq} {final.name!r}"
    message = "no error recorded" if error is None else error.message
    return Finding(
        summary=f"it is parked: {message}{last}",
        actions=(f"fix the cause (a step that crashes the process runs after it), then {resume}",),
        is_problem=True,
    )


def _suspended(
    record: WorkflowRecord,
    now: int,
    executors: Sequence[ExecutorState],
    signals: Collection[SignalRecord],
) -> list[Finding]:
    workflow_id = record.workflow_id
    reason = record.wait_reason or "waiting"
    match = _SIGNAL_REASON.search(reason)
    pending = sorted({signal.name for signal in signals if signal.consumed_seq is None})
    findings = []
    if record.wake_at is None and (record.owner or "").startswith(FORK_OWNER_PREFIX):
        copying = now - record.created_at
        findings.append(
            Finding(
                summary=f"it is a fork whose history has been copying for "
                f"{describe_duration(copying)} ({reason})",
                actions=(f"cancel it: `durably cancel {workflow_id}`, then fork again",),
                is_problem=copying >= OVERDUE,
            )
        )
        return findings
    name = match.group("name") if match else None
    if name is not None and (record.wake_at is None or record.wake_at > now):
        waited = describe_duration(now - record.updated_at)
        missing = "" if name in pending else f"; no signal {name!r} is in its inbox"
        times_out = (
            ""
            if record.wake_at is None
            else f"; the wait times out at {_moment(record.wake_at)} "
            f"(in {describe_duration(record.wake_at - now)})"
        )
        findings.append(
            Finding(
                summary=f"it is {reason} since {_moment(record.updated_at)} ({waited} ago)"
                f"{missing}{times_out}",
                actions=(f"send it: `durably signal {workflow_id} {name} 'JSON payload'`",),
            )
        )
        return findings
    if record.wake_at is None:
        findings.append(Finding(summary=f"it is {reason}, with no timer: a signal wakes it"))
        return findings
    if record.wake_at > now:
        findings.append(
            Finding(
                summary=f"it is {reason}; it wakes at {_moment(record.wake_at)} "
                f"(in {describe_duration(record.wake_at - now)})"
            )
        )
        return findings
    overdue = now - record.wake_at
    summary = f"it has been due since {_moment(record.wake_at)} ({reason})"
    if pending:
        summary += f"; signal(s) {', '.join(map(repr, pending))} arrived"
    findings.append(_unclaimed(record, summary, overdue, executors))
    return findings


def _leased(
    record: WorkflowRecord,
    now: int,
    executors: Sequence[ExecutorState],
    history: History | None,
) -> list[Finding]:
    owner = record.owner
    by_id = {executor.executor_id: executor for executor in executors}
    doing = "compensating" if record.status is WorkflowStatus.COMPENSATING else "running"
    if owner is None or record.lease_until is None:
        if record.status is WorkflowStatus.PENDING:
            summary = f"it has waited for a worker since {_moment(record.created_at)}"
        else:
            summary = (
                f"it is {doing} but no executor holds it (its worker stopped, or it was just "
                f"forked or resumed)"
            )
        return [_unclaimed(record, summary, now - record.updated_at, executors)]
    if record.lease_until < now:
        summary = (
            f"executor {owner!r} was {doing} it, but its lease expired at "
            f"{_moment(record.lease_until)}: that executor stopped (crashed, paused or cut off)"
        )
        return [_unclaimed(record, summary, now - record.lease_until, executors)]
    executor = by_id.get(owner)
    findings = []
    if executor is not None and not executor.is_alive:
        findings.append(
            Finding(
                summary=f"executor {owner!r} holds it, but {executor.reason}: its lease "
                f"expires at {_moment(record.lease_until)}, then another worker recovers it",
                actions=(
                    "wait for the lease to expire, or start a worker on this host (it frees "
                    "the work of dead local executors at once)",
                ),
                is_problem=True,
            )
        )
    elif executor is None:
        findings.append(
            Finding(
                summary=f"executor {owner!r} holds its lease until "
                f"{_moment(record.lease_until)} but is not registered (it exited)",
                actions=("wait for the lease to expire; a live worker then recovers it",),
            )
        )
    else:
        findings.append(
            Finding(
                summary=f"it is {doing} on executor {owner!r} (pid {executor.pid} on "
                f"{executor.hostname}, last heartbeat "
                f"{describe_duration(now - executor.heartbeat_at)} ago); last progress "
                f"{describe_duration(now - record.updated_at)} ago"
            )
        )
    findings.extend(_retrying(history, now))
    return findings


def _retrying(history: History | None, now: int) -> list[Finding]:
    if history is None:
        return []
    findings = []
    for seq, attempts in sorted(history.attempts.items()):
        if seq in history.operations or not attempts:
            continue
        last = attempts[-1]
        when = last.next_attempt_at
        upcoming = "" if when is None else f"; next attempt at {_moment(when)}"
        if when is not None and when > now:
            upcoming += f" (in {describe_duration(when - now)})"
        findings.append(
            Finding(
                summary=f"operation #{seq} has failed {last.attempt} attempt(s){upcoming}; "
                f"last error: {_error_text(last.error)}"
            )
        )
    return findings


def _unclaimed(
    record: WorkflowRecord, summary: str, waited: int, executors: Sequence[ExecutorState]
) -> Finding:
    """A claimable workflow: explain who should claim it."""
    alive = [executor for executor in executors if executor.is_alive]
    name = record.workflow_name
    queue = record.queue_name
    version = _pinned_version(record)
    runs_it = (
        f"registers workflow {name!r}"
        + ("" if version is None else f" and runs its version {version!r}")
        + ("" if queue is None else f" and queue {queue!r}")
    )
    if not alive:
        return Finding(
            summary=f"{summary}; no live executor is registered, so nobody claims it",
            actions=(
                f"start a worker whose app {runs_it} (`durably worker module:app`, or "
                f"`async with app:` in your program)",
            ),
            is_problem=True,
        )
    if waited < OVERDUE:
        return Finding(summary=f"{summary}; a live worker claims it at its next poll")
    if queue is not None:
        return Finding(
            summary=f"{summary}; it is on queue {queue!r} and {len(alive)} live executor(s) "
            f"have not claimed it for {describe_duration(waited)}: the queue's concurrency "
            f"or rate limit holds it back, or no worker declares the queue",
            actions=(f"check the limits of queue {queue!r} and that a worker's app {runs_it}",),
            is_problem=True,
        )
    if version is not None:
        return Finding(
            summary=f"{summary}; {len(alive)} live executor(s) have not claimed it for "
            f"{describe_duration(waited)}: none of them seems to run version {version!r} of "
            f"workflow {name!r} (an executor resumes only the versions its code runs)",
            actions=(
                f"see which version the deployed code runs: "
                f"`durably doctor {record.workflow_id} --app module:app`",
                *_version_actions(record),
            ),
            is_problem=True,
        )
    return Finding(
        summary=f"{summary}; {len(alive)} live executor(s) have not claimed it for "
        f"{describe_duration(waited)}: none of them seems to register workflow {name!r}",
        actions=(f"deploy a worker whose app {runs_it}",),
        is_problem=True,
    )


def _pinned_version(record: WorkflowRecord) -> str | None:
    """The version an executor must run to resume ``record`` (None: any version may:
    it was recorded without one, or it never ran)."""
    never_ran = record.status is WorkflowStatus.PENDING and record.started_at is None
    return None if record.version == "" or never_ran else record.version


def _version_actions(record: WorkflowRecord, current: str | None = None) -> tuple[str, ...]:
    """How to get ``record`` resumed when no deployed code runs its version."""
    version = record.version
    declared = "version=..." if current is None else f"version={current!r}"
    return (
        f"keep a worker running the code of version {version!r} until its workflows finish "
        f"(a rolling deploy: old and new workers share the database)",
        f"or, if the new code replays its history (guard the changes with ctx.patched(); "
        f"check: `durably replay {record.workflow_id} --app module:app`), declare "
        f"@app.workflow({declared}, also_runs=[{version!r}]) and deploy it",
    )


def _code_findings(record: WorkflowRecord, app: Durably) -> tuple[Finding, ...]:
    definition = app.registry.workflows.get(record.workflow_name)
    if definition is None:
        return (
            Finding(
                summary=f"the given app does not register workflow {record.workflow_name!r}: "
                f"workers running this code never claim it",
                actions=("deploy code that registers it under the same name",),
                is_problem=record.status not in TERMINAL_STATUSES,
            ),
        )
    version = _pinned_version(record)
    if version is None or version == definition.version:
        return ()
    recorded = f"it was recorded by version {version!r} of {record.workflow_name!r}"
    if version in definition.also_runs:
        return (
            Finding(
                summary=f"{recorded}; the given app runs version {definition.version!r} and "
                f"declares that it also runs {version!r} (also_runs)",
                actions=(
                    f"check that it replays the recorded history: "
                    f"`durably replay {record.workflow_id} --app module:app`",
                ),
            ),
        )
    older = sorted(definition.also_runs - {definition.version})
    also = "" if not older else f" (and also {', '.join(map(repr, older))})"
    waits = {
        WorkflowStatus.PARKED: f", not even after `durably resume {record.workflow_id}`",
        **dict.fromkeys(TERMINAL_STATUSES, ""),
    }.get(record.status, ", so it waits for one that does")
    return (
        Finding(
            summary=f"{recorded}; the given app runs version {definition.version!r}{also}: "
            f"workers running this code never resume it{waits}",
            actions=_version_actions(record, definition.version),
            is_problem=record.status not in TERMINAL_STATUSES,
        ),
    )


def _failed_seq(history: History | None) -> str:
    if history is not None:
        for seq, operation in sorted(history.operations.items()):
            if seq >= 0 and operation.status is OperationStatus.FAILED:
                return str(seq)
    return "N"


def _error_text(stored: str) -> str:
    info = ErrorInfo.from_json(stored)
    return f"{info.type}: {info.message}"


def _moment(micros: int | None) -> str:
    if micros is None:
        return "an unknown time"
    return micros_to_datetime(micros).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_duration(micros: int) -> str:
    """A short human duration: ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    seconds = max(micros, 0) // 1_000_000
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
