"""Queues: limits on how many of some workflows run at once, and how often they start.

Declare a queue on the app and enqueue workflows on it::

    emails = app.queue("emails", concurrency=10, worker_concurrency=2, rate_limit=50)
    await app.enqueue(send_email, address, queue=emails, priority=5)

A queued workflow is claimed only by workers that declare its queue, only within the
queue's limits, highest priority first. The limits hold across every worker sharing
the store: claims of one queue are serialised in the database (SQLite's write lock,
a PostgreSQL advisory lock), so their counts are never stale. Every worker should
declare a queue with the same limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from durably.environment import to_micros
from durably.errors import ConfigurationError
from durably.identifiers import validate_identifier
from durably.models import QueueLimits


@dataclass(frozen=True, slots=True)
class Queue:
    """A declared queue (made by :meth:`durably.Durably.queue`).

    Attributes:
        name: The stored queue name.
        concurrency: The most of its workflows running at once, across all workers.
        worker_concurrency: The most of its workflows one worker process runs at once.
        rate_limit: The most of its workflows started per ``per``.
        per: The rate limit's window.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: int | None = None
    per: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        validate_identifier(self.name, "queue name")
        for field, value in (
            ("concurrency", self.concurrency),
            ("worker_concurrency", self.worker_concurrency),
            ("rate_limit", self.rate_limit),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigurationError(
                    f"queue {self.name!r}: {field} must be a positive integer or None "
                    f"(unlimited), not {value!r}"
                )
        if to_micros(self.per, "per") <= 0:
            raise ConfigurationError(f"queue {self.name!r}: per must be a positive duration")

    @property
    def limits(self) -> QueueLimits:
        """The limits as the store applies them."""
        return QueueLimits(
            name=self.name,
            concurrency=self.concurrency,
            worker_concurrency=self.worker_concurrency,
            rate_limit=self.rate_limit,
            rate_period=to_micros(self.per),
        )


def queue_name(queue: Queue | str) -> str:
    """The name of ``queue``, given as a :class:`Queue` or by name."""
    return queue.name if isinstance(queue, Queue) else queue


def check_priority(priority: object) -> int:
    """Return ``priority`` if it is an integer (higher priorities are claimed first).

    Raises:
        TypeError: it is not an integer.
    """
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an integer, not {priority!r}")
    return priority
