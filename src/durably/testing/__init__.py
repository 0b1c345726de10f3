"""Test kit for durably users: a virtual clock, fault injection, the store contract."""

from __future__ import annotations

from durably.testing.clock import FakeClock

__all__ = ["FakeClock"]
