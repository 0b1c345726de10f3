"""The workflows this process records and runs: creating a workflow (launched here at
once when this process runs it), launching claimed ones, relaunching, interrupting."""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import timedelta
from typing import Any

from durably.app_state import AppState
from durably.environment import to_micros
from durably.errors import WorkflowCancelled, WorkflowConflictError
from durably.identifiers import validate_identifier
from durably.models import LEASED_STATUSES, History, WorkflowRecord, WorkflowStatus
from durably.registry import WorkflowDefinition
from durably.runner import WorkflowRun

logger = logging.getLogger("durably")


class AppRuns(AppState):
    """Records new workflows and runs those this process owns, one task each."""

    async def _create(
        self,
        definition: WorkflowDefinition,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        workflow_id: str | None,
        timeout: timedelta | float | None,
        *,
        queue: str | None,
        priority: int,
        as_child: bool = False,
    ) -> str:
        """Record a new workflow (launched here at once unless queued or a client),
        or find the one with this id; return the id. ``as_child``: it is a child
        workflow (its parent links to it next)."""
        identifier = validate_identifier(
            workflow_id if workflow_id is not None else self._new_id(), "workflow_id"
        )
        arguments = definition.bind_input(args, kwargs)
        encoded = self._env.codec.encode(
            arguments, definition.input_hint, what=f"the input of workflow {identifier!r}"
        )
        now = self._clock.now()
        runs_here = self._is_worker and queue is None
        record = WorkflowRecord(
            workflow_id=identifier,
            workflow_name=definition.name,
            status=WorkflowStatus.RUNNING if runs_here else WorkflowStatus.PENDING,
            version=definition.version,
            input=encoded,
            serializer=self._env.codec.serializer_name,
            owner=self.executor_id if runs_here else None,
            fence=1 if runs_here else 0,
            lease_until=now + self._lease_duration if runs_here else None,
            deadline_at=None if timeout is None else now + to_micros(timeout, "timeout"),
            created_at=now,
            updated_at=now,
            queue_name=queue,
            priority=priority,
            started_at=now if runs_here else None,
        )
        stored, created = await self._store.create_workflow(record)
        if created:
            self._notifier.notify_listed()
        if created and runs_here:
            # Just created: nothing to load; and unless it is a child, no parent.
            self._launch(stored, history=History(), may_have_parent=as_child)
        elif stored.workflow_name != definition.name or stored.input != encoded:
            raise WorkflowConflictError(
                f"workflow id {identifier!r} is already used by workflow "
                f"{stored.workflow_name!r} with "
                f"{'the same' if stored.input == encoded else 'a different'} input; "
                f"choose another workflow_id, or start it with the same workflow and input "
                f"to get the existing one"
            )
        elif self._is_orphaned_here(stored):
            # An earlier start of this very workflow committed but its caller saw an
            # error (a connection lost after the commit, a timeout) and retried: the
            # record is ours, its lease renewed by our heartbeat, and nothing runs it.
            self._launch(stored)
        if as_child and (running := self._runs.get(identifier)) is not None:
            running[0].may_have_parent = True  # a parent is about to link to it
        return identifier

    def _is_orphaned_here(self, record: WorkflowRecord) -> bool:
        """Whether ``record`` is claimed by this executor but not running in it."""
        return (
            self._is_worker
            and not self._is_closing
            and record.owner == self.executor_id
            and record.status in LEASED_STATUSES
            and record.workflow_id not in self._runs
            and record.workflow_id not in self._relaunch
        )

    def _launch(
        self,
        record: WorkflowRecord,
        *,
        history: History | None = None,
        may_have_parent: bool = True,
    ) -> None:
        """Run ``record`` (claimed by this executor) in a task; ``history``, when the
        caller knows it, spares the run loading it; ``may_have_parent`` False: this
        process has just created it as a top-level workflow (no parent to tell at its end)."""
        if record.workflow_id in self._runs:
            # Claimed again while its previous run here is ending (it suspended and a
            # signal made it due at once, or its lease was taken over): the claim is
            # ours now; run it as soon as the previous run is gone.
            self._relaunch[record.workflow_id] = record
            return
        definition = self.registry.workflows[record.workflow_name]
        run = WorkflowRun(
            self._env,
            definition,
            record,
            recovered=record.recovery_attempts > 0,
            max_recovery_attempts=self._max_recovery_attempts,
            history=history,
            may_have_parent=may_have_parent,
        )
        task = asyncio.ensure_future(run.execute())
        self._runs[record.workflow_id] = (run, task)
        task.add_done_callback(functools.partial(self._forget_run, record.workflow_id))

    def _forget_run(self, workflow_id: str, task: asyncio.Task[WorkflowStatus | None]) -> None:
        entry = self._runs.get(workflow_id)
        entry_queue = None if entry is None else entry[0].record.queue_name
        if entry is not None and entry[1] is task:
            del self._runs[workflow_id]
            claimed_again = self._relaunch.pop(workflow_id, None)
            if claimed_again is not None and self._is_open and not self._is_closing:
                self._launch(claimed_again)
            if entry[0].failed_on_store and self._is_open and not self._is_closing:
                self._retry_tasks.add(asyncio.ensure_future(self._run_again(entry[0].record)))
        if not task.cancelled() and task.exception() is not None:
            logger.error("workflow %s run crashed", workflow_id, exc_info=task.exception())
        final = None if entry is None or entry[1] is not task else entry[0].final_record
        self._notifier.notify(workflow_id, final=final)
        if len(self._runs) + 1 == self._max_concurrent or entry_queue is not None:
            # A slot is free (this process's, or its queue's): claim more now.
            self._notifier.notify_work_due()

    async def _run_again(self, record: WorkflowRecord) -> None:
        """Re-run a workflow whose run stopped on a store failure, after a pause: this
        executor still owns it, so nobody else would (its fence guards every write)."""
        task = asyncio.current_task()
        assert task is not None
        try:
            await self._clock.sleep_until(self._clock.now() + self._env.poll_interval)
            if self._is_open and not self._is_closing:
                logger.info("running workflow %s again after a store failure", record.workflow_id)
                self._launch(record)
        finally:
            self._retry_tasks.discard(task)

    def _interrupt_cancelled(self, workflow_ids: list[str]) -> None:
        for workflow_id in workflow_ids:
            entry = self._runs.get(workflow_id)
            if entry is not None:
                entry[0].interrupt(WorkflowCancelled(f"workflow {workflow_id!r} was cancelled"))
