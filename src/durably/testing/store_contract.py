"""The store contract: the tests that define a correct store.

Subclass :class:`StoreContract` in a pytest module and give it a ``store`` fixture
that yields an opened store on an empty database and closes it afterwards::

    import pytest
    from durably.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        async def store(self, tmp_path):
            store = MyStore(tmp_path / "test.db")
            await store.open()
            yield store
            await store.close()

The tests are ``async def`` methods and need pytest-asyncio (``asyncio_mode =
"auto"``). Each one checks one sentence of the docstrings of
:class:`durably.store.Store`; where those docstrings are silent, the tests pin down
what the reference :class:`~durably.store.MemoryStore` does, and say so.
"""

from __future__ import annotations

from durably.testing._contract.claims import ClaimsContract
from durably.testing._contract.history import HistoryContract
from durably.testing._contract.leases import LeasesContract
from durably.testing._contract.operations import OperationsContract
from durably.testing._contract.queues import QueuesContract
from durably.testing._contract.records import (
    LEASE,
    NOW,
    SECOND,
    TRICKY,
    attempt,
    claimed,
    fence_of,
    ids,
    operation,
    owned,
    send,
    signal_wait,
    stored,
    workflow,
)
from durably.testing._contract.resume import ResumeContract
from durably.testing._contract.signals import SignalsContract
from durably.testing._contract.status import StatusContract
from durably.testing._contract.versions import VersionsContract
from durably.testing._contract.workflows import WorkflowsContract

__all__ = [
    "StoreContract",
    "LEASE",
    "NOW",
    "SECOND",
    "TRICKY",
    "attempt",
    "claimed",
    "fence_of",
    "ids",
    "operation",
    "owned",
    "send",
    "signal_wait",
    "stored",
    "workflow",
]


class StoreContract(
    WorkflowsContract,
    ClaimsContract,
    LeasesContract,
    HistoryContract,
    OperationsContract,
    StatusContract,
    SignalsContract,
    QueuesContract,
    ResumeContract,
    VersionsContract,
):
    """Every behaviour a store must have. Subclass it and provide a ``store`` fixture."""
