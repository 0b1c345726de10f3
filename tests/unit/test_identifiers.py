"""Identifier validation: clear errors for every rule; time-ordered workflow ids."""

from __future__ import annotations

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durably import Context, Durably, MemoryStore, identifiers
from durably.identifiers import time_ordered_id, validate_identifier


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "must not be empty"),
        ("   ", "only whitespace"),
        (" padded", "start or end with whitespace"),
        ("padded\t", "start or end with whitespace"),
        ("x" * 257, "at most 256"),
        ("step\x00name", "control characters"),
        ("del\x7f", "U\\+007F at position 3"),
    ],
)
def test_each_rule_has_a_clear_error(value: str, message: str) -> None:
    """Every broken rule raises ValueError naming the thing and the rule."""
    with pytest.raises(ValueError, match=message) as caught:
        validate_identifier(value, "step name")
    assert "step name" in str(caught.value)


def test_non_string_is_a_type_error() -> None:
    """Only strings are identifiers."""
    with pytest.raises(TypeError, match="workflow_id must be a string"):
        validate_identifier(42, "workflow_id")


def test_256_characters_are_allowed() -> None:
    """The length limit is inclusive."""
    assert validate_identifier("x" * 256, "name") == "x" * 256


valid = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=256
).filter(lambda text: text == text.strip() and text.strip() != "")


@given(valid)
def test_valid_identifiers_are_returned_unchanged(value: str) -> None:
    """Whatever passes the rules comes back as given."""
    assert validate_identifier(value, "name") == value


def test_every_character_is_judged_by_the_rules() -> None:
    """Inside a name, every character of the Basic Multilingual Plane (and the last
    ones of Unicode) is refused exactly when it is a control character or a lone
    surrogate; every whitespace character is refused at either end. (Printable names
    take a shortcut; this checks that it agrees with the rules.)"""
    code_points = [*range(0x10000), *range(0x10FFF0, 0x110000)]
    for code_point in code_points:
        character = chr(code_point)
        refused = code_point < 0x20 or code_point == 0x7F or 0xD800 <= code_point <= 0xDFFF
        try:
            validate_identifier(f"a{character}b", "name")
        except ValueError:
            assert refused, hex(code_point)
        else:
            assert not refused, hex(code_point)
    for character in (chr(code_point) for code_point in code_points):
        if character.isspace():
            for value in (f"{character}x", f"x{character}"):
                with pytest.raises(ValueError, match=r"whitespace|control"):
                    validate_identifier(value, "name")


def test_time_ordered_ids_are_uuid7_with_the_time_in_front_and_random_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each id is a version 7 UUID of the RFC variant whose first 48 bits are the
    milliseconds at its making; ids of later milliseconds sort after earlier ones;
    100,000 ids made at once are all different."""
    before = time.time_ns() // 1_000_000
    made = time_ordered_id()
    after = time.time_ns() // 1_000_000
    parsed = uuid.UUID(made)
    assert str(parsed) == made
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert before <= parsed.int >> 80 <= after
    batch = [time_ordered_id() for _ in range(100_000)]
    assert len(set(batch)) == len(batch)
    assert len({uuid.UUID(one).int & (2**62 - 1) for one in batch}) == len(batch)  # random
    for now_ms in (after + 1, 2**47 - 1):  # the next millisecond, and a far future
        monkeypatch.setattr(identifiers, "time_ns", lambda now_ms=now_ms: now_ms * 1_000_000)
        later = time_ordered_id()
        assert later > made and uuid.UUID(later).int >> 80 == now_ms
        made = later


async def test_a_start_without_an_id_gets_a_time_ordered_one() -> None:
    """The default workflow id is a time-ordered UUID; an id generator replaces it."""

    async def hello(ctx: Context) -> str:
        return "hi"

    app = Durably(MemoryStore())
    app.workflow(name="hello")(hello)
    async with app:
        handle = await app.start(hello)
        assert uuid.UUID(handle.workflow_id).version == 7
    custom = Durably(MemoryStore(), id_generator=lambda: "order-1")
    custom.workflow(name="hello")(hello)
    async with custom:
        assert (await custom.start(hello)).workflow_id == "order-1"
