"""Payloads encrypted at rest, a key rotated, and a secret kept out of stored errors.

Run ``python encrypted_shop.py DIRECTORY`` (docs/guarantees.md shows its output).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import durably
from durably.encryption import generate_key, reencrypt_sqlite

CARD = "4242-4242-4242-4242"


def make_app(path: Path, keys: list[str]) -> durably.Durably:
    app = durably.Durably(
        f"sqlite:///{path}",
        serializer=durably.EncryptedSerializer(keys=keys),  # newest key first
        redact=[r"sk_live_\w+"],  # never store an API key in an error
    )

    async def call_bank(card: str) -> str:
        if card.startswith("0000"):
            raise PermissionError("bank refused key sk_live_51HxQ2p for this merchant")
        return f"paid with card ending {card[-4:]}"

    @app.workflow(name="charge")
    async def charge(ctx: durably.Context, card: str) -> str:
        return await ctx.step("bank", call_bank, card)

    return app


def file_contains(path: Path, text: str) -> bool:
    files = [path, Path(f"{path}-wal")]
    return any(text.encode() in file.read_bytes() for file in files if file.exists())


async def main(directory: Path) -> None:
    path = directory / "shop.db"
    old_key, new_key = generate_key(), generate_key()

    async with make_app(path, [old_key]) as app:
        print(await app.run("charge", CARD, workflow_id="order-1"))
        try:
            await app.run("charge", "0000-0000", workflow_id="order-2")
        except durably.WorkflowFailedError as failed:
            print("stored error:", failed.error_message)
    print("card number in the database file:", file_contains(path, CARD))
    print("API key in the database file:", file_contains(path, "sk_live_51HxQ2p"))

    rotated = durably.EncryptedSerializer(keys=[new_key, old_key])
    print("payloads re-encrypted with the new key:", reencrypt_sqlite(path, rotated))

    async with make_app(path, [new_key]) as app:  # the old key is gone
        print("order-1 with the new key only:", await app.handle("order-1").result())
    async with make_app(path, [generate_key()]) as app:
        try:
            await app.handle("order-1").result()
        except durably.PayloadError as error:
            print("with a wrong key:", error)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
