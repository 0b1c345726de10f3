"""Fan-out for ``ctx.map``: its completion policy, its result, and the loop that runs
its items.

``ctx.map`` (see :mod:`durably.composition`) reserves one durable operation per item
when it is called, in input order, so that numbering never depends on timing. This
module then starts the items in input order, at most ``max_concurrency`` at once, and
stops as soon as the policy is decided: enough successes (``min_successes``), too many
failures (more than ``tolerated_failures``, or too many to still reach
``min_successes``), or every item settled. Items still running then are cancelled, and
items not started yet are never started: both are reported as skipped.

Which items settled before the decision is recorded (an operation of kind ``MAP``), so
that a replay settles exactly those again and returns the same result, whatever order
the items finish in this time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from durably.errors import MapFailedError, _Abandon, _Suspend

R = TypeVar("R")

#: Starts one item: returns its (not yet awaited) durable operation.
ItemStarter = Callable[[], Coroutine[Any, Any, Any]]


class ItemStatus(StrEnum):
    """How one item of a ``ctx.map`` ended."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    #: Not run to the end: the policy was decided before (not started, or cancelled).
    SKIPPED = "SKIPPED"


@dataclass(frozen=True, slots=True, kw_only=True)
class MapItem(Generic[R]):
    """The outcome of one item of a ``ctx.map``, at its input position."""

    index: int
    #: The input item.
    item: object
    status: ItemStatus
    #: The step's or child's result (None unless COMPLETED).
    value: R | None = None
    #: The step's error, or the child's :class:`~durably.errors.WorkflowFailedError`
    #: (None unless FAILED).
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """True when the item completed."""
        return self.status is ItemStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class MapResult(Generic[R]):
    """Every item's outcome of a ``ctx.map``, in input order (iterable and indexable)."""

    items: tuple[MapItem[R], ...]

    def __iter__(self) -> Iterator[MapItem[R]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MapItem[R]:
        return self.items[index]

    @property
    def values(self) -> list[R]:
        """The results of the items that completed, in input order."""
        return [item.value for item in self.items if item.ok]  # type: ignore[misc]

    @property
    def errors(self) -> list[Exception]:
        """The errors of the items that failed, in input order."""
        return [item.error for item in self.items if item.error is not None]

    @property
    def succeeded(self) -> int:
        """How many items completed."""
        return self._count(ItemStatus.COMPLETED)

    @property
    def failed(self) -> int:
        """How many items failed."""
        return self._count(ItemStatus.FAILED)

    @property
    def skipped(self) -> int:
        """How many items were not run to the end because the policy was decided."""
        return self._count(ItemStatus.SKIPPED)

    def _count(self, status: ItemStatus) -> int:
        return sum(1 for item in self.items if item.status is status)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A settled item: its value, or the exception it raised."""

    value: object = None
    error: Exception | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MapPolicy:
    """When a ``ctx.map`` of ``items`` items stops, and how many items run at once.

    Raises:
        TypeError: a limit is not an integer (or None).
        ValueError: a limit is out of range, or ``min_successes`` exceeds the items.
    """

    items: int
    #: The most items running at once (None: all of them).
    max_concurrency: int | None = None
    #: Stop with success once this many items completed (None: run every item).
    min_successes: int | None = None
    #: Stop with :class:`~durably.errors.MapFailedError` once more items than this
    #: failed (None: any number; failed items are reported in the result).
    tolerated_failures: int | None = None

    def __post_init__(self) -> None:
        for name, value, minimum in (
            ("max_concurrency", self.max_concurrency, 1),
            ("min_successes", self.min_successes, 1),
            ("tolerated_failures", self.tolerated_failures, 0),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ctx.map: {name} must be an integer or None, got {value!r}")
            if value < minimum:
                raise ValueError(
                    f"ctx.map: {name} must be at least {minimum}, got {value} "
                    f"(pass None for no limit)"
                )
        if self.min_successes is not None and self.min_successes > self.items:
            raise ValueError(
                f"ctx.map: min_successes={self.min_successes} can never be reached with "
                f"{self.items} item(s); pass at most {self.items}, or None to run every item"
            )

    def decision(self, succeeded: int, failed: int) -> Literal["completed", "failed"] | None:
        """Whether the map stops after these outcomes (None: it goes on)."""
        if self.tolerated_failures is not None and failed > self.tolerated_failures:
            return "failed"
        settled = succeeded + failed
        if self.min_successes is not None:
            if succeeded >= self.min_successes:
                return "completed"
            if succeeded + (self.items - settled) < self.min_successes:
                return "failed"
        return "completed" if settled == self.items else None

    def has_failed(self, succeeded: int, failed: int) -> bool:
        """The verdict once the map stopped with these outcomes (the same as the
        :meth:`decision` that stopped it)."""
        if self.tolerated_failures is not None and failed > self.tolerated_failures:
            return True
        return self.min_successes is not None and succeeded < self.min_successes


def map_result(items: Sequence[object], outcomes: dict[int, Outcome]) -> MapResult[Any]:
    """The result of a map whose settled items have ``outcomes`` (the rest skipped)."""
    entries: list[MapItem[Any]] = []
    for index, item in enumerate(items):
        outcome = outcomes.get(index)
        if outcome is None:
            entries.append(MapItem(index=index, item=item, status=ItemStatus.SKIPPED))
        elif outcome.error is not None:
            entries.append(
                MapItem(index=index, item=item, status=ItemStatus.FAILED, error=outcome.error)
            )
        else:
            entries.append(
                MapItem(index=index, item=item, status=ItemStatus.COMPLETED, value=outcome.value)
            )
    return MapResult(tuple(entries))


def map_failure(name: str, policy: MapPolicy, result: MapResult[Any]) -> MapFailedError:
    """The error a map whose policy failed raises (the same on replay)."""
    needs = []
    if policy.min_successes is not None:
        needs.append(f"needs {policy.min_successes} success(es)")
    if policy.tolerated_failures is not None:
        needs.append(f"tolerates {policy.tolerated_failures} failure(s)")
    first = next((item for item in result if item.error is not None), None)
    cause = (
        ""
        if first is None or first.error is None
        else f"; first failure (item {first.index}): {type(first.error).__name__}: {first.error}"
    )
    return MapFailedError(
        f"ctx.map {name!r} failed: {result.failed} of {len(result)} item(s) failed and "
        f"{result.succeeded} completed, but it {' and '.join(needs)}{cause}",
        result=result,
    )


async def settle(
    starters: Sequence[ItemStarter],
    policy: MapPolicy,
    *,
    is_interruption: Callable[[BaseException], bool],
    only: Collection[int] | None = None,
) -> dict[int, Outcome]:
    """Run items until the policy is decided; return the outcomes of the settled ones.

    Args:
        starters: One per item, in input order.
        policy: Decides when to stop (ignored with ``only``).
        is_interruption: Whether an item's error is the workflow's interruption (it
            was cancelled or timed out): that stops the map instead of counting as the
            item's failure.
        only: Replay: settle exactly these items (recorded), all at once.

    Raises:
        BaseException: a control-flow jump of an item (suspension, abandon) or the
            workflow's interruption, once every started item has stopped.
    """
    indices = iter(sorted(only) if only is not None else range(len(starters)))
    limit = len(starters) if only is not None else policy.max_concurrency or len(starters)
    outcomes: dict[int, Outcome] = {}
    running: dict[asyncio.Future[Any], int] = {}
    jump: BaseException | None = None
    decided = False
    try:
        while True:
            while jump is None and not decided and len(running) < limit:
                index = next(indices, None)
                if index is None:
                    break
                running[asyncio.ensure_future(starters[index]())] = index
            if not running:
                return outcomes
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=running.__getitem__):
                index = running.pop(task)
                if task.cancelled():
                    continue
                error = task.exception()
                if error is not None and (
                    not isinstance(error, Exception) or is_interruption(error)
                ):
                    jump = _stronger(jump, error)
                elif not decided:
                    outcomes[index] = (
                        Outcome(value=task.result()) if error is None else Outcome(error=error)
                    )
            if only is None and not decided and jump is None:
                succeeded = sum(1 for outcome in outcomes.values() if outcome.error is None)
                if policy.decision(succeeded, len(outcomes) - succeeded) is not None:
                    decided = True
                    for task in running:
                        task.cancel()
            if jump is not None and not running:
                raise jump
    finally:
        if running:  # the map itself was cancelled: stop its items before it goes
            for task in running:
                task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait(running)


def _rank(error: BaseException) -> int:
    if isinstance(error, _Abandon):
        return 0
    if isinstance(error, _Suspend):
        return 3
    return 2 if isinstance(error, Exception) else 1


def _stronger(current: BaseException | None, new: BaseException) -> BaseException:
    """The jump to raise: abandoning first, then other control flow, then an
    interruption, then the suspension that wakes earliest."""
    if current is None or _rank(new) < _rank(current):
        return new
    if isinstance(new, _Suspend) and isinstance(current, _Suspend):
        never = 2**63
        if (new.wake_at if new.wake_at is not None else never) < (
            current.wake_at if current.wake_at is not None else never
        ):
            return new
    return current
