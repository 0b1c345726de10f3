"""Fault injection under the store: a hook called before and after every write.

Crash tests wrap the real store in :class:`FaultInjectingStore` and kill the process
(with SIGKILL) at the N-th write boundary, which sweeps every operation boundary of a
workflow systematically.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from durably.store.base import Store

#: Store methods that write. Everything else is delegated untouched.
WRITE_METHODS = frozenset(
    {
        "create_workflow",
        "claim_workflow",
        "claim_due_workflows",
        "renew_leases",
        "release_workflows",
        "register_executor",
        "remove_executor",
        "record_operation",
        "record_attempt",
        "set_workflow_status",
        "suspend_workflow",
        "request_cancel",
        "append_signal",
        "consume_signal",
        "delete_workflow",
        "purge_workflows",
    }
)


class FaultInjectingStore:
    """Wraps a store; calls ``hook(phase, method)`` with phase ``"before"``/``"after"``
    around every write. The hook may raise (an injected fault) or kill the process."""

    def __init__(self, inner: Store, hook: Callable[[str, str], None]) -> None:
        self.inner = inner
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if name not in WRITE_METHODS:
            return attribute

        async def write(*args: Any, **kwargs: Any) -> Any:
            self._hook("before", name)
            result = await attribute(*args, **kwargs)
            self._hook("after", name)
            return result

        return write


class CrashAt:
    """A hook that SIGKILLs this process at the ``count``-th boundary of ``phase``,
    counting only the given methods (all writes when None)."""

    def __init__(self, phase: str, count: int, methods: frozenset[str] | None = None) -> None:
        self.phase = phase
        self.count = count
        self.methods = methods
        self.seen = 0

    def __call__(self, phase: str, method: str) -> None:
        if phase != self.phase or (self.methods is not None and method not in self.methods):
            return
        self.seen += 1
        if self.seen == self.count:
            os.kill(os.getpid(), signal.SIGKILL)
