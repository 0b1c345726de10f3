"""``ctx.map``: a step or a child workflow for every item, with a completion policy.

Every item's operation is numbered when ``ctx.map`` is called, in input order (a step
takes one number, a child two: its start and its result), then the items run as
:mod:`durably.fan_out` schedules them. The map's own operation (kind ``MAP``) records
which items settled before the policy decided, so a replay settles exactly those.

The map waits for its items, never for anything else: it counts among the operations
in flight (``wait_until_idle`` waits for it) but not among those that wait by
themselves (:attr:`MapOperations._maps_in_flight`), which the test kit's clock looks
at to tell an idle run from a busy one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from durably.composition import ChildCall, ChildOperations
from durably.fan_out import (
    ItemStarter,
    MapPolicy,
    MapResult,
    map_failure,
    map_result,
    settle,
)
from durably.identifiers import validate_identifier
from durably.models import OperationKind, OperationRecord
from durably.registry import DEFINITION_ATTRIBUTE, StepDefinition, WorkflowDefinition
from durably.retry import RetryPolicy
from durably.step_call import STEP_ATTRIBUTE


class MapOperations(ChildOperations):
    """``ctx.map`` (mixed into :class:`~durably.context.Context`)."""

    #: How many of the operations in flight are maps: each waits only for its items,
    #: which are operations in flight of their own.
    _maps_in_flight: int = 0

    if TYPE_CHECKING:  # provided by Context

        def _reserved_step(
            self,
            name: str,
            fn: Callable[..., Any],
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            *,
            retry: RetryPolicy | None,
            compensate: Callable[..., Any] | None,
            timeout: timedelta | float | None,
        ) -> ItemStarter: ...

        def _stop_on_corrupt_record(self, recorded: OperationRecord, cause: str) -> NoReturn: ...

    def map(
        self,
        fn: Callable[..., Any] | str,
        items: Iterable[Any],
        /,
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
        min_successes: int | None = None,
        tolerated_failures: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
    ) -> Coroutine[Any, Any, MapResult[Any]]:
        """Run ``fn(item)`` for every item, durably and concurrently, with a policy.

        Each item is a durable step (``fn`` is any function, or an ``@app.step``: its
        retry, timeout and compensation apply), or a child workflow (``fn`` is a
        registered workflow, or its name). Every item's operation is numbered at this
        call, in input order; items start in input order, at most ``max_concurrency``
        at once, and the map stops as soon as its policy is decided. Which items
        settled is recorded, so a replay returns the same result.

        Args:
            fn: The step function or the workflow.
            items: The inputs, one argument each.
            name: The steps' name (default: the function's name; for the record too).
            max_concurrency: The most items running at once (default: all).
            min_successes: Stop with success once this many items completed; the rest
                are skipped (default: run every item).
            tolerated_failures: Raise :class:`~durably.errors.MapFailedError` once more
                items than this failed (default: any number, reported in the result).
            retry: The steps' retry policy (steps only; default: the step's own).
            timeout: The steps' timeout (steps only; default: the step's own).

        Returns:
            An awaitable of a :class:`~durably.fan_out.MapResult`: every item's outcome
            (completed with its value, failed with its error, or skipped) in input
            order.

        Raises:
            ValueError: a policy value is out of range (at the call).
            MapFailedError: more than ``tolerated_failures`` items failed, or so many
                that ``min_successes`` cannot be reached.
            WorkflowCancelled: this workflow was cancelled.
        """
        inputs = list(items)
        policy = MapPolicy(
            items=len(inputs),
            max_concurrency=max_concurrency,
            min_successes=min_successes,
            tolerated_failures=tolerated_failures,
        )
        if isinstance(fn, str) or isinstance(
            getattr(fn, DEFINITION_ATTRIBUTE, None), WorkflowDefinition
        ):
            if retry is not None or timeout is not None:
                raise TypeError(
                    "ctx.map over a child workflow takes no retry= or timeout=: give the "
                    "workflow's steps their own policies"
                )
            workflow = self._child_call(fn, (), {}, None, None, bind=False).name
            label = validate_identifier(name or workflow, "map name")
            starters = [self._reserved_child(fn, item) for item in inputs]
        else:
            label, starters = self._reserved_steps(fn, inputs, name, retry, timeout)
        seq = self._take_seq()
        observed = [_outcome_retrieved(starter) for starter in starters]
        operation = self._map(seq, label, inputs, observed, policy)
        return self._track(self._waiting_for_items(operation))

    # -- internals ----------------------------------------------------------------

    async def _waiting_for_items(
        self, operation: Coroutine[Any, Any, MapResult[Any]]
    ) -> MapResult[Any]:
        self._maps_in_flight += 1
        try:
            return await operation
        finally:
            self._maps_in_flight -= 1

    def _reserved_child(self, workflow: Callable[..., Any] | str, item: object) -> ItemStarter:
        call = self._child_call(workflow, (item,), {}, None, None)
        start_seq = self._take_seq()
        result_seq = self._take_seq()
        child_id = self._child_id(call, start_seq)
        return lambda: self._track(self._child_item(start_seq, result_seq, call, child_id))

    def _reserved_steps(
        self,
        fn: Callable[..., Any],
        inputs: list[Any],
        name: str | None,
        retry: RetryPolicy | None,
        timeout: timedelta | float | None,
    ) -> tuple[str, list[ItemStarter]]:
        declared = getattr(fn, STEP_ATTRIBUTE, None)
        if isinstance(declared, StepDefinition):
            step_name = name or declared.name
            starters = [
                self._reserved_step(
                    step_name,
                    declared.fn,
                    (item,),
                    {},
                    retry=retry or declared.retry,
                    compensate=declared.compensate,
                    timeout=timeout if timeout is not None else declared.timeout,
                )
                for item in inputs
            ]
            return step_name, starters
        if not callable(fn):
            raise TypeError(f"ctx.map: {fn!r} is neither a function nor a workflow")
        step_name = name or str(getattr(fn, "__name__", ""))
        starters = [
            self._reserved_step(
                step_name, fn, (item,), {}, retry=retry, compensate=None, timeout=timeout
            )
            for item in inputs
        ]
        return step_name, starters

    async def _child_item(
        self, start_seq: int, result_seq: int, call: ChildCall, child_id: str
    ) -> Any:
        # The child's creation is never cut halfway (its record would be left owned by
        # this process but not running): a skipped item lets it finish, then cancels it.
        start = asyncio.ensure_future(self._start_child(start_seq, call, child_id))
        start.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            handle = await asyncio.shield(start)
            return await self._child_result(result_seq, handle)
        except asyncio.CancelledError:
            if self.interruption is None:  # skipped by ctx.map: the child is not needed
                with contextlib.suppress(Exception):
                    handle = await start
                    await self._children().cancel(handle.workflow_id)
            raise

    async def _map(
        self,
        seq: int,
        name: str,
        inputs: list[Any],
        starters: list[ItemStarter],
        policy: MapPolicy,
    ) -> MapResult[Any]:
        recorded = self._replayed(seq, OperationKind.MAP, name)
        settled: list[int] | None = None
        if recorded is not None:
            summary = self._replayed_result(recorded, dict[str, Any], f"ctx.map {name!r}")
            settled = summary.get("settled")
            if not isinstance(settled, list) or not all(
                isinstance(index, int) and 0 <= index < len(inputs) for index in settled
            ):
                self._stop_on_corrupt_record(
                    recorded, f"its settled items {settled!r} do not fit {len(inputs)} items"
                )
        else:
            self._raise_if_interrupted()
        started = self._env.clock.now()
        try:
            outcomes = await self._interruptibly(
                settle(starters, policy, is_interruption=self._is_interrupt, only=settled)
            )
        except Exception:
            self._raise_if_interrupted()
            raise
        result = map_result(inputs, outcomes)
        failed = policy.has_failed(result.succeeded, result.failed)
        failure = map_failure(name, policy, result) if failed else None
        if recorded is None:
            summary = {
                "settled": sorted(outcomes),
                "succeeded": result.succeeded,
                "failed": result.failed,
                "skipped": result.skipped,
            }
            await self._record(
                self._operation(
                    seq,
                    OperationKind.MAP,
                    name,
                    started,
                    result=json.dumps(summary),
                    error=None if failure is None else self._error_info(failure),
                )
            )
        if failure is not None:
            raise failure
        return result


def _outcome_retrieved(starter: ItemStarter) -> ItemStarter:
    """``starter``, its item's task marked as looked at when it ends.

    The map reads the outcome of every item it waits for. When the map itself is
    stopped (the app closes, the process crashes, the workflow is cancelled), its items
    are stopped with it and end raising that interruption, which nobody reads: it
    belongs to the map, which raises its own. asyncio would log each of them as a "Task
    exception was never retrieved".
    """

    async def start() -> Any:
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(_retrieve)
        return await starter()

    return start


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
