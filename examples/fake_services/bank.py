"""A bank: a document vault, identity and credit checks, and a double-entry ledger.

Every ledger posting moves money between accounts and sums to zero, so the sum of all
balances is zero at every moment. A transfer debits the sender into ``transit`` and
credits the recipient out of it; customer money enters through ``deposits``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from fake_services.base import FakeService, Json, ServiceError

#: First deposits above this need a proof of the source of funds (anti-money-laundering).
DEPOSIT_LIMIT_CENTS = 1_000_000


class LedgerRefused(ServiceError):
    """The ledger refused a posting (frozen account, insufficient funds, AML limit)."""


@dataclass(frozen=True)
class Document:
    document_id: str
    sha256: str


@dataclass(frozen=True)
class Verification:
    verified: bool
    reason: str


class DocumentVault(FakeService):
    name = "vault"

    def initial_state(self) -> Json:
        return {"documents": {}}

    def store(self, owner: str, content: bytes, *, idempotency_key: str) -> Document:
        """Keep an identity document."""

        def apply(state: Json) -> tuple[Json, str]:
            document = Document(
                f"doc-{len(state['documents']) + 1}", hashlib.sha256(content).hexdigest()
            )
            state["documents"][document.document_id] = {"owner": owner, "status": "kept"}
            return asdict(document), f"stored {owner}'s passport scan as {document.document_id}"

        return Document(**self.request("store", idempotency_key, apply))

    def delete(self, document_id: str) -> None:
        """Destroy a document (data protection: never keep a rejected applicant's)."""

        def apply(state: Json) -> tuple[Json, str]:
            state["documents"][document_id]["status"] = "deleted"
            return {}, f"deleted {document_id}"

        self.request("delete", f"delete:{document_id}", apply)


class Checks(FakeService):
    """An identity-verification and credit-scoring provider (billed per request)."""

    name = "checks"
    watchlist = frozenset({"Mallory Doe"})
    scores: ClassVar[dict[str, int]] = {"bob": 540}

    def initial_state(self) -> Json:
        return {"billed_checks": 0}

    def verify_identity(
        self, full_name: str, document: Document, *, idempotency_key: str
    ) -> Verification:
        """Compare the document with the applicant and the watchlists."""

        def apply(state: Json) -> tuple[Json, str]:
            state["billed_checks"] += 1
            listed = full_name in self.watchlist
            result = Verification(not listed, "on a sanctions watchlist" if listed else "match")
            return asdict(result), f"identity of {full_name}: {result.reason}"

        return Verification(**self.request("verify_identity", idempotency_key, apply))

    def credit_score(self, user_id: str, *, idempotency_key: str) -> int:
        """The applicant's credit score (300 to 850)."""

        def apply(state: Json) -> tuple[Json, str]:
            state["billed_checks"] += 1
            score = self.scores.get(user_id, 720)
            return {"score": score}, f"credit score of {user_id}: {score}"

        score: int = self.request("credit_score", idempotency_key, apply)["score"]
        return score


class Ledger(FakeService):
    name = "ledger"

    def initial_state(self) -> Json:
        accounts = {"alice": 10_000, "bob": 5_000, "carol": 0, "transit": 0}
        state: Json = {
            "accounts": {
                name: {"balance": cents, "status": "open"} for name, cents in accounts.items()
            },
            "postings": [],
        }
        state["accounts"]["carol"]["status"] = "frozen"
        state["accounts"]["deposits"] = {"balance": -sum(accounts.values()), "status": "internal"}
        return state

    def open_account(self, owner: str, *, idempotency_key: str) -> str:
        """Open an empty account for ``owner``; returns its id."""

        def apply(state: Json) -> tuple[Json, str]:
            account = f"acc-{owner}"
            state["accounts"][account] = {"balance": 0, "status": "open"}
            return {"account": account}, f"opened account {account}"

        account: str = self.request("open_account", idempotency_key, apply)["account"]
        return account

    def close_account(self, account: str) -> None:
        """Close an account, paying its balance back out through ``deposits``."""

        def apply(state: Json) -> tuple[Json, str]:
            balance = state["accounts"][account]["balance"]
            if balance:
                self._post(state, f"close:{account}", account, "deposits", balance)
            state["accounts"][account]["status"] = "closed"
            return {}, f"closed account {account} (paid out {balance} cents)"

        self.request("close_account", f"close:{account}", apply)

    def move(self, source: str, target: str, cents: int, *, idempotency_key: str) -> None:
        """Post ``cents`` from ``source`` to ``target`` (one balanced posting)."""

        def apply(state: Json) -> tuple[Json, str]:
            if source == "deposits" and cents > DEPOSIT_LIMIT_CENTS:
                raise LedgerRefused(
                    f"a first deposit over {DEPOSIT_LIMIT_CENTS} cents needs a proof of funds"
                )
            self._post(state, idempotency_key, source, target, cents)
            return {}, f"moved {cents} cents {source} -> {target}"

        self.request("move", idempotency_key, apply)

    @staticmethod
    def _post(state: Json, key: str, source: str, target: str, cents: int) -> None:
        for account in (source, target):
            if state["accounts"][account]["status"] not in ("open", "internal"):
                raise LedgerRefused(f"account {account} is {state['accounts'][account]['status']}")
        if (
            state["accounts"][source]["status"] == "open"
            and state["accounts"][source]["balance"] < cents
        ):
            raise LedgerRefused(f"insufficient funds in {source}")
        state["accounts"][source]["balance"] -= cents
        state["accounts"][target]["balance"] += cents
        state["postings"].append({"key": key, "from": source, "to": target, "cents": cents})


class Bank:
    """The bank's services, on one state directory."""

    def __init__(self, state_dir: Path, *, check_timeouts: int = 0) -> None:
        self.vault = DocumentVault(state_dir)
        self.checks = Checks(state_dir, timeouts={"verify_identity": check_timeouts})
        self.ledger = Ledger(state_dir)
