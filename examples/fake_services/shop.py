"""A shop's back office: inventory, a payment gateway, an order book and a carrier."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from fake_services.base import FakeService, Json, ServiceError

#: The test card numbers of payment gateways: this one is always declined.
DECLINED_CARD = "4000000000000002"


class OutOfStock(ServiceError):
    """Not enough units of a product to reserve."""


class CardDeclined(ServiceError):
    """The bank declined the card."""


class ShipmentRefused(ServiceError):
    """The carrier does not take this parcel."""


@dataclass(frozen=True)
class Reservation:
    reservation_id: str
    items: dict[str, int]


@dataclass(frozen=True)
class Charge:
    charge_id: str
    amount_cents: int
    idempotency_key: str


@dataclass(frozen=True)
class Shipment:
    shipment_id: str
    sku: str
    quantity: int


def _describe(items: dict[str, int]) -> str:
    return ", ".join(f"{quantity} x {sku}" for sku, quantity in items.items())


class Inventory(FakeService):
    name = "inventory"

    def initial_state(self) -> Json:
        return {
            "prices": {"keyboard": 4900, "mouse": 1900, "lithium-battery": 2500},
            "stock": {"keyboard": 10, "mouse": 25, "lithium-battery": 40},
            "reservations": {},
        }

    def prices(self) -> dict[str, int]:
        """Price of each product, in cents."""
        prices: dict[str, int] = self.state["prices"]
        return prices

    def reserve(self, items: dict[str, int], *, idempotency_key: str) -> Reservation:
        """Take ``items`` out of the available stock."""

        def apply(state: Json) -> tuple[Json, str]:
            for sku, quantity in items.items():
                if state["stock"].get(sku, 0) < quantity:
                    raise OutOfStock(f"only {state['stock'].get(sku, 0)} x {sku} left")
                state["stock"][sku] -= quantity
            reservation = f"res-{len(state['reservations']) + 1}"
            state["reservations"][reservation] = {"items": items, "status": "held"}
            return asdict(Reservation(reservation, items)), f"reserved {_describe(items)}"

        return Reservation(**self.request("reserve", idempotency_key, apply))

    def release(self, reservation_id: str) -> None:
        """Put a reservation's items back in stock (once, however often it is asked)."""

        def apply(state: Json) -> tuple[Json, str]:
            reservation = state["reservations"][reservation_id]
            for sku, quantity in reservation["items"].items():
                state["stock"][sku] += quantity
            reservation["status"] = "released"
            return {}, f"released {reservation_id}: {_describe(reservation['items'])} back in stock"

        self.request("release", f"release:{reservation_id}", apply)


class Payments(FakeService):
    name = "payments"

    def initial_state(self) -> Json:
        return {"charges": {}}

    def charge(self, card: str, amount_cents: int, *, idempotency_key: str) -> Charge:
        """Charge a card; a repeated ``idempotency_key`` returns the first charge."""

        def apply(state: Json) -> tuple[Json, str]:
            if card == DECLINED_CARD:
                raise CardDeclined(f"card ending {card[-4:]} declined by the bank")
            charge = Charge(f"ch-{len(state['charges']) + 1}", amount_cents, idempotency_key)
            state["charges"][charge.charge_id] = {"amount_cents": amount_cents, "status": "paid"}
            return asdict(charge), f"charged {amount_cents} cents to card ending {card[-4:]}"

        return Charge(**self.request("charge", idempotency_key, apply))

    def refund(self, charge: Charge) -> None:
        """Refund a charge in full, keyed by the charge's own idempotency key."""

        def apply(state: Json) -> tuple[Json, str]:
            state["charges"][charge.charge_id]["status"] = "refunded"
            return {}, f"refunded {charge.amount_cents} cents ({charge.charge_id})"

        self.request("refund", f"refund:{charge.idempotency_key}", apply)


class Orders(FakeService):
    name = "orders"

    def initial_state(self) -> Json:
        return {"orders": {}}

    def create(self, order_id: str, charge_id: str, *, idempotency_key: str) -> None:
        """Record a paid order."""

        def apply(state: Json) -> tuple[Json, str]:
            state["orders"][order_id] = {"charge_id": charge_id, "status": "open"}
            return {}, f"created order {order_id}"

        self.request("create", idempotency_key, apply)

    def cancel(self, order_id: str) -> None:
        """Mark an order cancelled."""

        def apply(state: Json) -> tuple[Json, str]:
            state["orders"][order_id]["status"] = "cancelled"
            return {}, f"cancelled order {order_id}"

        self.request("cancel", f"cancel:{order_id}", apply)


class Carrier(FakeService):
    name = "carrier"
    #: Products this carrier refuses (air freight forbids loose lithium batteries).
    refused = frozenset({"lithium-battery"})

    def initial_state(self) -> Json:
        return {"shipments": {}}

    def ship(self, sku: str, quantity: int, *, idempotency_key: str) -> Shipment:
        """Book a parcel for pickup."""

        def apply(state: Json) -> tuple[Json, str]:
            if sku in self.refused:
                raise ShipmentRefused(f"{sku} cannot travel by air")
            shipment = Shipment(f"shp-{len(state['shipments']) + 1}", sku, quantity)
            state["shipments"][shipment.shipment_id] = {"sku": sku, "status": "booked"}
            return asdict(shipment), f"booked {shipment.shipment_id}: {quantity} x {sku}"

        return Shipment(**self.request("ship", idempotency_key, apply))

    def cancel(self, shipment_id: str) -> None:
        """Cancel a booked parcel."""

        def apply(state: Json) -> tuple[Json, str]:
            state["shipments"][shipment_id]["status"] = "cancelled"
            return {}, f"cancelled {shipment_id}"

        self.request("cancel", f"cancel:{shipment_id}", apply)


class Shop:
    """All of the shop's services, on one state directory."""

    def __init__(self, state_dir: Path, *, payment_timeouts: int = 0) -> None:
        self.inventory = Inventory(state_dir)
        self.payments = Payments(state_dir, timeouts={"charge": payment_timeouts})
        self.orders = Orders(state_dir)
        self.carrier = Carrier(state_dir)
