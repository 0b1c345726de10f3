"""Pure saga bookkeeping: the compensation stack and its unwind order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from durably.retry import RetryPolicy


@dataclass(slots=True, kw_only=True)
class Compensation:
    """One registered compensation.

    A compensation given on a step is registered when the step is called (so its
    position follows call order, like sequence numbers) and armed when the step's
    result is known; a failed step's compensation is never armed.
    """

    index: int
    name: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    retry: RetryPolicy | None = None
    armed: bool = False


@dataclass(slots=True)
class CompensationStack:
    """Compensations in registration order."""

    entries: list[Compensation] = field(default_factory=list)

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        args: tuple[Any, ...] = (),
        retry: RetryPolicy | None = None,
        armed: bool,
    ) -> Compensation:
        """Add a compensation at the next position and return it."""
        entry = Compensation(
            index=len(self.entries), name=name, fn=fn, args=args, retry=retry, armed=armed
        )
        self.entries.append(entry)
        return entry

    def unwind_order(self) -> list[Compensation]:
        """Armed compensations, last registered first."""
        return [entry for entry in reversed(self.entries) if entry.armed]

    @property
    def has_armed(self) -> bool:
        """Whether any compensation would run on failure."""
        return any(entry.armed for entry in self.entries)
