"""Payload encryption at rest (durably.encryption), through real SQLite files and a
real PostgreSQL store."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tests.conftest import postgres_url

from durably import (
    ConfigurationError,
    Context,
    Durably,
    EncryptedSerializer,
    JsonSerializer,
    PayloadError,
    Serializer,
    SqliteStore,
    WorkflowStatus,
)
from durably.encryption import (
    ENCRYPTED_PREFIX,
    generate_key,
    reencrypt_postgres,
    reencrypt_sqlite,
)
from durably.store.postgres import PostgresStore
from durably.testing import FakeClock


def fixed_key(byte: int) -> str:
    """A valid Fernet key that is the same in every test process (xdist collects the
    parameters of each process, so they must not be random)."""
    return base64.urlsafe_b64encode(bytes([byte]) * 32).decode("ascii")


KEY_A, KEY_B, KEY_C = fixed_key(1), fixed_key(2), fixed_key(3)
CARD = "4111-card-canary-7f3a"
NOTE = "note-canary-91c2"


@dataclasses.dataclass
class Receipt:
    card: str
    amount: int


@dataclasses.dataclass(frozen=True)
class PgSchema:
    """A PostgreSQL store's schema, where a test's apps keep their workflows."""

    name: str


def payment_app(where: Path | PgSchema, clock: FakeClock, serializer: Serializer | None) -> Durably:
    """``pay`` charges (a dataclass result), sleeps a minute durably, waits for a note;
    on a SQLite file or a PostgreSQL schema."""
    store = (
        PostgresStore(postgres_url(), schema=where.name)
        if isinstance(where, PgSchema)
        else SqliteStore(where)
    )
    app = Durably(store, clock=clock, serializer=serializer, inline_wait=0)

    async def charge(card: str) -> Receipt:
        return Receipt(card=card, amount=4200)

    @app.workflow(name="pay")
    async def pay(ctx: Context, card: str) -> str:
        receipt = await ctx.step("charge", charge, card)
        await ctx.sleep("settle", timedelta(minutes=1))
        note = await ctx.wait_signal("note", payload_type=str)
        return f"{receipt.card}:{receipt.amount}:{note}"

    return app


async def wait_until(app: Durably, workflow_id: str, status: WorkflowStatus) -> None:
    """Yield to the loop until the workflow has ``status`` (bounded, no wall-clock sleep)."""
    for _ in range(10_000):
        if await app.handle(workflow_id).status() is status:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{workflow_id} never became {status}")


async def start_and_suspend(
    where: Path | PgSchema, clock: FakeClock, serializer: Serializer | None
) -> None:
    """Start ``pay`` and close the app once it sleeps (its charge is recorded)."""
    app = payment_app(where, clock, serializer)
    async with app:
        await app.start("pay", CARD, workflow_id="order-1")
        await wait_until(app, "order-1", WorkflowStatus.SUSPENDED)


async def finish(where: Path | PgSchema, clock: FakeClock, serializer: Serializer | None) -> object:
    """A new app wakes ``pay``, sends its note and returns its result."""
    app = payment_app(where, clock, serializer)
    async with app:
        clock.advance(timedelta(minutes=1))
        await app.send_signal("order-1", "note", NOTE)
        return await app.handle("order-1").result()


def stored_bytes(path: Path) -> bytes:
    """The database file and its WAL, as bytes on disk."""
    return b"".join(file.read_bytes() for file in (path, Path(f"{path}-wal")) if file.exists())


def stored_rows(path: Path) -> list[tuple[str, str, str | None]]:
    """(table, serializer, payload) of every stored payload."""
    connection = sqlite3.connect(path)
    try:
        return [
            *(
                ("workflows", s, i)
                for s, i in connection.execute("SELECT serializer, input FROM workflows")
            ),
            *(
                ("workflows", s, r)
                for s, r in connection.execute("SELECT serializer, result FROM workflows")
            ),
            *(
                ("operations", s, r)
                for s, r in connection.execute(
                    "SELECT serializer, result FROM operations WHERE result IS NOT NULL"
                )
            ),
            *(
                ("signals", s, p)
                for s, p in connection.execute("SELECT serializer, payload FROM signals")
            ),
        ]
    finally:
        connection.close()


EXPECTED = f"{CARD}:4200:{NOTE}"


async def test_payloads_round_trip_and_are_not_stored_in_clear(tmp_path: Path) -> None:
    """Input, a dataclass step result, a signal and the result come back with their
    types across apps; the file and its WAL never hold the plaintext."""
    path, clock = tmp_path / "durably.db", FakeClock()
    serializer = EncryptedSerializer(keys=[KEY_A])
    await start_and_suspend(path, clock, serializer)
    assert await finish(path, clock, serializer) == EXPECTED
    assert CARD.encode() not in stored_bytes(path)
    assert NOTE.encode() not in stored_bytes(path)
    rows = [row for row in stored_rows(path) if row[2] is not None]
    assert len(rows) >= 5  # input, result, charge, the sleep's record, the signal
    for table, label, payload in rows:
        assert label == "encrypted+json", (table, label)
        assert payload is not None and payload.startswith(ENCRYPTED_PREFIX), (table, payload)


async def test_rotation_reads_old_keys_and_writes_with_the_new_one(tmp_path: Path) -> None:
    """Written with key A; an app with keys [B, A] resumes and finishes the workflow;
    what it wrote decrypts with B alone, what A wrote still needs A."""
    path, clock = tmp_path / "durably.db", FakeClock()
    await start_and_suspend(path, clock, EncryptedSerializer(keys=[KEY_A]))
    assert await finish(path, clock, EncryptedSerializer(keys=[KEY_B, KEY_A])) == EXPECTED
    only_b, only_a = EncryptedSerializer(keys=[KEY_B]), EncryptedSerializer(keys=[KEY_A])
    (signal_payload,) = [p for table, _, p in stored_rows(path) if table == "signals"]
    assert signal_payload is not None
    assert only_b.loads(signal_payload, str) == NOTE
    with pytest.raises(PayloadError):
        only_a.loads(signal_payload, str)


async def test_reencrypting_a_database_lets_the_old_key_go(tmp_path: Path) -> None:
    """reencrypt_sqlite with [B, A] rewrites every payload (also the plain ones written
    before encryption): an app with key B alone then reads everything, and neither
    the plaintext nor key A's tokens remain in the file."""
    path, clock = tmp_path / "durably.db", FakeClock()
    await start_and_suspend(path, clock, None)  # plain JSON, before encryption
    with_a = EncryptedSerializer(keys=[KEY_A])
    assert await finish(path, clock, with_a) == EXPECTED  # partly plain, partly key A
    payloads_before = [payload for _, _, payload in stored_rows(path)]
    assert any(p is not None and p.startswith(ENCRYPTED_PREFIX) for p in payloads_before)
    assert any(p is not None and not p.startswith(ENCRYPTED_PREFIX) for p in payloads_before)

    rewritten = reencrypt_sqlite(path, EncryptedSerializer(keys=[KEY_B, KEY_A]))

    assert rewritten == len([p for p in payloads_before if p is not None])
    only_b = EncryptedSerializer(keys=[KEY_B])
    app = payment_app(path, clock, only_b)
    async with app:
        assert await app.handle("order-1").result() == EXPECTED
    assert CARD.encode() not in stored_bytes(path)
    for _, label, payload in stored_rows(path):
        assert label == "encrypted+json"
        assert payload is None or only_b.decrypt(payload)


def postgres_payloads(schema: str) -> list[tuple[str, str | None]]:
    """(serializer, payload) of every payload stored in a PostgreSQL store."""
    with psycopg.connect(postgres_url(), autocommit=True) as connection:
        connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return [
            (str(label), payload)
            for query in (
                "SELECT serializer, input FROM workflows",
                "SELECT serializer, result FROM workflows",
                "SELECT serializer, result FROM operations WHERE result IS NOT NULL",
                "SELECT serializer, payload FROM signals",
            )
            for label, payload in connection.execute(query)
        ]


async def test_reencrypting_a_postgres_store_lets_the_old_key_go(postgres_schema: str) -> None:
    """reencrypt_postgres does on a PostgreSQL store what reencrypt_sqlite does on a
    file: key B alone then reads everything; no plaintext or key-A token is left. A
    payload no key decrypts fails it with nothing changed; a schema without a store is
    refused."""
    where, clock = PgSchema(postgres_schema), FakeClock()
    await start_and_suspend(where, clock, None)  # plain JSON, before encryption
    assert await finish(where, clock, EncryptedSerializer(keys=[KEY_A])) == EXPECTED
    before = postgres_payloads(postgres_schema)
    assert {label for label, _ in before} == {"json", "encrypted+json"}

    with pytest.raises(PayloadError):
        reencrypt_postgres(postgres_url(), EncryptedSerializer(keys=[KEY_C]), schema=where.name)
    assert postgres_payloads(postgres_schema) == before
    with pytest.raises(ValueError, match="holds no durably store"):
        reencrypt_postgres(postgres_url(), EncryptedSerializer(keys=[KEY_B]), schema="absent")

    rotated = EncryptedSerializer(keys=[KEY_B, KEY_A])
    rewritten = reencrypt_postgres(postgres_url(), rotated, schema=where.name)

    assert rewritten == len([payload for _, payload in before if payload is not None])
    only_b = EncryptedSerializer(keys=[KEY_B])
    app = payment_app(where, clock, only_b)
    async with app:
        assert await app.handle("order-1").result() == EXPECTED
    for label, payload in postgres_payloads(postgres_schema):
        assert label == "encrypted+json"
        assert payload is None or (CARD not in payload and only_b.decrypt(payload))


async def test_rows_written_before_encryption_still_read(tmp_path: Path) -> None:
    """A workflow started by a plain-JSON app is finished by an encrypting one (its
    recorded input and step result are read as JSON), and its result reads."""
    path, clock = tmp_path / "durably.db", FakeClock()
    await start_and_suspend(path, clock, JsonSerializer())
    assert await finish(path, clock, EncryptedSerializer(keys=[KEY_A])) == EXPECTED


async def test_a_wrong_key_parks_that_workflow_with_a_clear_error(tmp_path: Path) -> None:
    """An app holding only another key: the sleeping workflow is PARKED with an error
    saying the payload cannot be decrypted and what to do; a finished one's result
    raises PayloadError; the app itself keeps running new workflows."""
    path, clock = tmp_path / "durably.db", FakeClock()
    written_with_a = EncryptedSerializer(keys=[KEY_A])
    await start_and_suspend(path, clock, written_with_a)
    app = payment_app(path, clock, EncryptedSerializer(keys=[KEY_C]))
    async with app:
        clock.advance(timedelta(minutes=1))
        await wait_until(app, "order-1", WorkflowStatus.PARKED)
        info = await app.handle("order-1").info()
        assert info.error is not None
        assert "cannot be decrypted with any of the 1 configured key(s)" in info.error.message
        assert "order-1" in info.error.message

        await app.start("pay", "another card", workflow_id="order-2")
        await wait_until(app, "order-2", WorkflowStatus.SUSPENDED)
        clock.advance(timedelta(minutes=1))
        await app.send_signal("order-2", "note", "fine")
        assert await app.handle("order-2").result() == "another card:4200:fine"

    finished = payment_app(path, clock, written_with_a)
    async with finished:
        await finished.start("pay", CARD, workflow_id="order-3")
        await wait_until(finished, "order-3", WorkflowStatus.SUSPENDED)
        clock.advance(timedelta(minutes=1))
        await finished.send_signal("order-3", "note", NOTE)
        assert await finished.handle("order-3").result() == EXPECTED
    wrong = payment_app(path, clock, EncryptedSerializer(keys=[KEY_C]))
    async with wrong:
        with pytest.raises(PayloadError, match="cannot be decrypted") as refused:
            await wrong.handle("order-3").result()
    assert "order-3" in str(refused.value)


async def test_an_app_without_encryption_says_how_to_read_encrypted_rows(tmp_path: Path) -> None:
    """Encryption turned off: reading an encrypted result names the serializer to
    configure instead of failing as corrupt JSON."""
    path, clock = tmp_path / "durably.db", FakeClock()
    await start_and_suspend(path, clock, EncryptedSerializer(keys=[KEY_A]))
    assert await finish(path, clock, EncryptedSerializer(keys=[KEY_A])) == EXPECTED
    plain = payment_app(path, clock, None)
    async with plain:
        with pytest.raises(PayloadError, match=r"written encrypted .*EncryptedSerializer"):
            await plain.handle("order-1").result()


def test_a_changed_token_is_refused() -> None:
    """Fernet authenticates: one changed character is an error, never other data."""
    serializer = EncryptedSerializer(keys=[KEY_A])
    token = serializer.dumps({"amount": 42}, dict)
    changed = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    with pytest.raises(PayloadError, match="cannot be decrypted"):
        serializer.loads(changed, dict)
    assert serializer.loads(token, dict) == {"amount": 42}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one key"),
        (KEY_A, "a list of keys"),
        (["not a key"], r"keys\[0\] is not a Fernet key"),
        ([KEY_A, b"short"], r"keys\[1\] is not a Fernet key"),
    ],
)
def test_bad_keys_are_refused_when_configured(keys: object, message: str) -> None:
    """No key, one bare key, or a malformed key: ConfigurationError saying what to do."""
    with pytest.raises(ConfigurationError, match=message):
        EncryptedSerializer(keys=keys)  # type: ignore[arg-type]


def test_without_cryptography_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The extra is optional: a missing package is a clear ConfigurationError."""
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'durably\[encryption\]'"):
        EncryptedSerializer(keys=[KEY_A])


def test_generated_keys_are_random_and_usable() -> None:
    """generate_key() gives a new key each time, which encrypts and decrypts."""
    first, second = generate_key(), generate_key()
    assert first != second
    serializer = EncryptedSerializer(keys=[first])
    assert serializer.loads(serializer.dumps([1, "two"], list), list) == [1, "two"]


def test_a_wrapped_serializer_names_the_rows() -> None:
    """The stored name records both layers, and the inner serializer's rows are read."""
    serializer = EncryptedSerializer(JsonSerializer(), keys=[KEY_A])
    assert serializer.name == "encrypted+json"
    assert serializer.also_reads == frozenset({"json"})
    assert serializer.loads('{"plain": true}', dict) == {"plain": True}
