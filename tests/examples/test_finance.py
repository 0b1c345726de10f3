"""examples/finance.py: KYC onboarding and P2P transfers survive SIGKILL, compensate
failures, and leave a ledger that balances."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import (
    Finished,
    Scenario,
    duplicates,
    kill_when_paused,
    operation_of,
    run_example,
    run_scenario,
    service_states,
)

pytestmark = pytest.mark.crash

SCRIPT = "finance.py"
ONBOARD_ADA = ("onboard", "ada", "--name", "Ada Lovelace", "--deposit", "25000")
TO_BOB = ("transfer", "alice", "bob", "2500", "--id", "T-1")
TO_FROZEN = ("transfer", "alice", "carol", "1000", "--id", "T-2")


def finance(state: Path, *args: str) -> Finished:
    """Run one command of the example on ``state``."""
    return run_example(SCRIPT, *args, "--state", str(state))


def ledger_balances(state: Path) -> dict[str, int]:
    """Every ledger account's balance (``transit`` included), after checking that they
    sum to zero: true at every moment, even with a transfer half done."""
    accounts = service_states(state)["ledger"]["accounts"]
    found = {name: account["balance"] for name, account in accounts.items()}
    assert sum(found.values()) == 0, f"the ledger does not balance: {found}"
    return found


def balances(state: Path) -> dict[str, int]:
    """Every ledger account's balance once no transfer is under way: the ledger
    balances and no money is left in transit."""
    found = ledger_balances(state)
    assert found["transit"] == 0, f"money left in transit: {found}"
    return found


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """Each scenario run without a crash, by name."""
    return {
        "onboard": run_scenario(tmp_path_factory, SCRIPT, *ONBOARD_ADA),
        "transfer": run_scenario(tmp_path_factory, SCRIPT, *TO_BOB),
        "frozen": run_scenario(tmp_path_factory, SCRIPT, *TO_FROZEN, exit_code=1),
    }


def test_onboarding_opens_a_funded_account(uncrashed: dict[str, Scenario]) -> None:
    """Document kept, two checks billed, account opened with the first deposit."""
    onboarded = uncrashed["onboard"]
    assert "kyc-ada COMPLETED: acc-ada" in onboarded.finished.output
    assert balances(onboarded.state)["acc-ada"] == 25_000
    assert onboarded.services["vault"]["documents"] == {"doc-1": {"owner": "ada", "status": "kept"}}
    assert onboarded.services["checks"]["billed_checks"] == 2


def test_transfer_moves_the_money_once(uncrashed: dict[str, Scenario]) -> None:
    """alice pays bob 25.00: one debit, one credit, nothing left in transit."""
    found = balances(uncrashed["transfer"].state)
    assert (found["alice"], found["bob"]) == (7_500, 7_500)


@pytest.mark.parametrize(
    ("scenario", "command", "pause"),
    [
        ("onboard", ONBOARD_ADA, "checks.verify_identity"),
        ("onboard", ONBOARD_ADA, "ledger.open_account"),
        ("transfer", TO_BOB, "ledger.move#1"),
        ("frozen", TO_FROZEN, "ledger.move#2"),  # inside the compensation
    ],
)
def test_killed_mid_way_resumes_to_the_same_bank_state(
    scenario: str,
    command: tuple[str, ...],
    pause: str,
    uncrashed: dict[str, Scenario],
    tmp_path: Path,
) -> None:
    """SIGKILL after a request was applied: the ledger balances at the moment of the
    crash (money in transit counted); the new process ends with the same documents,
    checks, accounts and postings as a run without a crash."""
    kill_when_paused(SCRIPT, *command, "--state", str(tmp_path), pause=pause)
    ledger_balances(tmp_path)
    resumed = finance(tmp_path, *command)
    assert resumed.returncode == uncrashed[scenario].finished.returncode, resumed.output
    assert service_states(tmp_path) == uncrashed[scenario].services
    assert duplicates(tmp_path) == [operation_of(pause)]
    balances(tmp_path)


def test_frozen_recipient_reverses_the_debit(uncrashed: dict[str, Scenario]) -> None:
    """The credit is refused: the debit is reversed and alice has all her money."""
    frozen = uncrashed["frozen"]
    assert "transfer-T-2 COMPENSATED: LedgerRefused: account carol is frozen" in (
        frozen.finished.output
    )
    assert balances(frozen.state)["alice"] == 10_000
    keys = [posting["key"] for posting in frozen.services["ledger"]["postings"]]
    assert keys == ["transfer-T-2:0", "reverse:transfer-T-2:0"]


def test_rejected_identity_deletes_the_document(tmp_path: Path) -> None:
    """Watchlisted applicant: rejected, and the uploaded passport scan is deleted."""
    finished = finance(tmp_path, "onboard", "mal", "--name", "Mallory Doe")
    assert finished.returncode == 1
    assert "COMPENSATED: ApplicationRejected: identity not verified" in finished.output
    assert service_states(tmp_path)["vault"]["documents"]["doc-1"]["status"] == "deleted"
    assert "acc-mal" not in balances(tmp_path)


def test_refused_first_deposit_closes_the_account_and_deletes_the_document(tmp_path: Path) -> None:
    """The deposit is over the AML limit: account closed, then the document deleted."""
    finished = finance(tmp_path, "onboard", "max", "--name", "Max Big", "--deposit", "5000000")
    assert finished.returncode == 1
    undo = [
        line.split()[1]
        for line in finished.output.splitlines()
        if "closed" in line or "deleted" in line
    ]
    assert undo == ["ledger", "vault"]
    states = service_states(tmp_path)
    assert states["ledger"]["accounts"]["acc-max"] == {"balance": 0, "status": "closed"}
    assert states["vault"]["documents"]["doc-1"]["status"] == "deleted"
    balances(tmp_path)


def test_low_credit_score_rejects_and_deletes_the_document(tmp_path: Path) -> None:
    """bob scores 540: turned down after the credit check, his passport scan deleted,
    no account opened and no money moved."""
    finished = finance(tmp_path, "onboard", "bob", "--name", "Bob Builder")
    assert finished.returncode == 1
    assert "kyc-bob COMPENSATED: ApplicationRejected: credit score 540 is below 600" in (
        finished.output
    )
    states = service_states(tmp_path)
    assert states["vault"]["documents"] == {"doc-1": {"owner": "bob", "status": "deleted"}}
    assert states["checks"]["billed_checks"] == 2
    assert "acc-bob" not in balances(tmp_path)
    assert states["ledger"]["postings"] == []
