"""Payload encryption at rest, with key rotation (``pip install 'durably[encryption]'``).

:class:`EncryptedSerializer` wraps another serializer (JSON by default): what the
inner serializer writes is encrypted with Fernet (AES-128-CBC and HMAC-SHA256, from
the ``cryptography`` package) before it is stored, so workflow inputs and results,
step results and signal payloads are unreadable in the database file and its backups.

Rows record the serializer that wrote them (``encrypted+json``), and the encrypted text
carries a ``fernet:`` prefix, so an app that turns encryption on still reads the rows
written before (plain JSON), and an app that turns it off says which serializer a row
needs instead of misreading it.

Keys rotate: new payloads are encrypted with the first key of ``keys``; every key
decrypts. To retire a key, put the new key first, keep the old one until
:func:`reencrypt_sqlite` (or the workflows' own completion) has rewritten what it
encrypted, then drop it.

What is not encrypted: names, ids, statuses, timestamps, and stored errors (use
``Durably(redact=...)`` for secrets in error messages).
"""

from __future__ import annotations

import sqlite3
import types
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from durably.codec import JsonSerializer, Serializer
from durably.errors import ConfigurationError, PayloadError

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

#: Starts every encrypted payload: not valid JSON and not base64, so an encrypted
#: payload can never be mistaken for a plain one.
ENCRYPTED_PREFIX = "fernet:"

_INSTALL = "pip install 'durably[encryption]'"


def generate_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64), to keep in a secret store.

    Raises:
        ConfigurationError: the ``cryptography`` package is not installed.
    """
    key: bytes = _fernet_module().Fernet.generate_key()
    return key.decode("ascii")


def _fernet_module() -> types.ModuleType:
    try:
        from cryptography import fernet
    except ImportError:
        raise ConfigurationError(
            f"payload encryption needs the cryptography package: {_INSTALL}"
        ) from None
    return fernet


class EncryptedSerializer:
    """Encrypts what another serializer writes; decrypts with any of several keys.

    Args:
        inner: The serializer whose text is encrypted (default: :class:`JsonSerializer`).
        keys: Fernet keys (``str`` or ``bytes``, see :func:`generate_key`), newest
            first: the first encrypts, every one decrypts.

    Raises:
        ConfigurationError: no key, a key that is not a Fernet key, or the
            ``cryptography`` package is missing.

    Example::

        serializer = EncryptedSerializer(keys=[os.environ["DURABLY_KEY"]])
        app = Durably("sqlite:///app.db", serializer=serializer)
    """

    def __init__(self, inner: Serializer | None = None, *, keys: Sequence[str | bytes]) -> None:
        fernet = _fernet_module()
        if isinstance(keys, str | bytes):
            raise ConfigurationError(
                "keys must be a list of keys, newest first (keys=[key]), not one key"
            )
        if not keys:
            raise ConfigurationError(
                "EncryptedSerializer needs at least one key; make one with "
                "durably.encryption.generate_key() and keep it in a secret store"
            )
        fernets = []
        for index, key in enumerate(keys):
            try:
                fernets.append(fernet.Fernet(key))
            except (ValueError, TypeError):
                raise ConfigurationError(
                    f"keys[{index}] is not a Fernet key (32 bytes in url-safe base64, "
                    f"44 characters); make one with durably.encryption.generate_key()"
                ) from None
        self._fernet: MultiFernet = fernet.MultiFernet(fernets)
        self._invalid_token: type[Exception] = fernet.InvalidToken
        self._key_count = len(fernets)
        self._inner: Serializer = inner if inner is not None else JsonSerializer()
        self.name = f"encrypted+{self._inner.name}"
        #: Rows labelled with these names are also read by this serializer: the rows
        #: written before encryption was turned on (see :meth:`loads`).
        self.also_reads = frozenset({self._inner.name})

    @property
    def inner(self) -> Serializer:
        """The serializer whose text is encrypted."""
        return self._inner

    def __repr__(self) -> str:
        return f"EncryptedSerializer({self._inner.name}, {self._key_count} key(s))"

    def dumps(self, value: object, hint: object) -> str:
        """Serialize with the inner serializer, then encrypt with the first key.

        Raises:
            PayloadError: the inner serializer cannot encode the value.
        """
        return self.encrypt(self._inner.dumps(value, hint))

    def loads(self, data: str, hint: object) -> object:
        """Decrypt with whichever key fits, then deserialize with the inner serializer.

        Text without the ``fernet:`` prefix was written before encryption was
        enabled: it is read as the inner serializer's text.

        Raises:
            PayloadError: no configured key decrypts it, or it was changed.
        """
        return self._inner.loads(self.decrypt(data), hint)

    def encrypt(self, text: str) -> str:
        """Encrypt the inner serializer's ``text`` with the first key.

        Raises:
            PayloadError: the text is not valid Unicode (a lone surrogate).
        """
        try:
            plain = text.encode("utf-8")
        except UnicodeEncodeError:
            raise PayloadError(
                "its text holds a lone surrogate (half of a UTF-16 pair), which is not "
                "valid Unicode and cannot be stored"
            ) from None
        return ENCRYPTED_PREFIX + self._fernet.encrypt(plain).decode("ascii")

    def decrypt(self, data: str) -> str:
        """The inner serializer's text of a stored payload (plain text is returned as is).

        Raises:
            PayloadError: no configured key decrypts it, or it was changed.
        """
        if not data.startswith(ENCRYPTED_PREFIX):
            return data
        try:
            token = data[len(ENCRYPTED_PREFIX) :].encode("ascii")
            return self._fernet.decrypt(token).decode("utf-8")
        except (self._invalid_token, UnicodeError):
            raise PayloadError(
                f"the encrypted payload cannot be decrypted with any of the "
                f"{self._key_count} configured key(s): it was encrypted with another key "
                f"(add that key to EncryptedSerializer(keys=[...]), after the newest one), "
                f"or it was changed"
            ) from None

    def reencrypt(self, data: str) -> str:
        """``data`` encrypted with the first key: an encrypted payload is rotated (its
        content and time stamp kept), a plain one is encrypted.

        Raises:
            PayloadError: no configured key decrypts it.
        """
        if not data.startswith(ENCRYPTED_PREFIX):
            return self.encrypt(data)
        try:
            token = data[len(ENCRYPTED_PREFIX) :].encode("ascii")
            return ENCRYPTED_PREFIX + self._fernet.rotate(token).decode("ascii")
        except (self._invalid_token, UnicodeError):
            self.decrypt(data)  # raises the explanatory PayloadError
            raise


#: For each table holding payloads: a page of rows after a key (key columns,
#: serializer, payloads), a key before every row (seqs are INTEGER on PostgreSQL), and
#: the compare-and-set update; in SQLite's parameter style.
_SQLITE_PAYLOAD_TABLES = (
    (
        "SELECT workflow_id, serializer, input, result FROM workflows "
        "WHERE workflow_id > ? ORDER BY workflow_id LIMIT 500",
        ("",),
        "UPDATE workflows SET serializer = ?, input = ?, result = ? "
        "WHERE workflow_id = ? AND serializer = ?",
    ),
    (
        "SELECT workflow_id, seq, serializer, result FROM operations "
        "WHERE (workflow_id, seq) > (?, ?) ORDER BY workflow_id, seq LIMIT 500",
        ("", -(2**31)),
        "UPDATE operations SET serializer = ?, result = ? "
        "WHERE workflow_id = ? AND seq = ? AND serializer = ?",
    ),
    (
        "SELECT signal_id, serializer, payload FROM signals "
        "WHERE signal_id > ? ORDER BY signal_id LIMIT 500",
        (-1,),
        "UPDATE signals SET serializer = ?, payload = ? WHERE signal_id = ? AND serializer = ?",
    ),
)

#: The same for PostgreSQL; each page is locked (FOR UPDATE) until the commit, so an
#: app cannot change a row between its read and its rewrite.
_POSTGRES_PAYLOAD_TABLES = tuple(
    (select.replace("?", "%s") + " FOR UPDATE", first, update.replace("?", "%s"))
    for select, first, update in _SQLITE_PAYLOAD_TABLES
)


class _Rows(Protocol):
    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class _Connection(Protocol):
    """What the rewrite needs of a DB-API connection (sqlite3 or psycopg)."""

    def execute(self, query: Any, params: Any = ..., /) -> _Rows: ...


def _rewrite_payloads(
    connection: _Connection,
    serializer: EncryptedSerializer,
    tables: Sequence[tuple[str, tuple[object, ...], str]],
) -> int:
    """Rewrite, in the caller's transaction, every payload labelled with
    ``serializer``'s name or its inner serializer's; return how many."""
    labels = (serializer.name, serializer.inner.name)
    rewritten = 0
    for select, first, update in tables:
        after, width = first, len(first)
        while rows := connection.execute(select, after).fetchall():
            for row in rows:
                keys, label, payloads = row[:width], row[width], row[width + 1 :]
                if label not in labels:
                    continue
                new = [None if p is None else serializer.reencrypt(p) for p in payloads]
                connection.execute(update, (serializer.name, *new, *keys, label))
                rewritten += sum(p is not None for p in payloads)
            after = tuple(rows[-1][:width])
    return rewritten


def reencrypt_sqlite(path: str | Path, serializer: EncryptedSerializer) -> int:
    """Rewrite every payload of a SQLite database with ``serializer``'s first key.

    Encrypted payloads are rotated to the first key; plain payloads written before
    encryption was turned on (rows labelled with the inner serializer's name) are
    encrypted and relabelled. Rows of other serializers are left alone. After it, the
    old keys can be dropped from ``keys``.

    It runs in one ``BEGIN IMMEDIATE`` transaction: all or nothing, and safe while
    apps run on the file (their writes wait until it commits, so run it at a quiet
    time on a large database). Every app that writes must already have the new key
    first in its ``keys``.

    Args:
        path: The database file.
        serializer: The serializer the apps use, new key first.

    Returns:
        How many payloads were rewritten.

    Raises:
        PayloadError: a payload cannot be decrypted with any key (nothing is changed).
        ValueError: ``path`` is not an existing file.
    """
    database = Path(path)
    if not database.is_file():
        raise ValueError(f"{database} is not an existing SQLite database file")
    connection = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        # Overwrite the replaced text with zeros rather than leave it in free pages.
        connection.execute("PRAGMA secure_delete = ON")
        connection.execute("BEGIN IMMEDIATE")
        try:
            rewritten = _rewrite_payloads(connection, serializer, _SQLITE_PAYLOAD_TABLES)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        # Copy the new pages over the old ones in the main file now (best effort: a
        # reader in the middle of a transaction can keep part of the WAL for later).
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return rewritten


def reencrypt_postgres(
    url: str, serializer: EncryptedSerializer, *, schema: str = "durably"
) -> int:
    """Rewrite every payload of a PostgreSQL store with ``serializer``'s first key
    (needs ``durably[postgres]``), as :func:`reencrypt_sqlite` does for a file.

    It runs in one transaction: all or nothing. The rows it rewrites stay locked
    until it commits, so it is safe while apps run (their writes to those rows wait),
    best at a quiet time on a large database. Every app that writes must already have
    the new key first in its ``keys``. PostgreSQL keeps the replaced row versions
    until they are vacuumed: run ``VACUUM`` on the schema's tables afterwards to
    remove the old ciphertext from the data files.

    Args:
        url: The database, as given to :class:`~durably.store.postgres.PostgresStore`.
        serializer: The serializer the apps use, new key first.
        schema: The store's schema (default ``durably``).

    Returns:
        How many payloads were rewritten.

    Raises:
        PayloadError: a payload cannot be decrypted with any key (nothing is changed).
        ConfigurationError: psycopg is missing.
        ValueError: the schema holds no durably store.
    """
    try:
        import psycopg
        from psycopg import sql

        from durably.store.postgres._connection import describe
    except ImportError as error:
        raise ConfigurationError(
            "reencrypt_postgres needs psycopg: pip install 'durably[postgres]'"
        ) from error
    with psycopg.connect(url) as connection:  # one transaction, committed on success
        found = connection.execute(
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = 'workflows'",
            (schema,),
        ).fetchone()
        if found is None:
            raise ValueError(f"schema {schema!r} of {describe(url)} holds no durably store")
        connection.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        return _rewrite_payloads(connection, serializer, _POSTGRES_PAYLOAD_TABLES)
