"""Identifier validation: clear errors for every rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durably.identifiers import validate_identifier


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
