"""Following a store's change feed: changes other processes commit become wake-ups here.

With a store that has a :class:`~durably.store.ChangeFeed` (PostgreSQL), a new
workflow, a signal, a cancellation, an event or a stream entry made by another process
wakes this one at once;
polling stays as the safety net for lost notifications.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from durably.notifier import Notifier
from durably.store.base import ChangeFeed

logger = logging.getLogger("durably.change_feed")


async def follow_changes(
    feed: ChangeFeed, notifier: Notifier, on_cancel_requested: Callable[[list[str]], None]
) -> None:
    """Turn every change of ``feed`` into notifications, until cancelled.

    Args:
        feed: The store's change feed.
        notifier: Wakes workflow waiters and the claim loop.
        on_cancel_requested: Interrupts the named workflows if this process runs them.
    """
    try:
        async with contextlib.aclosing(feed.changes()) as changes:
            async for change in changes:
                if change.kind == "progress" and change.workflow_id is not None:
                    # An event or a stream entry: wake its readers; nothing to claim.
                    notifier.notify_progress(change.workflow_id)
                    continue
                if change.workflow_id is not None:
                    notifier.notify(change.workflow_id)
                if change.kind == "cancel" and change.workflow_id is not None:
                    on_cancel_requested([change.workflow_id])
                # Every kind may make work claimable here; a finished workflow frees a
                # slot of its queue.
                notifier.notify_work_due()
    except Exception:
        # Never fatal: the claim loop and the waiters still poll.
        logger.exception("following the store's changes failed; falling back to polling")
