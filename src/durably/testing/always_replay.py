"""``always_replay``: replay a workflow from the top after every live operation.

In production a workflow is replayed only when it resumes (after a sleep, a signal,
a crash), so code that is not deterministic (a branch on ``random.random()`` or
``datetime.now()`` taken outside ``ctx``) may pass every test and fail months later.
With ``TestDurably(always_replay=True)``, as soon as an operation has run live and
nothing else is in flight, the run stops (writing nothing) and a new run of the same
workflow replays its recorded history from the top: the ordinary replay, so a body
that takes another path raises ``NonDeterminismError``. Steps are never run twice:
a replay returns their recorded results. The same happens when the body ends, before
its outcome is written.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from durably.context_core import ContextCore
from durably.errors import _Abandon
from durably.models import LEASED_STATUSES

if TYPE_CHECKING:
    from durably.testing.app import TestDurably


class AlwaysReplay:
    """Stops a run after each live operation and starts it again from the top."""

    def __init__(self, app: TestDurably) -> None:
        self._app = app
        self._live: weakref.WeakSet[ContextCore] = weakref.WeakSet()
        #: Runs being started again (the skipper treats them as work in progress).
        self.pending: set[asyncio.Future[None]] = set()

    def note_live(self, context: ContextCore) -> None:
        """An operation of this run ran (or is running) live."""
        self._live.add(context)

    def at_operation(self, context: ContextCore) -> None:
        """The body calls its next operation: replay first if one ran live before and
        none is still in flight."""
        if context._in_flight == 0 and self._has_new_history(context):
            self._replay(context)

    def at_body_end(self, context: ContextCore) -> None:
        """The body ended: replay it once more before its outcome is written."""
        if self._has_new_history(context):
            self._replay(context)

    def _has_new_history(self, context: ContextCore) -> bool:
        return context in self._live and context.interruption is None

    def _replay(self, context: ContextCore) -> None:
        entry = self._app._runs.get(context.workflow_id)
        if entry is None or entry[0]._context is not context:
            return  # not a run of this app's living process
        run_task = entry[1]
        relaunch = asyncio.ensure_future(self._start_again(context.workflow_id, run_task))
        self.pending.add(relaunch)
        relaunch.add_done_callback(self.pending.discard)
        raise _Abandon(
            f"always_replay: workflow {context.workflow_id!r} is replayed from the top "
            f"after a live operation"
        )

    async def _start_again(self, workflow_id: str, run_task: asyncio.Future[Any]) -> None:
        await asyncio.wait([run_task])  # the engine forgets the run first
        app = self._app
        if not app._is_open or app._is_closing:
            return
        record = await app.store.get_workflow(workflow_id)
        if (
            record is not None
            and record.owner == app.executor_id
            and record.status in LEASED_STATUSES
            and workflow_id not in app._runs
        ):
            app._launch(record)
