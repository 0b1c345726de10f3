"""A Starlette web app running durable workflows: the durably app opens (and resumes
unfinished orders) at startup and drains at shutdown. FastAPI takes the same
``lifespan=``.

Run: uvicorn asgi_shop:web      (pip install 'durably[dashboard]' brings Starlette and uvicorn)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import durably
from durably.integrations.asgi import lifespan

app = durably.Durably("sqlite:///shop.db")


async def charge(order_id: str) -> str:
    await asyncio.sleep(0.5)  # a payment provider's API call
    return f"payment-{order_id}"


@app.workflow(name="checkout")
async def checkout(ctx: durably.Context, order_id: str) -> str:
    payment = await ctx.step("charge", charge, order_id)
    return f"order {order_id} paid with {payment}"


async def place_order(request: Request) -> JSONResponse:
    order_id = request.path_params["order_id"]
    handle = await app.start(checkout, order_id, workflow_id=f"order-{order_id}")
    return JSONResponse({"workflow_id": handle.workflow_id}, status_code=202)


async def order(request: Request) -> JSONResponse:
    info = await app.get_workflow(f"order-{request.path_params['order_id']}")
    return JSONResponse({"status": info.status, "result": info.result_json})


async def recover(request: Request) -> JSONResponse:
    app.request_recovery()  # e.g. called by a health check once the database is back
    return JSONResponse({"requested": True}, status_code=202)


@contextlib.asynccontextmanager
async def report_recoveries(web: Starlette) -> AsyncIterator[None]:
    """Runs inside the durably lifespan: the app is open here."""

    async def report() -> None:
        async for recovery in app.recovery_reports():
            print(f"recovery pass resumed {list(recovery.resumed)}", flush=True)

    task = asyncio.create_task(report())
    yield
    task.cancel()


web = Starlette(
    routes=[
        Route("/orders/{order_id}", place_order, methods=["POST"]),
        Route("/orders/{order_id}", order),
        Route("/recover", recover, methods=["POST"]),
    ],
    lifespan=lifespan(app, grace=10, inner=report_recoveries),
)
