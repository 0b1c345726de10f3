"""Secrets redacted from stored errors (Durably(redact=...), durably.redaction)."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from durably import (
    ConfigurationError,
    Context,
    Durably,
    RetryPolicy,
    SqliteStore,
    WorkflowFailedError,
)
from durably.redaction import REDACTED, RedactingFormatter, Redactor

SECRET = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"  # noqa: S105 - a made-up key


class PaymentError(Exception):
    """What a payment client raises, with the key in its message."""


def stored_errors(path: Path) -> list[dict[str, str]]:
    """Every error stored in the file: workflows, operations and failed attempts."""
    connection = sqlite3.connect(path)
    try:
        texts = [
            text
            for query in (
                "SELECT error FROM workflows",
                "SELECT error FROM operations",
                "SELECT error FROM attempts",
            )
            for (text,) in connection.execute(query)
            if text is not None
        ]
    finally:
        connection.close()
    return [json.loads(text) for text in texts]


def file_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in (path, Path(f"{path}-wal")) if f.exists())


async def test_a_secret_in_a_step_error_is_redacted_where_it_is_stored(tmp_path: Path) -> None:
    """The step fails twice (a retry, then for good) and the workflow fails: every
    stored message has the key redacted, the file holds no copy of it, while the
    workflow body saw the live exception with its original message."""
    path = tmp_path / "durably.db"
    app = Durably(SqliteStore(path), redact=[r"sk_live_\w+"])
    seen: list[BaseException] = []

    async def charge() -> None:
        raise PaymentError(f"card declined for key {SECRET} (retry later)")

    @app.workflow(name="checkout")
    async def checkout(ctx: Context) -> None:
        try:
            await ctx.step("charge", charge, retry=RetryPolicy.fixed(2, 0))
        except PaymentError as error:
            seen.append(error)
            raise

    async with app:
        with pytest.raises(WorkflowFailedError) as failed:
            await app.run(checkout, workflow_id="order-1")

    (live,) = seen
    assert type(live) is PaymentError
    assert str(live) == f"card declined for key {SECRET} (retry later)"
    assert SECRET not in str(failed.value)
    errors = stored_errors(path)
    assert len(errors) == 3  # the failed attempt, the step, the workflow
    for error in errors:
        assert error["type"] == "PaymentError"
        assert error["message"] == f"card declined for key {REDACTED} (retry later)"
    assert SECRET.encode() not in file_bytes(path)


async def test_without_redact_the_message_is_stored_as_raised(tmp_path: Path) -> None:
    """The control: the same failure without ``redact`` stores the key."""
    path = tmp_path / "durably.db"
    app = Durably(SqliteStore(path))

    async def charge() -> None:
        raise PaymentError(f"key {SECRET}")

    @app.workflow(name="checkout")
    async def checkout(ctx: Context) -> None:
        await ctx.step("charge", charge)

    async with app:
        with pytest.raises(WorkflowFailedError):
            await app.run(checkout)
    assert any(SECRET in error["message"] for error in stored_errors(path))


async def test_the_stored_traceback_is_redacted_too(tmp_path: Path) -> None:
    """A rule applies to the traceback (file paths and function names) as well."""
    path = tmp_path / "durably.db"
    app = Durably(SqliteStore(path), redact=re.compile(re.escape(Path(__file__).name)))

    @app.workflow(name="failing")
    async def failing(ctx: Context) -> None:
        raise PaymentError("no")

    async with app:
        with pytest.raises(WorkflowFailedError):
            await app.run(failing)
    (error,) = stored_errors(path)
    assert Path(__file__).name not in error["traceback"]
    assert REDACTED in error["traceback"]


def test_capture_groups_redact_only_what_they_captured() -> None:
    """``password=(\\S+)`` keeps the label and hides the value; rules apply in order."""
    redact = Redactor([r"password=(\S+)", r"token (\w+) for (\w+)", str.strip])
    assert redact("  password=hunter2 and token abc for bob  ") == (
        f"password={REDACTED} and token {REDACTED} for {REDACTED}"
    )


def test_a_function_rule_that_fails_hides_the_whole_text() -> None:
    """A broken redactor never lets the text through unredacted."""

    def broken(text: str) -> str:
        raise RuntimeError("bug")

    assert (
        Redactor(broken)(f"key {SECRET}")
        == f"{REDACTED} (the redaction function raised RuntimeError)"
    )
    assert Redactor(lambda text: None)(SECRET).startswith(REDACTED)  # type: ignore[arg-type,return-value]


def test_the_default_cut_never_splits_a_secret_before_it_is_redacted() -> None:
    """Messages are cut at 1,000 characters after redaction, not before."""
    formatter = RedactingFormatter(re.escape(SECRET))
    message = formatter(PaymentError("x" * 990 + SECRET))
    assert message == "x" * 990 + REDACTED
    assert "sk_live" not in formatter(PaymentError("y" * 995 + SECRET + "z" * 100))


def test_an_error_formatter_and_redact_work_together() -> None:
    """With the app's own formatter, its output is redacted."""
    formatter = RedactingFormatter(SECRET, lambda error: f"[{type(error).__name__}] {error}")
    assert formatter(PaymentError(f"key {SECRET}")) == f"[PaymentError] key {REDACTED}"


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ("(unclosed", "not a valid pattern"),
        ([r"\w*"], "matches empty text"),
        ([re.compile(rb"secret")], "text pattern"),
        ([42], "must be a pattern or a function"),
        ([], "non-empty list"),
    ],
)
def test_bad_rules_are_refused_when_the_app_is_made(rules: object, message: str) -> None:
    """A rule that cannot work is a ConfigurationError at Durably(...)."""
    with pytest.raises(ConfigurationError, match=message):
        Durably("memory://", redact=rules)  # type: ignore[arg-type]
