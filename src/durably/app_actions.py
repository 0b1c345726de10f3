"""Acting on workflows from outside them: sending signals and cancelling."""

from __future__ import annotations

from typing import Any

from durably.app_runs import AppRuns
from durably.identifiers import validate_identifier, validate_signal_name
from durably.models import WorkflowStatus


class AppActions(AppRuns):
    """Signals and cancellation of :class:`~durably.engine.Durably`."""

    async def send_signal(
        self,
        workflow_id: str,
        name: str,
        payload: object = None,
        *,
        dedup_key: str | None = None,
    ) -> bool:
        """Append a signal to a workflow's inbox; it is consumed by ``ctx.wait_signal``.

        Args:
            workflow_id: The receiving workflow.
            name: The signal's name.
            payload: Any encodable value (decoded by the waiter's ``payload_type``).
            dedup_key: Makes the send idempotent: a second send with the same key to the
                same workflow is ignored.

        Returns:
            True when appended, False when ignored as a duplicate of ``dedup_key``.

        Raises:
            WorkflowNotFoundError: no such workflow.
            WorkflowFinishedError: the workflow has already finished.
        """
        self._require_open()
        validate_identifier(workflow_id, "workflow_id")
        validate_signal_name(name)
        if dedup_key is not None:
            validate_identifier(dedup_key, "dedup_key")
        encoded = self._env.codec.encode(
            payload, Any, what=f"the payload of signal {name!r}", verify=False
        )
        _, appended = await self._store.append_signal(
            workflow_id,
            name,
            encoded,
            serializer=self._env.codec.serializer_name,
            dedup_key=dedup_key,
            now=self._clock.now(),
        )
        self._notifier.notify(workflow_id)
        self._notifier.notify_work_due()
        return appended

    async def cancel(self, workflow_id: str, *, compensate: bool = False) -> WorkflowStatus:
        """Cancel a workflow durably and cooperatively.

        The request is recorded; a running step (async) is cancelled and the next
        durable operation raises ``WorkflowCancelled``. With ``compensate=True`` the
        registered compensations run first.

        Returns:
            The workflow's status right after the request (``CANCELLED`` when nobody
            was running it, else its live status until the run stops).

        Raises:
            WorkflowNotFoundError: no such workflow.
            WorkflowFinishedError: it already ended in another status.
        """
        self._require_open()
        workflow_id = validate_identifier(workflow_id, "workflow_id")
        before = await self._store.get_workflow(workflow_id) if self._env.observers else None
        record = await self._store.request_cancel(
            workflow_id, compensate=compensate, now=self._clock.now()
        )
        self._interrupt_cancelled([workflow_id])
        self._notifier.notify(workflow_id)
        self._notifier.notify_work_due()
        if record.status is WorkflowStatus.CANCELLED:
            if before is not None and not before.status.is_terminal:
                # Nobody was running it: this request ended it, so no run will tell
                # the observers (a run that stops on the request tells them itself).
                self._env.observers.emit("on_workflow_finish", workflow_id, record.status)
            if self._env.children is not None:
                await self._env.children.workflow_ended(workflow_id, record.status)
        return record.status
