"""examples/checkout.py: completes, survives SIGKILL anywhere, compensates failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import (
    Finished,
    Scenario,
    duplicates,
    journal,
    kill_when_paused,
    operation_of,
    run_example,
    run_scenario,
    service_states,
)

pytestmark = pytest.mark.crash

SCRIPT = "checkout.py"
FAST = ("--settle-seconds", "0.05")
BATTERY_ORDER = ("--order-id", "B-7", "--item", "keyboard=1", "--item", "lithium-battery=2")
SERVICES = ("inventory", "payments", "orders", "carrier")


def checkout(state: Path, *args: str) -> Finished:
    """Run the example on ``state`` with short waits."""
    return run_example(SCRIPT, *FAST, *args, "--state", str(state))


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """A checkout that nobody interrupted."""
    return run_scenario(tmp_path_factory, SCRIPT, *FAST)


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """An uninterrupted checkout whose second parcel the carrier refuses."""
    return run_scenario(tmp_path_factory, SCRIPT, *FAST, *BATTERY_ORDER, exit_code=1)


def test_checkout_applies_each_side_effect_once(uncrashed: Scenario) -> None:
    """Stock is taken, the card charged once, the order created, two parcels booked."""
    assert "COMPLETED: Receipt(order_id='A-1001', charge_id='ch-1', total_cents=8700" in (
        uncrashed.finished.output
    )
    services = uncrashed.services
    assert services["inventory"]["stock"] == {"keyboard": 9, "mouse": 23, "lithium-battery": 40}
    assert services["payments"]["charges"] == {"ch-1": {"amount_cents": 8700, "status": "paid"}}
    assert services["orders"]["orders"] == {"A-1001": {"charge_id": "ch-1", "status": "open"}}
    assert [s["status"] for s in services["carrier"]["shipments"].values()] == ["booked"] * 2


def test_gateway_timeout_is_retried_with_the_same_idempotency_key(uncrashed: Scenario) -> None:
    """The first charge attempt times out; the retry uses the same key and succeeds."""
    charges = [e for e in journal(uncrashed.state, "payments") if e["operation"] == "charge"]
    assert [e["outcome"] for e in charges] == ["unavailable", "applied"]
    assert charges[0]["key"] == charges[1]["key"] == "checkout-A-1001:2"


def test_running_again_returns_the_recorded_receipt_without_side_effects(
    uncrashed: Scenario, tmp_path: Path
) -> None:
    """A second run of the same order finds it COMPLETED and calls no service."""
    state = uncrashed.copy(tmp_path)
    before = {service: journal(state, service) for service in SERVICES}
    again = checkout(state)
    assert again.returncode == 0, again.output
    assert "found COMPLETED" in again.output
    assert again.output.splitlines()[-1] == uncrashed.finished.output.splitlines()[-1]
    assert {service: journal(state, service) for service in SERVICES} == before


@pytest.mark.parametrize("pause", ["inventory.reserve", "payments.charge", "carrier.ship#2"])
def test_checkout_killed_mid_step_resumes_to_the_same_side_effects(
    pause: str, uncrashed: Scenario, tmp_path: Path
) -> None:
    """SIGKILL after a provider applied a request: the new process repeats that request
    (answered from its idempotency key) and nothing else; the end state is unchanged."""
    kill_when_paused(SCRIPT, *FAST, "--state", str(tmp_path), pause=pause)
    resumed = checkout(tmp_path)
    assert resumed.returncode == 0, resumed.output
    assert "found RUNNING" in resumed.output
    assert service_states(tmp_path) == uncrashed.services
    assert duplicates(tmp_path) == [operation_of(pause)]


def test_declined_card_releases_the_reserved_stock(tmp_path: Path) -> None:
    """Payment declined: not retried, the reservation is released, nothing is charged."""
    finished = checkout(tmp_path, "--card", "4000000000000002")
    assert finished.returncode == 1
    assert "COMPENSATED: CardDeclined: card ending 0002 declined" in finished.output
    services = service_states(tmp_path)
    assert services["inventory"]["stock"] == {"keyboard": 10, "mouse": 25, "lithium-battery": 40}
    assert services["payments"]["charges"] == {}
    assert services["orders"]["orders"] == {}
    refusals = [e for e in journal(tmp_path, "payments") if e["outcome"].startswith("refused")]
    assert len(refusals) == 1


def test_refused_shipment_undoes_every_earlier_step_in_reverse(refused: Scenario) -> None:
    """The carrier refuses the second parcel: the first parcel is cancelled, then the
    order, then the charge refunded, then the stock released (reverse order)."""
    output = refused.finished.output
    assert "COMPENSATED: ShipmentRefused: lithium-battery cannot travel by air" in output
    undo = [
        line.split()[1]
        for line in output.splitlines()
        if any(word in line for word in ("cancelled", "refunded", "released"))
    ]
    assert undo == ["carrier", "orders", "payments", "inventory"]
    services = refused.services
    assert services["inventory"]["stock"]["keyboard"] == 10
    assert services["payments"]["charges"]["ch-1"]["status"] == "refunded"
    assert services["orders"]["orders"]["B-7"]["status"] == "cancelled"
    assert services["carrier"]["shipments"]["shp-1"]["status"] == "cancelled"


def test_killed_during_compensation_finishes_it_without_repeating_it(
    refused: Scenario, tmp_path: Path
) -> None:
    """SIGKILL right after the refund: the new process completes the undo exactly once."""
    kill_when_paused(
        SCRIPT, *FAST, *BATTERY_ORDER, "--state", str(tmp_path), pause="payments.refund"
    )
    resumed = checkout(tmp_path, *BATTERY_ORDER)
    assert resumed.returncode == 1, resumed.output
    assert "COMPENSATED: ShipmentRefused" in resumed.output
    assert service_states(tmp_path) == refused.services
    assert duplicates(tmp_path) == ["payments.refund"]
