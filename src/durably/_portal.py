"""A background event-loop thread that runs coroutines for synchronous callers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def ensure_no_running_loop(api: str) -> None:
    """Refuse a blocking call from inside a running event loop (it would deadlock it).

    Raises:
        RuntimeError: naming the async API to use instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{api} blocks, but it was called from a running event loop; use the async API "
        f"(durably.Durably and await) inside async code"
    )


class Portal:
    """Owns an event loop running in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="durably-portal", daemon=True
        )
        self._thread.start()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's event loop."""
        return self._loop

    def call(self, factory: Callable[[], Coroutine[Any, Any, T]], *, api: str) -> T:
        """Run the coroutine made by ``factory`` on the portal loop and wait for it."""
        ensure_no_running_loop(api)
        if self._closed:
            raise RuntimeError(f"{api}: the sync app is closed")

        async def invoke() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result()

    def close(self) -> None:
        """Stop the loop and join its thread. Idempotent."""
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            await self._loop.shutdown_asyncgens()
            await self._loop.shutdown_default_executor()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
