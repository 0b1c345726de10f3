"""Test kit for durably users: a test app, a virtual clock, crashes, the store contract.

* :class:`TestDurably` / :class:`SyncTestDurably`: an in-memory app whose virtual clock
  skips idle time, with :func:`crash_at` and an ``always_replay`` mode (docs/testing.md).
* :class:`FakeClock`: the virtual clock on its own; :class:`FaultInjectingStore` and
  :class:`CrashAt`: faults and SIGKILLs at store write boundaries.

``StoreContract`` needs pytest; it is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durably.testing.app import SyncTestDurably, TestDurably, crash_at
from durably.testing.clock import FakeClock
from durably.testing.crash import CrashPoint
from durably.testing.faults import CrashAt, FaultInjectingStore

if TYPE_CHECKING:  # imported lazily at run time (below), but typed for checkers
    from durably.testing.store_contract import StoreContract

__all__ = [
    "CrashAt",
    "CrashPoint",
    "FakeClock",
    "FaultInjectingStore",
    "StoreContract",
    "SyncTestDurably",
    "TestDurably",
    "crash_at",
]


def __getattr__(name: str) -> Any:
    if name == "StoreContract":
        from durably.testing.store_contract import StoreContract

        return StoreContract
    raise AttributeError(f"module 'durably.testing' has no attribute {name!r}")
