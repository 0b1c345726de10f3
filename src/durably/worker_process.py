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
import importlib
import logging
import os
import signal
import sys
from datetime import timedelta

from durably.engine import Durably
from durably.errors import ConfigurationError

logger = logging.getLogger("durably.worker")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d] %(message)s"


def load_app(spec: str) -> Durably:
    """The :class:`Durably` app named by ``"module:attribute"`` (or ``"path/file.py:app"``).

    Raises:
        ConfigurationError: the spec is malformed, the module cannot be imported, or
            the attribute is not a Durably app.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(
            f"the app must be given as module:attribute (for example myapp.workflows:app), "
            f"not {spec!r}"
        )
    if module_name.endswith(".py"):
        directory, _, file_name = module_name.rpartition("/")
        sys.path.insert(0, os.path.abspath(directory or "."))
        module_name = file_name.removesuffix(".py")
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules of this directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigurationError(f"cannot import module {module_name!r}: {error}") from error
    app = getattr(module, attribute, None)
    app = getattr(app, "app", app)  # a SyncDurably wraps its Durably as .app
    if not isinstance(app, Durably):
        raise ConfigurationError(
            f"{spec!r} is {type(app).__name__}, not a durably.Durably app; point at the "
            f"object made with durably.Durably(...)"
        )
    return app


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
