"""The workflows that the dashboard tests record: a shipment with a retried step, a
sleep and a signal wait; an order whose charge fails and is compensated; quick ones
that complete at once. Payloads carry HTML on purpose: the dashboard must show it as
text."""

from __future__ import annotations

from typing import Any

import durably
from durably.retry import RetryPolicy

#: A payload that would run a script if the dashboard rendered it as HTML.
HOSTILE = '<script>document.title="pwned"</script><b>bold?</b>'


class PaymentDeclinedError(Exception):
    """The card was declined."""


#: Workflow ids whose first ``charge`` attempt has failed already (one retry each).
_FLAKY_SEEN: set[str] = set()


async def reserve(order_id: str) -> str:
    """Reserve the goods."""
    return f"reservation-{order_id}"


async def release(reservation: str) -> None:
    """Give the goods back."""


async def flaky_charge(order_id: str) -> dict[str, Any]:
    """A charge whose first attempt fails (a timeout), the second succeeds."""
    if order_id not in _FLAKY_SEEN:
        _FLAKY_SEEN.add(order_id)
        raise TimeoutError(f"the payment service timed out for {order_id}")
    return {"order": order_id, "charged_cents": 4200, "note": HOSTILE}


async def decline(order_id: str) -> int:
    """A card that is always declined."""
    raise PaymentDeclinedError(f"card declined for {order_id}")


async def ship(order_id: str, approved_by: str | None) -> str:
    """Ship the order."""
    return f"shipped {order_id}, approved by {approved_by}"


def build_app(store: Any, **options: Any) -> durably.Durably:
    """The app with the dashboard tests' workflows registered."""
    app = durably.Durably(store, **options)

    @app.workflow(name="shipment")
    async def shipment(ctx: durably.Context, order_id: str, note: str) -> str:
        await ctx.step("reserve", reserve, order_id, compensate=release)
        await ctx.step("charge", flaky_charge, order_id, retry=RetryPolicy.fixed(3, 0.01))
        await ctx.sleep("cool-off", 0.02)
        approved_by = await ctx.wait_signal("approved", payload_type=str)
        return await ctx.step("ship", ship, order_id, approved_by)

    @app.workflow(name="doomed-order")
    async def doomed_order(ctx: durably.Context, order_id: str) -> int:
        await ctx.step("reserve", reserve, order_id, compensate=release)
        return await ctx.step("charge", decline, order_id)

    @app.workflow(name="failing-order")
    async def failing_order(ctx: durably.Context, order_id: str) -> int:
        return await ctx.step("charge", decline, order_id)

    @app.workflow(name="quick")
    async def quick(ctx: durably.Context, number: int, note: str) -> dict[str, Any]:
        return {"number": number, "note": note}

    return app
