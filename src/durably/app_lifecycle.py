"""Opening and closing an app, and recovering the work that is claimable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from durably.app_runs import AppRuns
from durably.change_feed import follow_changes
from durably.environment import to_micros
from durably.errors import _Abandon
from durably.recovery_trigger import RecoveryReports, RecoveryTrigger
from durably.store.base import ChangeFeed
from durably.worker import Worker

logger = logging.getLogger("durably")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What one recovery pass claimed and started."""

    resumed: tuple[str, ...]

    def __str__(self) -> str:
        return f"RecoveryReport(resumed: {len(self.resumed)})"


class AppLifecycle(AppRuns):
    """Opening, closing and recovery of :class:`~durably.engine.Durably`: the store, the
    claim/timer and heartbeat loops of the worker, the schedules and the change feed."""

    _worker: Worker
    _feed: asyncio.Future[None] | None
    _recovery_trigger: RecoveryTrigger[RecoveryReport]

    async def open(self) -> None:
        """Open the store, recover unfinished work and start the background loops."""
        if self._is_open:
            return
        await self._store.open()
        self._is_open = True
        self._is_closing = False
        if isinstance(self._store, ChangeFeed):
            self._feed = asyncio.ensure_future(
                follow_changes(self._store, self._notifier, self._interrupt_cancelled)
            )
        if self._is_worker:
            await self._worker.start()
            self._scheduler.start()
        self._recovery_trigger.bind(asyncio.get_running_loop())

    async def close(self, *, grace: timedelta | float = 0) -> None:
        """Stop the loops, stop running bodies without writing, release every lease.

        Workflows that were running stay recoverable: another process (or this one
        after a restart) resumes them from their last recorded operation; the leases
        are released, so another process claims them at once. Idempotent.

        Args:
            grace: First stop claiming and give the running workflows up to this long
                (wall-clock seconds or a timedelta) to finish or reach a durable wait,
                with their leases still renewed; only those still running then are
                stopped and released.
        """
        if not self._is_open:
            return
        self._is_closing = True
        await self._scheduler.stop()
        await self._recovery_trigger.close()
        grace_seconds = to_micros(grace, "grace") / 1_000_000
        if grace_seconds > 0 and self._runs:
            if self._is_worker:
                await self._worker.stop_claiming()
            # Read after stopping the claims: the last runs may have ended meanwhile.
            tasks = [task for _, task in self._runs.values()]
            logger.info("waiting up to %.1fs for %d running workflow(s)", grace_seconds, len(tasks))
            if tasks:
                await asyncio.wait(tasks, timeout=grace_seconds)
        for retry in list(self._retry_tasks):
            retry.cancel()
        if self._is_worker:
            await self._worker.stop()
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
            self._feed = None
        runs = list(self._runs.values())
        for run, _ in runs:
            run.interrupt(_Abandon("the app is closing"))
        for _, task in runs:
            try:
                await task
            except BaseException:
                # A run the interrupt cancelled outright (one that had ended and was
                # telling its parent) stopped as asked: its parent looks again later.
                if not task.cancelled():
                    logger.exception("workflow run failed while closing")
        try:
            await self._store.release_workflows(owner=self.executor_id)
            await self._store.remove_executor(executor_id=self.executor_id, expire_leases=False)
        finally:
            await self._store.close()
            self._is_open = False

    async def recover(self) -> RecoveryReport:
        """Claim and resume every workflow that is claimable now (without waiting for any
        of them to finish). The background loop does this continuously; call it to
        force a pass."""
        self._require_open()
        claimed = await self._worker.claim_due()
        return RecoveryReport(resumed=tuple(record.workflow_id for record in claimed))

    def request_recovery(self) -> None:
        """Ask for a recovery pass without waiting for it; callable from any thread.

        Requests made within ``recovery_debounce`` of the first one are served by one
        pass; a request made while a pass runs gets another pass after it. Each pass's
        report goes to the streams of :meth:`recovery_reports`.

        Raises:
            AppClosedError: the app is not open.
        """
        self._require_open()
        self._recovery_trigger.request()

    def recovery_reports(self) -> RecoveryReports[RecoveryReport]:
        """An async iterator over the reports of the requested recovery passes that end
        from now on (see :meth:`request_recovery`); it ends when the app closes.

        Raises:
            AppClosedError: the app is not open.
        """
        self._require_open()
        return self._recovery_trigger.subscribe()
