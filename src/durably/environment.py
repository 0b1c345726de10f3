"""Services shared by every run of one app, and duration conversion."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from durably.clock import Clock
from durably.codec import PayloadCodec
from durably.notifier import Notifier
from durably.observers import ObserverSet
from durably.retry import RetryPolicy
from durably.store.base import Store


@dataclass(slots=True, kw_only=True)
class RunEnvironment:
    """What a workflow run needs from its app."""

    store: Store
    codec: PayloadCodec
    clock: Clock
    notifier: Notifier
    observers: ObserverSet
    error_formatter: Callable[[BaseException], str]
    inline_wait: int
    poll_interval: int
    rng: random.Random
    compensation_retry: RetryPolicy


def to_micros(duration: timedelta | float) -> int:
    """A duration (timedelta or seconds) in whole microseconds.

    Raises:
        TypeError: it is neither a timedelta nor a number.
    """
    if isinstance(duration, timedelta):
        return (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    if isinstance(duration, bool) or not isinstance(duration, int | float):
        raise TypeError(f"a duration must be a timedelta or seconds, not {duration!r}")
    return round(duration * 1_000_000)
