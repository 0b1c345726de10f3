"""Running an app as a plain long-lived process, stopped gracefully by SIGTERM.

``durably worker module:app`` does this from the command line; :func:`serve` does it
from your own ``if __name__ == "__main__":`` block, with the same code underneath
(:func:`durably.worker_process.serve`): open the app (recovering what it may run),
run until SIGTERM or SIGINT, then stop claiming, give the running workflows ``grace``
to finish or reach a durable wait, and release the rest so that another process
takes them over at once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from durably._portal import ensure_no_running_loop
from durably.engine import Durably
from durably.sync import SyncDurably
from durably.worker_process import serve as serve_worker

__all__ = ["serve", "serve_async"]


def serve(app: Durably | SyncDurably, *, grace: timedelta | float = 10.0) -> None:
    """Run ``app`` until SIGTERM or SIGINT, then drain it; blocks until then.

    Args:
        app: An app that is not open yet (a ``SyncDurably`` works too).
        grace: How long running workflows get to finish or reach a durable wait
            after the signal (seconds or a timedelta); the rest are released.

    Raises:
        RuntimeError: called from a running event loop (await :func:`serve_async`).
    """
    ensure_no_running_loop("durably.serve")
    asyncio.run(serve_async(app, grace=grace))


async def serve_async(
    app: Durably | SyncDurably,
    *,
    grace: timedelta | float = 10.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Open ``app`` and run it until SIGTERM, SIGINT or ``stop``, then drain it.

    The signals are caught when this runs in the main thread's event loop; elsewhere
    set ``stop``.

    Args:
        app: An app that is not open yet (a ``SyncDurably`` works too).
        grace: As for :func:`serve`.
        stop: Set it to stop the app as a signal would.
    """
    durable = app.app if isinstance(app, SyncDurably) else app
    await serve_worker(durable, grace=grace, stop=stop)
