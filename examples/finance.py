"""Finance: KYC onboarding (identity document, verification, credit check, account
opening, first deposit) and a P2P transfer (debit, then credit; the debit is reversed
if the credit fails). Every step is undone on failure; the ledger always balances.

    python examples/finance.py onboard USER --name "FULL NAME" [--deposit CENTS]
    python examples/finance.py transfer SENDER RECIPIENT CENTS [--id T-1]
    python examples/finance.py balances

All take [--state DIR] [--db FILE]. The ledger starts with accounts alice (100.00),
bob (50.00) and carol (frozen).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_services.bank import Bank, Document, Verification

import durably


@dataclass(frozen=True)
class Applicant:
    user_id: str
    full_name: str
    first_deposit_cents: int


@dataclass(frozen=True)
class Transfer:
    transfer_id: str
    sender: str
    recipient: str
    cents: int


class ApplicationRejected(RuntimeError):
    """The bank turned the applicant down."""


def build_app(database: Path, bank: Bank) -> durably.Durably:
    """The onboarding and transfer workflows, on ``database``."""
    app = durably.Durably(f"sqlite:///{database}")
    provider_retry = durably.RetryPolicy.exponential(4, initial_delay=0.2, jitter=0.1)

    def idempotency_key() -> str:
        return durably.current_step().idempotency_key

    # -- KYC onboarding -----------------------------------------------------------

    async def delete_document(document: Document) -> None:
        bank.vault.delete(document.document_id)

    @app.step(compensate=delete_document)
    async def upload_document(applicant: Applicant) -> Document:
        scan = f"PASSPORT<<{applicant.full_name}<<{applicant.user_id}".encode()
        return bank.vault.store(applicant.user_id, scan, idempotency_key=idempotency_key())

    @app.step(retry=provider_retry)
    async def verify_identity(applicant: Applicant, document: Document) -> Verification:
        key = idempotency_key()
        return bank.checks.verify_identity(applicant.full_name, document, idempotency_key=key)

    @app.step(retry=provider_retry)
    async def credit_check(applicant: Applicant) -> int:
        return bank.checks.credit_score(applicant.user_id, idempotency_key=idempotency_key())

    async def close_account(account: str) -> None:
        bank.ledger.close_account(account)

    @app.step(compensate=close_account)
    async def open_account(applicant: Applicant) -> str:
        return bank.ledger.open_account(applicant.user_id, idempotency_key=idempotency_key())

    @app.step()
    async def first_deposit(account: str, cents: int) -> None:
        bank.ledger.move("deposits", account, cents, idempotency_key=idempotency_key())

    @app.workflow(name="kyc_onboarding")
    async def onboard(ctx: durably.Context, applicant: Applicant) -> str:
        document = await upload_document(applicant)
        verification = await verify_identity(applicant, document)
        if not verification.verified:
            raise ApplicationRejected(f"identity not verified: {verification.reason}")
        score = await credit_check(applicant)
        if score < 600:
            raise ApplicationRejected(f"credit score {score} is below 600")
        account = await open_account(applicant)
        await first_deposit(account, applicant.first_deposit_cents)
        return account

    # -- P2P transfer -------------------------------------------------------------

    @app.step()
    async def debit(transfer: Transfer) -> str:
        key = idempotency_key()
        bank.ledger.move(transfer.sender, "transit", transfer.cents, idempotency_key=key)
        return key

    async def reverse_debit(transfer: Transfer, debit_key: str) -> None:
        key = f"reverse:{debit_key}"  # one reversal per debit, however often it is retried
        bank.ledger.move("transit", transfer.sender, transfer.cents, idempotency_key=key)

    @app.step()
    async def credit(transfer: Transfer) -> None:
        key = idempotency_key()
        bank.ledger.move("transit", transfer.recipient, transfer.cents, idempotency_key=key)

    @app.workflow(name="p2p_transfer")
    async def transfer(ctx: durably.Context, transfer: Transfer) -> str:
        debit_key = await debit(transfer)
        ctx.on_failure(reverse_debit, transfer, debit_key)  # a compensation with arguments
        await credit(transfer)
        return f"{transfer.cents} cents from {transfer.sender} to {transfer.recipient}"

    return app


async def run(app: durably.Durably, workflow: str, workflow_id: str, argument: Any) -> int:
    """Run (or resume) one workflow; return the exit status."""
    async with app:
        try:
            status = (await app.get_workflow(workflow_id)).status
            print(f"{workflow_id}: found {status} in the workflow database")
        except durably.WorkflowNotFoundError:
            print(f"{workflow_id}: new")
        handle: durably.WorkflowHandle[str] = await app.start(
            workflow, argument, workflow_id=workflow_id
        )
        try:
            result = await handle.result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {result}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line; onboard a customer or transfer money."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "durably-examples" / "finance"
    )
    common.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    common.add_argument("--check-timeouts", type=int, default=1, help="identity check timeouts")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    onboard = commands.add_parser("onboard", parents=[common], help="open a customer's account")
    onboard.add_argument("user")
    onboard.add_argument("--name", required=True)
    onboard.add_argument("--deposit", type=int, default=25_000, help="first deposit, in cents")
    transfer = commands.add_parser("transfer", parents=[common], help="send money to someone")
    transfer.add_argument("sender")
    transfer.add_argument("recipient")
    transfer.add_argument("cents", type=int)
    transfer.add_argument("--id", default="T-1", help="the transfer's unique id")
    commands.add_parser("balances", parents=[common], help="show the ledger")
    args = parser.parse_args(argv)
    bank = Bank(args.state, check_timeouts=args.check_timeouts)
    if args.command == "balances":
        accounts = bank.ledger.state["accounts"]
        for name, account in accounts.items():
            print(f"{name:<10} {account['balance']:>8}  {account['status']}")
        print(f"{'sum':<10} {sum(a['balance'] for a in accounts.values()):>8}")
        return 0
    app = build_app(args.db or args.state / "workflows.db", bank)
    if args.command == "onboard":
        applicant = Applicant(args.user, args.name, args.deposit)
        return asyncio.run(run(app, "kyc_onboarding", f"kyc-{args.user}", applicant))
    request = Transfer(args.id, args.sender, args.recipient, args.cents)
    return asyncio.run(run(app, "p2p_transfer", f"transfer-{args.id}", request))


if __name__ == "__main__":
    sys.exit(main())
