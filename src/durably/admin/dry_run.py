"""Replaying a recorded history against the current code, writing nothing.

The workflow function runs in a sandbox: a :class:`~durably.store.MemoryStore`
holding a copy of the record and its history, with a run that is told, before it
starts, to stop at the first operation that is not recorded. Recorded operations
return their recorded results exactly as in a real replay (the same runner and the
same replay decisions), so a divergence shows up as the same
:class:`~durably.errors.NonDeterminismError` a worker would park the workflow with.
No step runs: the run stops before any live operation. The workflow function's own
code between steps does run, as in every replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from dataclasses import dataclass

from durably.admin.inspection import get_workflow
from durably.codec import PayloadCodec
from durably.engine import Durably
from durably.environment import RunEnvironment
from durably.error_records import default_error_formatter
from durably.errors import WorkflowNotRegisteredError, _Abandon
from durably.models import ErrorInfo, Fence, WorkflowRecord, WorkflowStatus
from durably.notifier import Notifier
from durably.observers import ObserverSet
from durably.retry import DEFAULT_COMPENSATION_RETRY
from durably.runner import WorkflowRun
from durably.store.base import Store
from durably.store.memory import MemoryStore

#: The dry run reached an operation that is not recorded: a real run goes on live here.
END_OF_HISTORY = "end of history"

_SANDBOX_OWNER = "durably-replay"
#: Recorded errors that stop a run wherever it is, so that a later run of the same
#: code going on past them is expected, not a divergence.
_INTERRUPTIONS = frozenset({"WorkflowCancelled", "WorkflowTimeoutError"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    """What replaying a recorded workflow against the current code showed."""

    workflow: WorkflowRecord
    #: The version of the workflow in the current code.
    code_version: str
    #: How many body operations the history records.
    recorded_operations: int
    #: :data:`END_OF_HISTORY`, or the status the replay ended in.
    replayed_to: str
    #: Whether the current code does not reproduce the recorded history.
    diverged: bool
    #: One sentence for the operator.
    message: str
    #: The divergence, or the error the replay ended with.
    error: ErrorInfo | None


class _FrozenClock:
    """The time the dry run started, forever. Waits end at once: the run is told to
    stop at its next live operation, which is the only thing that waits."""

    def __init__(self, now: int) -> None:
        self._now = now

    def now(self) -> int:
        return self._now

    async def sleep_until(self, moment: int) -> None:
        await asyncio.sleep(0)


async def replay_workflow(
    store: Store, app: Durably, workflow_id: str, *, now: int
) -> ReplayReport:
    """Replay the recorded history of ``workflow_id`` against ``app``'s code, dry.

    Nothing is written to ``store``, and no step runs.

    Raises:
        WorkflowNotFoundError: unknown id.
        WorkflowNotRegisteredError: the app does not register the workflow's name.
    """
    record = await get_workflow(store, workflow_id)
    definition = app.registry.workflows.get(record.workflow_name)
    if definition is None:
        raise WorkflowNotRegisteredError(
            f"workflow {record.workflow_name!r} (of {workflow_id!r}) is not registered in "
            f"the app (registered: {', '.join(app.registry.names()) or 'none'}); deploy code "
            f"that registers it",
            workflow_id=workflow_id,
        )
    history = await store.load_history(workflow_id)
    sandbox = MemoryStore()
    copy = dataclasses.replace(
        record,
        status=WorkflowStatus.RUNNING,
        owner=_SANDBOX_OWNER,
        fence=1,
        lease_until=None,
        wake_at=None,
        deadline_at=None,
        cancel_requested=False,
        compensate_on_cancel=False,
        recovery_attempts=0,
        result=None,
        error=None,
        finished_at=None,
    )
    await sandbox.create_workflow(copy)
    fence = Fence(workflow_id=workflow_id, owner=_SANDBOX_OWNER, fence=1)
    for operation in history.operations.values():
        await sandbox.record_operation(fence, operation)
    for attempts in history.attempts.values():
        for attempt in attempts:
            await sandbox.record_attempt(fence, attempt)
    clock = _FrozenClock(now)
    codec = app._env.codec  # the app's serializer decodes its recorded payloads
    run = WorkflowRun(
        _sandbox_environment(sandbox, codec, clock),
        definition,
        copy,
        recovered=False,
        max_recovery_attempts=2**31,
    )
    run.interrupt(_Abandon(END_OF_HISTORY))
    status = await run.execute()
    after = await get_workflow(sandbox, workflow_id)
    recorded_operations = sum(1 for seq in history.operations if seq >= 0)
    replayed_to = END_OF_HISTORY if status is None else str(after.status)
    diverged, message = _judge(record, after, reached_end=status is None)
    return ReplayReport(
        workflow=record,
        code_version=definition.version,
        recorded_operations=recorded_operations,
        replayed_to=replayed_to,
        diverged=diverged,
        message=message,
        error=after.error_info,
    )


def _sandbox_environment(
    sandbox: MemoryStore, codec: PayloadCodec, clock: _FrozenClock
) -> RunEnvironment:
    return RunEnvironment(
        store=sandbox,
        codec=codec,
        clock=clock,
        notifier=Notifier(clock),
        observers=ObserverSet(()),
        error_formatter=default_error_formatter,
        inline_wait=0,
        poll_interval=1_000_000,
        rng=random.Random(0),
        compensation_retry=DEFAULT_COMPENSATION_RETRY,
    )


def _judge(
    recorded: WorkflowRecord, after: WorkflowRecord, *, reached_end: bool
) -> tuple[bool, str]:
    """Whether the replay diverged from the record, and a sentence saying how it ended."""
    was = recorded.status
    error = after.error_info
    described = "" if error is None else f"{error.type}: {error.message}"
    recorded_error = recorded.error_info
    stopped_early = recorded_error is not None and recorded_error.type in _INTERRUPTIONS
    if after.status is WorkflowStatus.PARKED:
        return True, described
    if reached_end:
        if was is WorkflowStatus.COMPLETED or (was.is_terminal and not stopped_early):
            return True, (
                f"the recorded run ended {was} after its last recorded operation, but the "
                f"current code goes on to run a new operation there"
            )
        return False, (
            "the current code replays the recorded operations as recorded; a worker would "
            "go on live from the end of the history"
        )
    if after.status is WorkflowStatus.COMPLETED:
        if was is WorkflowStatus.COMPLETED and after.result != recorded.result:
            return True, (
                f"the current code completes with a different result: recorded "
                f"{recorded.result}, now {after.result}"
            )
        if was.is_terminal and was is not WorkflowStatus.COMPLETED:
            return True, f"the recorded run ended {was}, but the current code completes"
        return False, "the current code completes from the recorded history, as recorded"
    if after.status is WorkflowStatus.SUSPENDED:
        return False, "the current code replays as recorded and waits for a retry"
    if was.is_terminal and after.status is not was:
        return True, f"the recorded run ended {was}, but the current code ends {after.status}"
    if (
        was.is_terminal
        and recorded_error is not None
        and error is not None
        and error.type != recorded_error.type
    ):
        return True, (
            f"the recorded run failed with {recorded_error.type}, the current code with {described}"
        )
    same = " as recorded" if after.status is was else ""
    return False, f"the current code ends {after.status}{same} ({described})"
