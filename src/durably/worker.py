"""Claiming work and keeping leases: the executor's two background loops.

The claim loop is recovery and timers in one: it claims every claimable workflow
(pending, crashed with an expired lease, or suspended with a due wake-up) and hands
each to the engine without waiting for it to finish. It sleeps until the earliest
known wake-up, an in-process notification, or the poll interval (the safety net for
changes made by other processes), whichever comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from durably.clock import Clock
from durably.errors import StoreError
from durably.models import QueueLimits, WorkflowRecord
from durably.notifier import Notifier
from durably.store.base import Store

logger = logging.getLogger("durably.worker")


def default_executor_id() -> str:
    """``host:pid:random``: unique per process, readable in the dashboard."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def is_process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker:
    """Claims and heartbeats for one executor."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        executor_id: str,
        names: Callable[[], Collection[str]],
        launch: Callable[[WorkflowRecord], None],
        on_cancel_requested: Callable[[list[str]], None],
        lease_duration: int,
        heartbeat_interval: int,
        poll_interval: int,
        claim_batch_size: int,
        free_slots: Callable[[], int] = lambda: 1 << 30,
        queues: Callable[[], Collection[QueueLimits]] = list,
        versions: Callable[[], Mapping[str, Sequence[str]]] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._notifier = notifier
        self._executor_id = executor_id
        self._names = names
        #: The versions this executor runs, by name (None: every version).
        self._versions = versions
        self._launch = launch
        self._on_cancel_requested = on_cancel_requested
        self._lease_duration = lease_duration
        self._heartbeat_interval = heartbeat_interval
        self._poll_interval = poll_interval
        self._claim_batch_size = claim_batch_size
        self._free_slots = free_slots
        self._queues = queues
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Register this executor, free the work of dead local executors, start loops."""
        now = self._clock.now()
        hostname = socket.gethostname()
        for executor_id, host, pid, _ in await self._store.list_executors():
            # Our own previous incarnation (a fixed executor_id), or a process of this
            # host that is gone: its runs crashed.
            if executor_id == self._executor_id or (
                host == hostname and pid != os.getpid() and not is_process_alive(pid)
            ):
                expired = await self._store.remove_executor(
                    executor_id=executor_id, expire_leases=True
                )
                logger.info("executor %s is dead; %d workflow(s) freed", executor_id, expired)
        await self._store.register_executor(
            executor_id=self._executor_id, hostname=hostname, pid=os.getpid(), now=now
        )
        self._tasks = [
            asyncio.ensure_future(self._claim_loop()),
            asyncio.ensure_future(self._heartbeat_loop()),
        ]

    async def stop(self) -> None:
        """Stop both loops."""
        await _cancel(self._tasks)
        self._tasks = []

    async def stop_claiming(self) -> None:
        """Stop claiming new work; leases of running workflows are still renewed."""
        await _cancel(self._tasks[:1])

    async def claim_due(self) -> list[WorkflowRecord]:
        """Claim every claimable workflow now and launch each; return what was claimed."""
        names = list(self._names())
        versions = None if self._versions is None else self._versions()
        if not names:
            return []

        async def unqueued(now: int, limit: int) -> list[WorkflowRecord]:
            return await self._store.claim_due_workflows(
                owner=self._executor_id,
                names=names,
                now=now,
                lease_until=now + self._lease_duration,
                limit=limit,
                versions=versions,
            )

        claimed = await self._claim_batches(unqueued)
        for queue in self._queues():

            async def queued(
                now: int, limit: int, queue: QueueLimits = queue
            ) -> list[WorkflowRecord]:
                return await self._store.claim_queued_workflows(
                    owner=self._executor_id,
                    queue=queue,
                    names=names,
                    now=now,
                    lease_until=now + self._lease_duration,
                    limit=limit,
                    versions=versions,
                )

            claimed.extend(await self._claim_batches(queued))
        if claimed:
            self._notifier.notify_listed()
        return claimed

    async def _claim_batches(
        self, claim: Callable[[int, int], Awaitable[list[WorkflowRecord]]]
    ) -> list[WorkflowRecord]:
        """Call ``claim(now, limit)`` batch after batch, launching what each returns,
        until a batch comes back short or this process has no free slot."""
        claimed_all: list[WorkflowRecord] = []
        while True:
            limit = min(self._claim_batch_size, self._free_slots())
            if limit <= 0:
                return claimed_all  # at capacity: a finishing run asks for more
            claimed = await claim(self._clock.now(), limit)
            _log_recovered(claimed)
            for record in claimed:
                self._launch(record)
            claimed_all.extend(claimed)
            if len(claimed) < limit:
                return claimed_all

    async def _claim_loop(self) -> None:
        held_back: int | None = None
        while True:
            self._notifier.work_due.clear()
            # Measure the poll interval from before the claim: a clock that moves
            # while claiming must not push the next poll further away.
            started = self._clock.now()
            try:
                claimed = await self.claim_due()
                next_wake = await self._store.next_wake_time(
                    names=list(self._names()),
                    versions=None if self._versions is None else self._versions(),
                )
            except StoreError as error:
                logger.warning("claiming work failed, will retry: %s", error)
                claimed, next_wake = [], None
            except Exception:
                # A bug must not silently end the loop (the process would look alive
                # while claiming nothing): report it and try again at the next poll.
                logger.exception("claiming work failed unexpectedly, will retry")
                claimed, next_wake = [], None
            until = started + self._poll_interval
            if next_wake is not None and next_wake > started:
                until = min(until, next_wake)
                held_back = None
            elif next_wake is not None and (claimed or next_wake != held_back):
                # Already due but not claimed: it became due while this pass ran (look
                # again now), or it is held back by a queue's limits or this process's
                # capacity: then the second pass that finds the same timer and claims
                # nothing polls instead of spinning.
                until = started
                held_back = next_wake
            await self._wait(until)

    async def _wait(self, until: int) -> None:
        due = asyncio.ensure_future(self._notifier.work_due.wait())
        timer = asyncio.ensure_future(self._clock.sleep_until(until))
        try:
            await asyncio.wait({due, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            due.cancel()
            timer.cancel()

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._clock.sleep_until(self._clock.now() + self._heartbeat_interval)
            now = self._clock.now()
            try:
                cancelled = await self._store.renew_leases(
                    owner=self._executor_id, now=now, lease_until=now + self._lease_duration
                )
            except StoreError as error:
                logger.warning("renewing leases failed, will retry: %s", error)
                continue
            except Exception:
                logger.exception("renewing leases failed unexpectedly, will retry")
                continue
            if cancelled:
                self._on_cancel_requested(cancelled)


def _log_recovered(claimed: Sequence[WorkflowRecord]) -> None:
    """Say which claimed workflows are taken over from a run that never finished
    (a crashed or stopped process, an expired lease)."""
    recovered = [record.workflow_id for record in claimed if record.recovery_attempts > 0]
    if recovered:
        shown = ", ".join(recovered[:5]) + (", ..." if len(recovered) > 5 else "")
        logger.info(
            "recovering %d workflow(s) whose previous run did not finish: %s",
            len(recovered),
            shown,
        )


async def _cancel(tasks: Sequence[asyncio.Future[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
