"""ASGI lifespan: open the durably app at startup, drain it at shutdown.

::

    from starlette.applications import Starlette
    from durably.integrations.asgi import lifespan

    web = Starlette(routes=[...], lifespan=lifespan(app))   # FastAPI(lifespan=...) too

At startup the app opens: it recovers the unfinished workflows it may run (without
waiting for them) and starts claiming work, before the server accepts requests. At
shutdown it stops claiming, gives the running workflows ``grace`` to finish or reach a
durable wait, and releases the rest so that another process resumes them at once.
Nothing here imports a web framework: any server or framework that runs an
``async with lifespan(asgi_app)`` context manager works.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

from durably.engine import Durably
from durably.sync import SyncDurably

__all__ = ["Lifespan", "lifespan"]

#: What Starlette and FastAPI accept as ``lifespan=``: called with the ASGI app, it
#: returns an async context manager (whose value, if any, is the lifespan state).
Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def lifespan(
    app: Durably | SyncDurably,
    *,
    grace: timedelta | float = 10.0,
    inner: Lifespan | None = None,
) -> Lifespan:
    """A lifespan that opens ``app`` at startup and closes it with ``grace`` at shutdown.

    Args:
        app: The durably app (a ``SyncDurably``'s async app is used).
        grace: At shutdown, how long running workflows get to finish or reach a
            durable wait before they are released (seconds or a timedelta).
        inner: Your own lifespan, run inside: it starts after the app is open (so it
            may start workflows) and ends before the app closes; its state, if any,
            becomes the lifespan state.

    Returns:
        A callable to pass as ``lifespan=`` to Starlette or FastAPI.
    """
    durable = app.app if isinstance(app, SyncDurably) else app

    @contextlib.asynccontextmanager
    async def durable_lifespan(asgi_app: Any) -> AsyncIterator[Any]:
        await durable.open()
        try:
            if inner is None:
                yield None
            else:
                async with inner(asgi_app) as state:
                    yield state
        finally:
            await durable.close(grace=grace)

    return durable_lifespan
