"""Services shared by every run of one app, and duration conversion."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from durably.clock import Clock
from durably.codec import PayloadCodec
from durably.notifier import Notifier
from durably.observers import ObserverSet
from durably.retry import RetryPolicy
from durably.store.base import Store

if TYPE_CHECKING:
    from durably.children import ChildWorkflows
    from durably.run_hooks import RunHooks


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
    #: Child workflows (None where there is no app: a dry run).
    children: ChildWorkflows | None = None
    #: Test-kit callbacks at operation boundaries (``durably.testing``); None in apps.
    hooks: RunHooks | None = None


#: The longest duration accepted anywhere (sleeps, timeouts, leases, retry delays):
#: 100 years. Any instant within it of now fits the stores' 64-bit microseconds.
MAX_DURATION = timedelta(days=36_525)
MAX_DURATION_MICROS = MAX_DURATION.days * 86_400 * 1_000_000


def to_micros(duration: timedelta | float, what: str = "duration") -> int:
    """A duration (timedelta or seconds) in whole microseconds.

    Args:
        duration: A ``timedelta`` or a number of seconds (int or float).
        what: The parameter's name, used in error messages (``"sleep duration"``).

    Raises:
        TypeError: it is neither a timedelta nor a number (text and bools included).
        ValueError: it is NaN or infinite, or longer than 100 years either way.
    """
    if isinstance(duration, timedelta):
        micros = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    elif isinstance(duration, bool) or not isinstance(duration, int | float):
        raise TypeError(
            f"{what} must be a timedelta or a number of seconds, "
            f"got {type(duration).__name__} {duration!r}"
        )
    elif isinstance(duration, float) and not math.isfinite(duration):
        raise ValueError(f"{what} must be a finite number of seconds, got {duration!r}")
    elif abs(duration) > MAX_DURATION_MICROS // 1_000_000:
        micros = MAX_DURATION_MICROS + 1
    else:
        micros = round(duration * 1_000_000)
    if abs(micros) > MAX_DURATION_MICROS:
        raise ValueError(
            f"{what} must be a duration of at most 100 years (36,525 days) either way, "
            f"got {duration!r}"
        )
    return micros
