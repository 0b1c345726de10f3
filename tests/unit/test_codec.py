"""Payload codec: typed JSON round trips, first-run verification, limits, no pickle."""

from __future__ import annotations

import base64
import enum
import json
import os
import pickle
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypedDict

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durably.codec import (
    JsonSerializer,
    PayloadCodec,
    PickleSerializer,
    parameter_hints,
    return_hint,
)
from durably.errors import PayloadError, PayloadTooLargeError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    price: Decimal


@dataclass
class Order:
    order_id: uuid.UUID
    lines: list[Line]
    color: Color
    placed: datetime
    tags: set[str] = field(default_factory=set)
    note: str | None = None


class Point(NamedTuple):
    x: int
    y: int


class Meta(TypedDict):
    count: int
    when: date


class Customer(pydantic.BaseModel):
    name: str
    since: datetime


codec = PayloadCodec()


def round_trip(value: object, hint: object) -> object:
    """Encode with verification, then decode with the same hint."""
    return codec.decode(codec.encode(value, hint, what="t"), "json", hint, what="t")


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        (None, type(None)),
        (True, bool),
        (3, int),
        (2.5, float),
        ("héllo", str),
        (Color.BLUE, Color),
        (Level.HIGH, Level),
        (datetime(2026, 1, 2, 3, 4, 5, 6), datetime),
        (datetime(2026, 1, 2, tzinfo=UTC), datetime),
        (date(2026, 5, 6), date),
        (time(7, 8, 9), time),
        (timedelta(days=1, microseconds=5), timedelta),
        (uuid.UUID(int=7), uuid.UUID),
        (Decimal("0.1000"), Decimal),
        (b"\x00\xff", bytes),
        (bytearray(b"ab"), bytearray),
        (Path("/tmp/x"), Path),
        ((1, "a"), tuple[int, str]),
        ((1, 2, 3), tuple[int, ...]),
        ({1, 2}, set[int]),
        (frozenset({"a"}), frozenset[str]),
        ({1: "a"}, dict[int, str]),
        ({Color.RED: 1}, dict[Color, int]),
        (Point(1, 2), Point),
        ({"count": 1, "when": date(2026, 1, 1)}, Meta),
        ("red", Literal["red", "blue"]),
        (None, int | None),
        (Line("a", 1, Decimal("2.50")), Line),
        (Customer(name="Ada", since=datetime(2020, 1, 1)), Customer),
        (
            Order(
                order_id=uuid.UUID(int=1),
                lines=[Line("a", 2, Decimal("1.10"))],
                color=Color.RED,
                placed=datetime(2026, 1, 1),
                tags={"x", "y"},
            ),
            Order,
        ),
    ],
)
def test_supported_types_round_trip_with_their_type(value: object, hint: object) -> None:
    """Decoding by the hint gives back an equal value of the same type."""
    decoded = round_trip(value, hint)
    assert decoded == value
    assert type(decoded) is type(value)


def test_untyped_json_data_round_trips_without_a_hint() -> None:
    """Plain JSON data needs no annotation."""
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": []}}
    assert round_trip(value, Any) == value


@pytest.mark.parametrize(
    ("value", "hint", "advice"),
    [
        (Line("a", 1, Decimal(1)), Any, "annotate"),
        ((1, 2), Any, "annotate"),
        ({1: "a"}, Any, "annotate"),
        (Line("a", 1, Decimal(1)), dict, "annotate"),
    ],
)
def test_values_that_would_change_on_replay_fail_at_the_first_run(
    value: object, hint: object, advice: str
) -> None:
    """A value that would not come back the same is refused, with what to do."""
    with pytest.raises(PayloadError, match=advice) as caught:
        codec.encode(value, hint, what="the result of step 'x'")
    assert "step 'x'" in str(caught.value)


class Arguments(TypedDict):
    """A workflow's input as durably declares it: one field per parameter."""

    count: int
    point: Point
    flag: bool
    anything: Any


@pytest.mark.parametrize(
    "value",
    [
        {"count": 1, "point": {"x": 1, "y": 2}, "flag": True, "anything": None},
        {"count": 1, "point": [1, 2], "flag": True, "anything": None},
        {"count": 1, "flag": 1, "anything": None},
        {"count": True, "anything": None},
        {"count": 1, 2: "x"},
    ],
    ids=["dict-for-tuple", "list-for-tuple", "int-for-bool", "bool-for-int", "int-key"],
)
def test_a_typed_dict_whose_values_would_change_is_refused(value: dict[Any, Any]) -> None:
    """Values under a TypedDict (a workflow's input) are checked by their declared
    types: only values of exactly the declared plain type are let through untried."""
    with pytest.raises(PayloadError):
        codec.encode(value, Arguments, what="the input")
    plain = {"count": 3, "flag": False, "anything": "x", "extra": 1.5}
    assert round_trip(plain, Arguments) == plain


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), object(), lambda: 1, {(1, 2): "tuple key"}]
)
def test_unencodable_values_raise_payload_error(value: object) -> None:
    """NaN, arbitrary objects, functions and odd keys fail with PayloadError."""
    with pytest.raises(PayloadError, match="cannot store the input"):
        codec.encode(value, Any, what="the input")


def test_cycles_and_deep_nesting_raise_payload_error() -> None:
    """A reference cycle or absurd nesting is refused clearly, not with RecursionError."""
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(PayloadError, match="cycle"):
        codec.encode(cyclic, Any, what="x")
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    with pytest.raises(PayloadError, match="nested"):
        codec.encode(deep, Any, what="x")


def test_payload_over_the_limit_is_refused() -> None:
    """An encoded payload larger than max_payload_bytes raises PayloadTooLargeError."""
    small = PayloadCodec(max_payload_bytes=1_000)
    small.encode("x" * 200, str, what="ok")
    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
        small.encode("é" * 600, str, what="the payload")


def test_the_limit_counts_utf8_bytes_for_ascii_and_other_text_alike() -> None:
    """The limit is on the encoded UTF-8 size: 1,000 bytes pass and 1,001 do not,
    whether the text is ASCII (its own UTF-8) or two bytes a character."""
    limited = PayloadCodec(max_payload_bytes=1_000)
    assert len(limited.encode("x" * 998, str, what="ascii")) == 1_000  # with its quotes
    assert limited.encode("é" * 499, str, what="two-byte") == '"' + "é" * 499 + '"'
    for over in ("x" * 999, "é" * 499 + "x"):
        with pytest.raises(PayloadTooLargeError, match="1,001 bytes encoded"):
            limited.encode(over, str, what="the payload")


def test_a_lone_surrogate_is_refused_and_the_description_is_made_only_for_errors() -> None:
    """Text that is not valid Unicode cannot be stored; the description of what is
    stored may be a function, called only to word an error."""
    described: list[str] = []

    def what() -> str:
        described.append("asked")
        return "the result of step 'x'"

    assert codec.encode("fine", str, what=what) == '"fine"'
    assert described == []
    with pytest.raises(PayloadError, match=r"cannot store the result of step 'x'.*U\+D800"):
        codec.encode("half \ud800 pair", str, what=what)
    assert described == ["asked"]


def test_corrupt_or_mismatched_payloads_raise_payload_error() -> None:
    """Bad stored text or a value that does not fit the hint is a PayloadError."""
    with pytest.raises(PayloadError, match="corrupt"):
        codec.decode('{"a": ', "json", Any, what="x")
    with pytest.raises(PayloadError, match="does not fit"):
        codec.decode('"text"', "json", int, what="x")
    with pytest.raises(PayloadError, match="unknown serializer 'yaml'"):
        codec.decode("a: 1", "yaml", Any, what="x")


class _Planted:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (os.mkdir, (self.marker,))


def test_a_planted_pickle_is_never_unpickled_without_opt_in(tmp_path: Path) -> None:
    """A malicious pickle in the store is refused by the JSON codec and never runs."""
    marker = tmp_path / "pwned"
    planted = base64.b64encode(pickle.dumps(_Planted(str(marker)))).decode()
    with pytest.raises(PayloadError, match="never unpickles"):
        codec.decode(planted, "pickle", Any, what="a result")
    with pytest.raises(PayloadError):
        codec.decode(planted, "json", Any, what="a result")
    assert not marker.exists()


def test_pickle_works_when_opted_in() -> None:
    """With PickleSerializer, arbitrary picklable values round-trip."""
    opted = PayloadCodec(PickleSerializer())
    text = opted.encode(Line("a", 1, Decimal(1)), Any, what="x")
    assert opted.decode(text, "pickle", Any, what="x") == Line("a", 1, Decimal(1))
    assert opted.serializer_name == "pickle"


def test_type_hints_are_read_from_functions() -> None:
    """return_hint and parameter_hints resolve annotations (future annotations too)."""

    def make(order: Order, count: int) -> list[Line]:
        return []

    assert return_hint(make) == list[Line]
    assert parameter_hints(make) == {"order": Order, "count": int}
    assert return_hint(lambda: 1) is Any


def test_importing_the_codec_does_not_import_pydantic() -> None:
    """pydantic support is lazy: the core stays standard-library only."""
    code = "import sys, durably.codec; print('pydantic' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_any_json_value_round_trips(value: object) -> None:
    """Plain JSON data of any shape comes back equal."""
    assert round_trip(value, Any) == value


lines = st.builds(
    Line,
    sku=st.text(max_size=10),
    quantity=st.integers(),
    price=st.decimals(allow_nan=False, allow_infinity=False),
)
orders = st.builds(
    Order,
    order_id=st.uuids(),
    lines=st.lists(lines, max_size=3),
    color=st.sampled_from(Color),
    placed=st.datetimes(timezones=st.none() | st.just(UTC)),
    tags=st.sets(st.text(max_size=5), max_size=3),
    note=st.none() | st.text(max_size=5),
)


@given(orders)
def test_nested_dataclasses_round_trip_with_exact_types(order: Order) -> None:
    """Dataclasses with UUIDs, Decimals, enums, datetimes and sets keep every type."""
    decoded = round_trip(order, Order)
    assert decoded == order
    assert isinstance(decoded, Order)
    assert all(type(a.price) is Decimal for a in decoded.lines)
    assert type(decoded.tags) is set


@given(
    st.dictionaries(st.integers(), st.binary(max_size=8), max_size=5),
    st.tuples(st.dates(), st.timedeltas(), st.frozensets(st.integers(), max_size=4)),
)
def test_typed_containers_round_trip(
    mapping: dict[int, bytes], triple: tuple[date, timedelta, frozenset[int]]
) -> None:
    """dict[int, bytes] and tuple[date, timedelta, frozenset[int]] keep their types."""
    assert round_trip(mapping, dict[int, bytes]) == mapping
    decoded = round_trip(triple, tuple[date, timedelta, frozenset[int]])
    assert decoded == triple
    assert type(decoded) is tuple


@pytest.mark.parametrize("value", [None, 0, -1, 2**62, 10**18 - 1, 10**18, -(10**19), True])
def test_the_scalar_fast_path_writes_what_the_general_path_writes(value: object) -> None:
    """None and ints are written without building a tree: the same text either way."""
    from durably.codec import _COMPACT_JSON, _to_tree

    general = _COMPACT_JSON.encode(_to_tree(value, set(), 0))
    assert JsonSerializer().dumps(value, Any) == general == json.dumps(value)


@dataclass
class _Ledger:
    """A dataclass whose field names a class that does not exist yet."""

    entry: _LedgerEntry  # noqa: F821 - defined only inside the test below


def test_a_forward_reference_resolves_once_its_class_exists() -> None:
    """Field annotations are resolved once per class and kept, but a failure to
    resolve them is not kept: once the named class exists, decoding works."""
    codec = PayloadCodec()
    text = '{"entry": {"amount": 3}}'
    with pytest.raises(NameError, match="_LedgerEntry"):
        codec.decode(text, "json", _Ledger, what="a ledger")

    @dataclass
    class _LedgerEntry:
        amount: int

    globals()["_LedgerEntry"] = _LedgerEntry
    try:
        first = codec.decode(text, "json", _Ledger, what="a ledger")
        again = codec.decode(text, "json", _Ledger, what="a ledger")
    finally:
        del globals()["_LedgerEntry"]
    assert first == again == _Ledger(entry=_LedgerEntry(amount=3))
    assert type(first.entry) is _LedgerEntry
