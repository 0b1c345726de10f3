"""E-commerce checkout: reserve stock, charge the card, wait for the payment to settle,
create the order, ship each product; when a step fails, undo the earlier ones.

    python examples/checkout.py [--order-id A-1001] [--item keyboard=1 --item mouse=2]
        [--card 4242424242424242] [--settle-seconds 1] [--state DIR] [--db FILE]

Run it twice: the second run finds the order's workflow finished and prints the same
receipt without charging anyone. Kill it mid-way and run it again: it carries on from
the last recorded step.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fake_services.shop import CardDeclined, Charge, Reservation, Shipment, Shop

import durably


@dataclass(frozen=True)
class Order:
    order_id: str
    card: str
    items: dict[str, int]  # product -> quantity


@dataclass(frozen=True)
class Receipt:
    order_id: str
    charge_id: str
    total_cents: int
    shipments: list[str]


class InvalidOrder(ValueError):
    """The order cannot be placed as it is."""


def build_app(database: Path, shop: Shop, *, settle: timedelta) -> durably.Durably:
    """The checkout workflow, its steps and their compensations, on ``database``."""
    app = durably.Durably(f"sqlite:///{database}")

    def idempotency_key() -> str:
        # Stable across retries and crashes: the providers apply each request once.
        return durably.current_step().idempotency_key

    @app.step()
    async def validate(order: Order) -> int:
        prices = shop.inventory.prices()
        unknown = sorted(set(order.items) - set(prices))
        if unknown or not order.items or min(order.items.values()) < 1:
            raise InvalidOrder(f"unknown products {unknown} or bad quantities in {order.items}")
        return sum(prices[sku] * quantity for sku, quantity in order.items.items())

    async def release(reservation: Reservation) -> None:
        shop.inventory.release(reservation.reservation_id)

    @app.step(compensate=release)  # the compensation receives the step's result
    async def reserve(order: Order) -> Reservation:
        return shop.inventory.reserve(order.items, idempotency_key=idempotency_key())

    async def refund(charge: Charge) -> None:
        shop.payments.refund(charge)  # keyed by the charge's idempotency key

    @app.step(
        retry=durably.RetryPolicy.exponential(4, initial_delay=0.2, dont_retry_on=(CardDeclined,)),
        compensate=refund,
    )
    async def charge(order: Order, total_cents: int) -> Charge:
        return shop.payments.charge(order.card, total_cents, idempotency_key=idempotency_key())

    async def cancel_order(order_id: str) -> None:
        shop.orders.cancel(order_id)

    @app.step(compensate=cancel_order)
    async def create_order(order: Order, payment: Charge) -> str:
        shop.orders.create(order.order_id, payment.charge_id, idempotency_key=idempotency_key())
        return order.order_id

    async def cancel_shipment(shipment: Shipment) -> None:
        shop.carrier.cancel(shipment.shipment_id)

    @app.step(compensate=cancel_shipment)
    async def ship(sku: str, quantity: int) -> Shipment:
        return shop.carrier.ship(sku, quantity, idempotency_key=idempotency_key())

    @app.workflow(name="checkout")
    async def checkout(ctx: durably.Context, order: Order) -> Receipt:
        total = await validate(order)
        await reserve(order)
        payment = await charge(order, total)
        await ctx.sleep("settlement", settle)  # durable: a restart does not start it over
        await create_order(order, payment)
        shipments = [await ship(sku, quantity) for sku, quantity in order.items.items()]
        return Receipt(order.order_id, payment.charge_id, total, [s.shipment_id for s in shipments])

    return app


async def place_order(app: durably.Durably, order: Order) -> int:
    """Run (or resume, or look up) the checkout of ``order``; return the exit status."""
    workflow_id = f"checkout-{order.order_id}"
    async with app:  # resumes any checkout a killed process left unfinished
        try:
            status = (await app.get_workflow(workflow_id)).status
            print(f"{workflow_id}: found {status} in the workflow database")
        except durably.WorkflowNotFoundError:
            print(f"{workflow_id}: new")
        handle: durably.WorkflowHandle[Receipt] = await app.start(
            "checkout", order, workflow_id=workflow_id
        )
        try:
            receipt = await handle.result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {receipt}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and place the order."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--order-id", default="A-1001")
    parser.add_argument("--item", action="append", metavar="SKU=QUANTITY")
    parser.add_argument("--card", default="4242424242424242")
    parser.add_argument("--settle-seconds", type=float, default=1.0)
    parser.add_argument("--payment-timeouts", type=int, default=1, help="gateway timeouts")
    parser.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "durably-examples" / "checkout"
    )
    parser.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    args = parser.parse_args(argv)
    pairs = [item.partition("=") for item in args.item or ["keyboard=1", "mouse=2"]]
    order = Order(args.order_id, args.card, {sku: int(n) for sku, _, n in pairs})
    shop = Shop(args.state, payment_timeouts=args.payment_timeouts)
    app = build_app(
        args.db or args.state / "workflows.db", shop, settle=timedelta(seconds=args.settle_seconds)
    )
    return asyncio.run(place_order(app, order))


if __name__ == "__main__":
    sys.exit(main())
