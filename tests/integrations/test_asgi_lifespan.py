"""The ASGI lifespan under a real Starlette app served by uvicorn in this process:
startup opens the app (recovering unfinished work), shutdown drains it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from durably import AppClosedError, Context, Durably, SyncDurably, WorkflowStatus
from durably.integrations.asgi import lifespan


class Shop:
    """A durably app whose "charge" workflow runs one step that waits for ``gate``."""

    def __init__(self, path: Path) -> None:
        self.app = Durably(f"sqlite:///{path}", poll_interval=0.05)
        self.gate = asyncio.Event()
        self.steps: list[str] = []

        async def take_payment(order_id: str) -> str:
            self.steps.append(order_id)
            await self.gate.wait()
            return f"charged {order_id}"

        @self.app.workflow(name="charge")
        async def charge(ctx: Context, order_id: str) -> str:
            return await ctx.step("take-payment", take_payment, order_id)

    def web(self, **options: Any) -> Starlette:
        """The web app: start an order, or wait for its result."""

        async def start(request: Request) -> JSONResponse:
            order_id = request.path_params["order_id"]
            handle = await self.app.start("charge", order_id, workflow_id=order_id)
            return JSONResponse({"workflow_id": handle.workflow_id})

        async def result(request: Request) -> JSONResponse:
            handle = self.app.handle(request.path_params["order_id"])
            return JSONResponse({"result": await handle.result(timeout=30)})

        routes = [
            Route("/orders/{order_id}", start, methods=["POST"]),
            Route("/orders/{order_id}", result, methods=["GET"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan(self.app, **options))


class Served:
    """uvicorn serving an ASGI app in this process, on a free port of 127.0.0.1."""

    def __init__(self, asgi: Any) -> None:
        config = uvicorn.Config(asgi, host="127.0.0.1", port=0, lifespan="on", log_level="error")
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Served:
        self.task = asyncio.ensure_future(self.server.serve())
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert not self.task.done(), "uvicorn stopped during startup"
            assert time.monotonic() < deadline, "uvicorn did not start"
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Shut down as on SIGTERM: the lifespan's shutdown runs before this returns."""
        self.server.should_exit = True
        if self.task is not None:
            await self.task

    async def request(self, method: str, path: str) -> dict[str, Any]:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)

        def send() -> dict[str, Any]:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return dict(json.loads(response.read()))

        return await asyncio.to_thread(send)


async def eventually(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


async def stored(path: Path, workflow_id: str) -> tuple[WorkflowStatus, str | None]:
    """The workflow's status and owner, read by a client app."""
    async with Durably(f"sqlite:///{path}", worker=False) as reader:
        info = await reader.get_workflow(workflow_id)
        return info.status, info.owner


async def test_startup_recovers_a_workflow_left_unfinished(tmp_path: Path) -> None:
    """A process stopped in the middle of a step; the web app's startup resumes it
    without any request asking for it."""
    database = tmp_path / "shop.db"
    before = Shop(database)
    async with before.app:
        await before.app.start("charge", "order-1", workflow_id="order-1")
        await eventually(lambda: before.steps == ["order-1"], "the step started")
    assert await stored(database, "order-1") == (WorkflowStatus.RUNNING, None)

    shop = Shop(database)
    shop.gate.set()
    async with Served(shop.web()) as served:
        await eventually(lambda: shop.steps == ["order-1"], "startup resumed the workflow")
        assert await served.request("GET", "/orders/order-1") == {"result": "charged order-1"}
    assert (await stored(database, "order-1"))[0] is WorkflowStatus.COMPLETED


async def test_shutdown_gives_running_workflows_the_grace_period(tmp_path: Path) -> None:
    """At shutdown the app stops taking work but lets a running step finish."""
    database = tmp_path / "shop.db"
    shop = Shop(database)
    served = Served(shop.web(grace=30))
    async with served:
        assert await served.request("POST", "/orders/order-2") == {"workflow_id": "order-2"}
        await eventually(lambda: shop.steps == ["order-2"], "the step started")

        async def finish_once_closing() -> None:
            # The app refuses queries from the moment it starts closing.
            while True:
                try:
                    await shop.app.get_workflow("order-2")
                except AppClosedError:
                    shop.gate.set()
                    return
                await asyncio.sleep(0.005)

        finisher = asyncio.ensure_future(finish_once_closing())
        await served.stop()
        await finisher
    assert shop.steps == ["order-2"]
    assert await stored(database, "order-2") == (WorkflowStatus.COMPLETED, None)


async def test_shutdown_without_grace_releases_running_workflows(tmp_path: Path) -> None:
    """With no grace a running workflow is released at once, for another process."""
    database = tmp_path / "shop.db"
    shop = Shop(database)
    async with Served(shop.web(grace=0)) as served:
        await served.request("POST", "/orders/order-3")
        await eventually(lambda: shop.steps == ["order-3"], "the step started")
    assert await stored(database, "order-3") == (WorkflowStatus.RUNNING, None)


async def test_an_inner_lifespan_runs_while_the_app_is_open(tmp_path: Path) -> None:
    """The wrapped lifespan starts after the app opened, ends before it closes, and
    its state reaches the requests."""
    shop = Shop(tmp_path / "shop.db")
    shop.gate.set()
    seen: list[str] = []

    @contextlib.asynccontextmanager
    async def inner(asgi: Starlette) -> AsyncIterator[dict[str, str]]:
        handle = await shop.app.start("charge", "warm-up", workflow_id="warm-up")
        seen.append("inner started")
        yield {"greeting": "hello"}
        seen.append(f"inner ends with {await handle.result()}")

    async def greeting(request: Request) -> JSONResponse:
        return JSONResponse({"greeting": request.state.greeting})

    web = Starlette(routes=[Route("/greeting", greeting)], lifespan=lifespan(shop.app, inner=inner))
    async with Served(web) as served:
        assert await served.request("GET", "/greeting") == {"greeting": "hello"}
    assert seen == ["inner started", "inner ends with charged warm-up"]


async def test_a_sync_app_is_served_through_its_async_app(tmp_path: Path) -> None:
    sync_app = SyncDurably(f"sqlite:///{tmp_path / 'sync.db'}")

    @sync_app.workflow(name="hello")
    def hello(ctx: object, name: str) -> str:
        return f"hello {name}"

    async def run(request: Request) -> JSONResponse:
        return JSONResponse({"result": await sync_app.app.run("hello", "web")})

    web = Starlette(routes=[Route("/", run)], lifespan=lifespan(sync_app))
    async with Served(web) as served:
        assert await served.request("GET", "/") == {"result": "hello web"}


@pytest.mark.parametrize("grace", [0, 1.5])
async def test_the_lifespan_is_a_plain_async_context_manager(tmp_path: Path, grace: float) -> None:
    """No server needed: ``async with lifespan(app)(asgi_app)`` opens and closes."""
    app = Durably(f"sqlite:///{tmp_path / 'plain.db'}")
    async with lifespan(app, grace=grace)(object()) as state:
        assert state is None
        assert await app.list_workflows() == []
    with pytest.raises(AppClosedError):
        await app.list_workflows()
