"""Running a worker process: ``durably worker module:app``.

A worker opens the app (which recovers and claims every workflow it may run, and
keeps claiming as work arrives), logs what it does, and runs until SIGTERM or SIGINT.
It then stops claiming, gives the workflows it runs a grace period to finish or reach
a durable wait, and releases the rest, so that other workers take them over at once
instead of after a lease timeout. Nothing is lost either way: a workflow stopped in
the middle of a step resumes elsewhere from its last recorded operation.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from datetime import timedelta

from durably.app_loading import load_app
from durably.engine import Durably
from durably.errors import ConfigurationError

logger = logging.getLogger("durably.worker")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"


async def serve(
    app: Durably, *, grace: timedelta | float = 10.0, stop: asyncio.Event | None = None
) -> None:
    """Run ``app`` as a worker until ``stop`` is set or SIGTERM/SIGINT arrives.

    The signals are caught only where the event loop can (its main thread, not on
    Windows); elsewhere only ``stop`` ends the run.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (ValueError, RuntimeError, NotImplementedError) as error:
            logger.debug("cannot catch %s here (%s); stop with the stop event", signum, error)
        else:
            handled.append(signum)
    try:
        async with app:
            names = sorted(app.registry.names())
            logger.info(
                "worker %s started on %r with %d workflow(s): %s",
                app.executor_id,
                app.store,
                len(names),
                ", ".join(names) or "(none registered)",
            )
            await stop.wait()
            logger.info("stop requested: finishing or releasing what this worker holds")
            await app.close(grace=grace)
        logger.info("worker %s stopped", app.executor_id)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def run_worker(spec: str, *, grace_seconds: float = 10.0, log_level: str = "INFO") -> int:
    """Load the app named by ``spec`` and serve it until stopped; return an exit code."""
    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    try:
        app = load_app(spec)
    except ConfigurationError as error:
        print(f"durably worker: {error}", file=sys.stderr)
        return 2
    asyncio.run(serve(app, grace=timedelta(seconds=grace_seconds)))
    return 0
