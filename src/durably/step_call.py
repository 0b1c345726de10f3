"""Calling a step's function: the current-step context, threads for ``def``, timeouts."""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from durably._fast_init import fast_init
from durably.clock import Clock
from durably.errors import StepTimeoutError
from durably.registry import StepDefinition


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StepInfo:
    """The step running now, as seen from inside its function."""

    workflow_id: str
    seq: int
    name: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """A key unique to this step of this workflow, stable across retries and
        recoveries: pass it to external APIs so that a re-run step is not applied twice."""
        return f"{self.workflow_id}:{self.seq}"


#: A running step's workflow id, seq, name and attempt, as :func:`call_step_function`
#: is given them: a tuple costs next to nothing to make at every attempt; the
#: :class:`StepInfo` is made only when asked for (:func:`running_step`).
StepKey = tuple[str, int, str, int]

_current_step: ContextVar[StepKey | None] = ContextVar("durably_current_step", default=None)
#: The context of the workflow whose body runs in this asyncio context. A step's
#: function runs in its body's task with :data:`_current_step` set, so read it with
#: :func:`workflow_body_context` (one variable set per step attempt, not two).
_workflow_body: ContextVar[object | None] = ContextVar("durably_workflow_body", default=None)


def enter_workflow_body(context: object) -> None:
    """Mark this asyncio context (a body's own task, or a ``def`` body's thread) as
    running the body of the workflow whose context is ``context``."""
    _workflow_body.set(context)


def workflow_body_context() -> object | None:
    """The context of the workflow whose body is running here; None inside step
    functions and outside workflows."""
    if _current_step.get() is not None:
        return None
    return _workflow_body.get()


def current_step() -> StepInfo:
    """The step whose function is running now.

    Raises:
        RuntimeError: called outside a step function.
    """
    info = running_step()
    if info is None:
        raise RuntimeError("durably.current_step() is only available inside a step function")
    return info


def running_step() -> StepInfo | None:
    """The step whose function is running now, or None outside step functions."""
    key = _current_step.get()
    if key is None:
        return None
    workflow_id, seq, name, attempt = key
    return StepInfo(workflow_id=workflow_id, seq=seq, name=name, attempt=attempt)


#: Attribute set on the functions ``@app.step`` returns: their :class:`StepDefinition`.
STEP_ATTRIBUTE = "__durably_step__"


def step_function(definition: StepDefinition) -> Callable[..., Any]:
    """The function ``@app.step`` returns: a durable step inside a workflow (through the
    running context's ``call_step``), a plain call outside one."""
    fn = definition.fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        context = workflow_body_context()
        if context is None:
            return fn(*args, **kwargs)
        return context.call_step(definition, args, kwargs)  # type: ignore[attr-defined]

    setattr(call, STEP_ATTRIBUTE, definition)  # so that ctx.map uses the step's options
    return call


#: Result types that cannot be awaited: no need to ask (``isawaitable`` is slow for them).
_NEVER_AWAITABLE = frozenset({type(None), bool, int, float, str, bytes, dict, list, tuple})


def is_async_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction(fn)``, answered at once for a plain ``async def``."""
    if type(fn) is types.FunctionType and fn.__code__.co_flags & inspect.CO_COROUTINE:
        return True
    return inspect.iscoroutinefunction(fn)


async def call_step_function(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    step: StepKey,
    clock: Clock,
    timeout: int | None,
) -> Any:
    """Run one attempt of a step: ``async def`` on the loop, ``def`` in a worker thread,
    failed with :class:`StepTimeoutError` at ``timeout`` microseconds."""
    step_token = _current_step.set(step)  # also hides the body: see _workflow_body
    try:
        if is_async_function(fn):
            call: Awaitable[Any] = fn(*args, **kwargs)
        else:
            call = asyncio.to_thread(fn, *args, **kwargs)
        if timeout is None:
            result = await call
        else:
            result = await _with_timeout(call, timeout, step, clock)
        if type(result) not in _NEVER_AWAITABLE and inspect.isawaitable(result):
            result = await result
        return result
    finally:
        _current_step.reset(step_token)


async def _with_timeout(call: Awaitable[Any], timeout: int, step: StepKey, clock: Clock) -> Any:
    deadline = clock.now() + timeout
    work = asyncio.ensure_future(call)
    timer = asyncio.ensure_future(clock.sleep_until(deadline))
    try:
        await asyncio.wait({work, timer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not work.done():
            work.cancel()
    if work.cancelled() or not work.done():
        raise StepTimeoutError(
            f"step {step[2]!r} of workflow {step[0]!r} ran longer than its "
            f"timeout ({timedelta(microseconds=timeout)}) and was failed"
        )
    return work.result()
