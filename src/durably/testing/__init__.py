"""Test kit for durably users: a virtual clock, fault injection, the store contract.

``StoreContract`` needs pytest; it is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durably.testing.clock import FakeClock
from durably.testing.faults import CrashAt, FaultInjectingStore

if TYPE_CHECKING:  # imported lazily at run time (below), but typed for checkers
    from durably.testing.store_contract import StoreContract

__all__ = ["CrashAt", "FakeClock", "FaultInjectingStore", "StoreContract"]


def __getattr__(name: str) -> Any:
    if name == "StoreContract":
        from durably.testing.store_contract import StoreContract

        return StoreContract
    raise AttributeError(f"module 'durably.testing' has no attribute {name!r}")
