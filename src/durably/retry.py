"""Retry policies: pure decisions (no clock, no I/O) about whether and when to retry.

The delay formula is the seed project's: exponential ``initial * multiplier ** (n - 1)``,
capped at ``max_delay``, then jittered by ``± jitter`` (so a jittered delay may exceed
``max_delay`` by up to ``jitter``), rounded to whole milliseconds, never negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

Kind = Literal["none", "fixed", "exponential"]


#: The longest delay a policy may produce before jitter: 100 years, the limit of every
#: durable duration (a wake-up time within it of now fits 64-bit microseconds).
MAX_DELAY_MS = 36_525 * 86_400 * 1000.0


def _number(value: object, parameter: str, rule: str) -> float:
    """``value`` as a finite float, or ValueError naming ``parameter`` and ``rule``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(
            f"{parameter} must be a number {rule}, got {type(value).__name__} {value!r}"
        )
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{parameter} must be a finite number {rule}, got {value!r}")
    return number


def _check_millis(millis: object, parameter: str) -> float:
    number = _number(millis, parameter, "of milliseconds between 0 and 100 years")
    if not 0 <= number <= MAX_DELAY_MS:
        raise ValueError(
            f"{parameter} must be between 0 and 100 years (36,525 days), got {millis!r} ms"
        )
    return number


def _to_millis(value: timedelta | float, parameter: str) -> float:
    """A delay given as a timedelta or seconds, in milliseconds, checked."""
    rule = "between 0 and 100 years (a timedelta or seconds)"
    if isinstance(value, timedelta):
        millis = value.total_seconds() * 1000
    else:
        seconds = _number(value, parameter, rule)
        millis = seconds * 1000
    if not 0 <= millis <= MAX_DELAY_MS:
        raise ValueError(f"{parameter} must be a duration {rule}, got {value!r}")
    return millis


def _check_classes(value: tuple[type[BaseException], ...], parameter: str) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(item, type) and issubclass(item, BaseException) for item in value
    ):
        raise ValueError(f"{parameter} must be a tuple of exception classes, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how soon a failed step (or compensation) is tried again.

    Build one with :meth:`none`, :meth:`fixed` or :meth:`exponential`.
    ``max_attempts`` counts the first attempt. An error is retryable when it is an
    instance of ``retry_on``, not of ``dont_retry_on`` (which wins), and
    ``retry_if(error)`` is true when given.
    """

    kind: Kind = "none"
    max_attempts: int = 1
    initial_delay_ms: float = 0.0
    multiplier: float = 1.0
    max_delay_ms: float = 5 * 60 * 1000.0
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = ()
    retry_if: Callable[[BaseException], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        _check_millis(self.initial_delay_ms, "initial_delay_ms")
        _check_millis(self.max_delay_ms, "max_delay_ms")
        if not _number(self.multiplier, "multiplier", ">= 1") >= 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= _number(self.jitter, "jitter", "between 0 and 1") <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        _check_classes(self.retry_on, "retry_on")
        _check_classes(self.dont_retry_on, "dont_retry_on")
        if self.retry_if is not None and not callable(self.retry_if):
            raise ValueError(f"retry_if must be callable, got {self.retry_if!r}")

    @classmethod
    def none(cls) -> RetryPolicy:
        """A single attempt, never retried (the default for steps)."""
        return cls()

    @classmethod
    def fixed(
        cls,
        max_attempts: int,
        delay: timedelta | float,
        *,
        jitter: float = 0.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        dont_retry_on: tuple[type[BaseException], ...] = (),
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> RetryPolicy:
        """Up to ``max_attempts`` attempts, ``delay`` apart.

        Args:
            max_attempts: Attempts in total, the first included (>= 1).
            delay: Wait between attempts (timedelta or seconds, >= 0).
            jitter: Random spread of each delay, as a fraction in [0, 1].
            retry_on: Exception classes that are retried.
            dont_retry_on: Exception classes never retried (wins over ``retry_on``).
            retry_if: Extra predicate an error must pass to be retried.

        Raises:
            ValueError: a parameter is out of range.
        """
        millis = _to_millis(delay, "delay")
        return cls(
            kind="fixed",
            max_attempts=max_attempts,
            initial_delay_ms=millis,
            multiplier=1.0,
            max_delay_ms=max(millis, 0.0),
            jitter=jitter,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
            retry_if=retry_if,
        )

    @classmethod
    def exponential(
        cls,
        max_attempts: int,
        *,
        initial_delay: timedelta | float = timedelta(seconds=1),
        multiplier: float = 2.0,
        max_delay: timedelta | float = timedelta(minutes=5),
        jitter: float = 0.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        dont_retry_on: tuple[type[BaseException], ...] = (),
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> RetryPolicy:
        """Up to ``max_attempts`` attempts with exponentially growing delays.

        Args:
            max_attempts: Attempts in total, the first included (>= 1).
            initial_delay: Wait after the first failure.
            multiplier: Growth factor per attempt (>= 1).
            max_delay: Cap applied before jitter.
            jitter: Random spread of each delay, as a fraction in [0, 1].
            retry_on: Exception classes that are retried.
            dont_retry_on: Exception classes never retried (wins over ``retry_on``).
            retry_if: Extra predicate an error must pass to be retried.

        Raises:
            ValueError: a parameter is out of range.
        """
        return cls(
            kind="exponential",
            max_attempts=max_attempts,
            initial_delay_ms=_to_millis(initial_delay, "initial_delay"),
            multiplier=multiplier,
            max_delay_ms=_to_millis(max_delay, "max_delay"),
            jitter=jitter,
            retry_on=retry_on,
            dont_retry_on=dont_retry_on,
            retry_if=retry_if,
        )

    def is_retryable(self, error: BaseException) -> bool:
        """Whether this kind of error may be retried at all."""
        if isinstance(error, self.dont_retry_on) or not isinstance(error, self.retry_on):
            return False
        return self.retry_if is None or bool(self.retry_if(error))

    def should_retry(self, attempt: int, error: BaseException) -> bool:
        """Whether to try again after 1-based attempt ``attempt`` failed with ``error``."""
        return self.kind != "none" and attempt < self.max_attempts and self.is_retryable(error)

    def delay_after(self, attempt: int, random_value: float) -> int:
        """Microseconds to wait after failed attempt ``attempt``.

        Args:
            attempt: The 1-based attempt that just failed.
            random_value: A uniform random number in [0, 1) for the jitter.
        """
        if self.kind == "none":
            return 0
        try:
            growth = float(self.multiplier) ** (attempt - 1)
        except OverflowError:  # beyond any float: the cap applies
            growth = math.inf
        base = self.initial_delay_ms * growth if self.initial_delay_ms > 0 else 0.0
        capped = min(base, self.max_delay_ms)
        if self.jitter > 0:
            capped = capped * (1 + (2 * random_value - 1) * self.jitter)
        return max(round(capped), 0) * 1000

    def to_json(self) -> dict[str, Any]:
        """The seed's JSON form. Exception filters and predicates are not serialised."""
        if self.kind == "none":
            return {"type": "none"}
        if self.kind == "fixed":
            return {
                "type": "fixed",
                "maxAttempts": self.max_attempts,
                "delayMs": self.initial_delay_ms,
            }
        return {
            "type": "exponential",
            "maxAttempts": self.max_attempts,
            "initialDelayMs": self.initial_delay_ms,
            "multiplier": self.multiplier,
            "maxDelayMs": self.max_delay_ms,
            "jitter": self.jitter,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryPolicy:
        """Read the seed's JSON form.

        Raises:
            ValueError: unknown ``type`` or invalid parameters.
        """
        kind = data.get("type")
        if kind == "none":
            return cls.none()
        if kind == "fixed":
            return cls.fixed(int(data["maxAttempts"]), float(data["delayMs"]) / 1000)
        if kind == "exponential":
            return cls.exponential(
                int(data["maxAttempts"]),
                initial_delay=float(data.get("initialDelayMs", 1000)) / 1000,
                multiplier=float(data.get("multiplier", 2.0)),
                max_delay=float(data.get("maxDelayMs", 300_000)) / 1000,
                jitter=float(data.get("jitter", 0.0)),
            )
        raise ValueError(f"unknown retry policy type {kind!r}: expected none, fixed or exponential")


#: Compensations are retried by default: undoing must try hard.
DEFAULT_COMPENSATION_RETRY = RetryPolicy.exponential(5)


#: The policy of a step given none (immutable, so one instance serves every step).
NO_RETRY = RetryPolicy.none()
