"""Payloads: typed JSON by default, decoded by type hints so replay returns the same types.

Workflow inputs, step results and signal payloads are stored as JSON text. Encoding
follows the value (dataclasses, enums, datetimes, UUIDs, Decimals, bytes, sets...);
decoding follows the type hint of the function that produced or receives the value.
At the first run every encoded value is decoded again and compared with the original,
so a value that would not come back the same on replay fails at once, with an error
that says what to annotate, instead of at recovery.

Pickle is available only as an explicit opt-in (:class:`PickleSerializer`); a codec
never unpickles a payload unless it was configured with that serializer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import functools
import json
import math
import pickle
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import PurePath
from typing import Any, Final, Protocol, runtime_checkable

from durably.errors import PayloadError, PayloadTooLargeError

MAX_DEPTH = 200
_PLAIN = (str, int, bool, type(None))


@runtime_checkable
class Serializer(Protocol):
    """Turns values into stored text and back. ``name`` is stored next to each payload.

    A serializer may also have an ``also_reads`` attribute: names of other serializers
    whose stored text its :meth:`loads` reads too (a wrapper such as
    :class:`~durably.encryption.EncryptedSerializer` reads the rows written before it
    was configured).
    """

    name: str

    def dumps(self, value: object, hint: object) -> str:
        """Encode ``value`` (whose declared type is ``hint``) as text."""
        ...

    def loads(self, data: str, hint: object) -> object:
        """Decode text written by :meth:`dumps` into a value of type ``hint``."""
        ...


#: One encoder for every payload: ``json.dumps`` with options builds a new one per call.
_COMPACT_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


class JsonSerializer:
    """Type-directed JSON (the default): readable in the CLI and dashboard, and safe."""

    name = "json"

    def dumps(self, value: object, hint: object) -> str:
        """Encode as compact JSON."""
        if value is None:  # the most common results, written as JSON writes them
            return "null"
        if type(value) is int and -(10**18) < value < 10**18:
            return int.__repr__(value)
        tree = _to_tree(value, set(), 0)
        try:
            return _COMPACT_JSON.encode(tree)
        except ValueError as error:
            raise PayloadError(
                f"not valid JSON: {error} (NaN and infinity cannot be stored)"
            ) from None

    def loads(self, data: str, hint: object) -> object:
        """Decode JSON into ``hint``."""
        try:
            tree = json.loads(data)
        except ValueError as error:
            raise PayloadError(f"corrupt JSON payload: {error}") from None
        return _from_tree(tree, hint)


class PickleSerializer:
    """Opt-in pickle (base64 text). Unpickling runs arbitrary code: use it only with a
    database nobody else can write to."""

    name = "pickle"

    def dumps(self, value: object, hint: object) -> str:
        """Pickle and base64-encode."""
        try:
            return base64.b64encode(pickle.dumps(value)).decode("ascii")
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise PayloadError(f"cannot pickle: {error}") from None

    def loads(self, data: str, hint: object) -> object:
        """Base64-decode and unpickle."""
        return pickle.loads(base64.b64decode(data))  # noqa: S301 - opted in by the user


class PayloadCodec:
    """Encodes and decodes payloads with one serializer, a size limit and first-run
    verification."""

    def __init__(
        self,
        serializer: Serializer | None = None,
        *,
        max_payload_bytes: int = 16 * 1024 * 1024,
        verify_round_trip: bool = True,
    ) -> None:
        self._serializer: Serializer = serializer or JsonSerializer()
        self._json = JsonSerializer()
        self._max_payload_bytes = max_payload_bytes
        self._verify = verify_round_trip
        #: The name stored next to payloads this codec writes.
        self.serializer_name: Final[str] = self._serializer.name

    def encode(
        self,
        value: object,
        hint: object,
        *,
        what: str | Callable[[], str],
        verify: bool | None = None,
    ) -> str:
        """Encode ``value`` for storage.

        Args:
            value: The value.
            hint: Its declared type (``Any`` when unknown).
            what: A description used in error messages (or a function that makes it,
                called only when there is an error).
            verify: Check that decoding gives the value back (default: the codec's setting).

        Raises:
            PayloadError: the value cannot be stored faithfully; the message says why
                and what to change.
            PayloadTooLargeError: the encoded payload exceeds ``max_payload_bytes``.
        """
        try:
            text = self._serializer.dumps(value, hint)
        except PayloadError as error:
            raise PayloadError(f"cannot store {_text(what)}: {error}") from None
        except RecursionError:
            raise PayloadError(f"cannot store {_text(what)}: it is nested too deeply") from None
        try:
            # ASCII text (the common case) is its own UTF-8 and holds no surrogate.
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
        except UnicodeEncodeError as error:
            raise PayloadError(
                f"cannot store {_text(what)}: its text holds a lone surrogate "
                f"(U+{ord(text[error.start]):04X}), half of a UTF-16 pair, which is not valid "
                f"Unicode and cannot be stored as UTF-8; clean the text first, for example "
                f"with text.encode('utf-8', 'replace').decode('utf-8')"
            ) from None
        if size > self._max_payload_bytes:
            raise PayloadTooLargeError(
                f"{_text(what)} is {size:,} bytes encoded, over the limit of "
                f"{self._max_payload_bytes:,}: store large data elsewhere (a file, object "
                f"storage) and pass a reference, or raise Durably(max_payload_bytes=...)"
            )
        if (
            (self._verify if verify is None else verify)
            and type(value) not in _PLAIN  # the common case, tested here: no call
            and not _comes_back_as_is(value, hint)
        ):
            self._check_round_trip(value, hint, text, _text(what))
        return text

    def decode(self, data: str | None, serializer_name: str, hint: object, *, what: str) -> object:
        """Decode a stored payload into ``hint``.

        Raises:
            PayloadError: the payload is corrupt, does not fit ``hint``, or was written
                by a serializer this codec may not read (pickle without opting in).
        """
        if data is None:
            return None
        if serializer_name == self._serializer.name or serializer_name in getattr(
            self._serializer, "also_reads", ()
        ):
            serializer = self._serializer
        elif serializer_name == "json":
            serializer = self._json
        elif serializer_name == "pickle":
            raise PayloadError(
                f"{what} was written with the pickle serializer; durably never unpickles "
                f"unless the app is configured with serializer=PickleSerializer()"
            )
        elif serializer_name.startswith("encrypted+"):
            raise PayloadError(
                f"{what} was written encrypted (serializer {serializer_name!r}); configure the "
                f"app with serializer=durably.encryption.EncryptedSerializer(keys=[...]) and "
                f"the key it was written with"
            )
        else:
            raise PayloadError(f"{what} was written with an unknown serializer {serializer_name!r}")
        try:
            return serializer.loads(data, hint)
        except PayloadError as error:
            raise PayloadError(f"cannot read {what}: {error}") from None
        except (ValueError, TypeError, binascii.Error, pickle.UnpicklingError) as error:
            raise PayloadError(f"cannot read {what}: {error}") from None

    def _check_round_trip(self, value: object, hint: object, text: str, what: str) -> None:
        try:
            decoded = self._serializer.loads(text, hint)
            same = decoded == value and type(decoded) is type(value)
        except (PayloadError, ValueError, TypeError):
            same = False
        if same:
            return
        type_name = type(value).__qualname__
        hint_name = "no annotation" if hint is Any else f"annotation {_hint_name(hint)}"
        raise PayloadError(
            f"{what} is a {type_name} that would not come back the same on replay "
            f"({hint_name}): annotate the function's type (for example -> {type_name}) so "
            f"durably can rebuild it, or return a dataclass, a pydantic model or plain JSON data"
        )


def _text(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def return_hint(fn: Callable[..., object]) -> object:
    """The resolved return annotation of ``fn``, or ``Any`` when there is none."""
    if type(fn) is types.FunctionType:  # every step call asks: answered from a cache
        return _function_return_hint(fn)
    return _shared_hints(fn).get("return", Any)


@functools.lru_cache(maxsize=4096)
def _function_return_hint(fn: types.FunctionType) -> object:
    return _resolved_hints(fn).get("return", Any)


def parameter_hints(fn: Callable[..., object]) -> dict[str, object]:
    """The resolved parameter annotations of ``fn`` (missing ones are absent)."""
    hints = dict(_shared_hints(fn))
    hints.pop("return", None)
    return hints


def _shared_hints(fn: Callable[..., object]) -> dict[str, object]:
    """``fn``'s resolved annotations, shared with the cache: callers only read them."""
    target: object = fn
    if type(target) is not types.FunctionType:  # the common case needs no unwrapping
        while isinstance(target, functools.partial):
            target = target.func
        if not (isinstance(target, types.FunctionType | types.MethodType | type)):
            target = getattr(target, "__call__", target)  # noqa: B004 - callable objects
        if isinstance(target, types.MethodType):
            target = target.__func__  # bound methods are new objects at every access
    try:
        return _resolved_hints(target)
    except TypeError:  # an unhashable callable: resolve without the cache
        return _resolve_hints(target)


@functools.lru_cache(maxsize=4096)
def _resolved_hints(target: object) -> dict[str, object]:
    """Resolving annotations is slow (it evaluates strings); each step call needs them."""
    return _resolve_hints(target)


@functools.lru_cache(maxsize=1024)
def _field_hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of a dataclass, TypedDict or NamedTuple, which
    every decode of one needs (resolving evaluates strings: about 15 µs a class).
    Shared: callers only read it. An error is raised, not cached, so that a forward
    reference defined later resolves then."""
    return typing.get_type_hints(cls)


def _resolve_hints(target: object) -> dict[str, object]:
    try:
        return dict(typing.get_type_hints(target))
    except Exception:
        return {}


def _hint_name(hint: object) -> str:
    return getattr(hint, "__qualname__", None) or str(hint).replace("typing.", "")


def _is_plain(value: object) -> bool:
    if type(value) in _PLAIN:
        return True
    return type(value) is float and math.isfinite(value)


def _comes_back_as_is(value: object, hint: object) -> bool:
    """Whether decoding ``value`` by ``hint`` certainly gives it back, so that the
    round trip need not be tried: a plain value, or a dict of plain values under text
    keys read as a TypedDict whose fields declare exactly those values' types or
    nothing (a workflow's input, usually: trying costs three times the encoding)."""
    if _is_plain(value):
        return True
    if type(value) is not dict or not typing.is_typeddict(hint):
        return False
    field_hints = _field_hints(hint)
    for key, item in value.items():
        wanted = field_hints.get(key, Any)
        if type(key) is not str or not _is_plain(item):
            return False
        if not (type(item) is wanted or wanted is Any or wanted is object):
            return False
    return True


def _is_pydantic_model(candidate: object) -> bool:
    return (
        isinstance(candidate, type)
        and hasattr(candidate, "model_validate")
        and hasattr(candidate, "model_dump")
    )


def _to_tree(value: object, active: set[int], depth: int) -> object:
    """Convert a value into JSON-compatible data, following the value's own type."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict or kind is list:  # plain containers: none of the scalar rules apply
        return _container(value, active, depth)
    if isinstance(value, bool | int | str):
        if isinstance(value, enum.Enum):
            return _to_tree(value.value, active, depth)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PayloadError(f"{value!r} cannot be stored (NaN and infinity are not JSON)")
        return value
    if isinstance(value, enum.Enum):
        return _to_tree(value.value, active, depth + 1)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if isinstance(value, uuid.UUID | Decimal | PurePath):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    return _container(value, active, depth)


def _container(value: object, active: set[int], depth: int) -> object:
    if depth > MAX_DEPTH:
        raise PayloadError(f"it is nested deeper than {MAX_DEPTH} levels")
    if id(value) in active:
        raise PayloadError("it contains a reference cycle")
    active.add(id(value))
    try:
        return _container_to_tree(value, active, depth + 1)
    finally:
        active.discard(id(value))


def _container_to_tree(value: object, active: set[int], depth: int) -> object:
    kind = type(value)
    if kind is not dict and kind is not list:  # neither a dataclass nor a pydantic model
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {
                field.name: _to_tree(getattr(value, field.name), active, depth)
                for field in dataclasses.fields(value)
            }
        if _is_pydantic_model(kind):
            return value.model_dump(mode="json")  # type: ignore[attr-defined]
    if isinstance(value, Mapping):
        tree: dict[str, object] = {}
        for key, item in value.items():
            tree[_key_to_text(key)] = _to_tree(item, active, depth)
        return tree
    if isinstance(value, list | tuple):
        return [_to_tree(item, active, depth) for item in value]
    if isinstance(value, set | frozenset):
        items = [_to_tree(item, active, depth) for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    raise PayloadError(
        f"a {type(value).__qualname__} cannot be encoded as JSON: use a dataclass, a pydantic "
        f"model or plain data, or configure another serializer"
    )


def _key_to_text(key: object) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return _key_to_text(key.value)
    if isinstance(key, bool | int | float | uuid.UUID | Decimal | date | time):
        text = _to_tree(key, set(), 0)
        return text if isinstance(text, str) else json.dumps(text)
    raise PayloadError(f"a dict key of type {type(key).__qualname__} cannot be stored in JSON")


def _fail(data: object, hint: object) -> PayloadError:
    shown = repr(data)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return PayloadError(f"{shown} does not fit the type {_hint_name(hint)}")


def _from_tree(data: object, hint: object) -> Any:
    """Rebuild a value of type ``hint`` from JSON data."""
    if hint is Any or hint is object or isinstance(hint, typing.TypeVar):
        return data
    if hint is None or hint is type(None):
        if data is not None:
            raise _fail(data, hint)
        return None
    if isinstance(hint, type):  # a class (the common case): no origin to look up
        return _from_class(data, hint)
    origin = typing.get_origin(hint)
    arguments = typing.get_args(hint)
    if origin is typing.Annotated:
        return _from_tree(data, arguments[0])
    if origin is typing.Union or origin is types.UnionType:
        return _from_union(data, hint, arguments)
    if origin is typing.Literal:
        if data not in arguments:
            raise _fail(data, hint)
        return data
    if origin is not None:
        return _from_generic(data, hint, origin, arguments)
    return data


def _from_union(data: object, hint: object, arguments: tuple[object, ...]) -> Any:
    if data is None and type(None) in arguments:
        return None
    for option in arguments:
        if option is type(None):
            continue
        try:
            candidate = _from_tree(data, option)
        except (PayloadError, ValueError, TypeError, KeyError):
            continue
        if _to_tree(candidate, set(), 0) == data:
            return candidate
    raise _fail(data, hint)


def _from_generic(data: object, hint: object, origin: object, arguments: tuple[object, ...]) -> Any:
    if origin in (list, typing.Sequence, typing.MutableSequence) or origin is _abc_sequence():
        item = arguments[0] if arguments else Any
        return [_from_tree(element, item) for element in _as_list(data, hint)]
    if origin is tuple:
        elements = _as_list(data, hint)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            return tuple(_from_tree(element, arguments[0]) for element in elements)
        if arguments == ((),):
            arguments = ()
        if arguments and len(arguments) != len(elements):
            raise _fail(data, hint)
        return tuple(
            _from_tree(element, arguments[index] if arguments else Any)
            for index, element in enumerate(elements)
        )
    if origin in (set, frozenset, typing.AbstractSet) or origin is _abc_set():
        item = arguments[0] if arguments else Any
        built = {_from_tree(element, item) for element in _as_list(data, hint)}
        return frozenset(built) if origin is frozenset else built
    if origin in (dict, typing.Mapping, typing.MutableMapping) or origin is _abc_mapping():
        if not isinstance(data, dict):
            raise _fail(data, hint)
        key_hint, value_hint = arguments if len(arguments) == 2 else (Any, Any)
        return {
            _key_from_text(key, key_hint): _from_tree(value, value_hint)
            for key, value in data.items()
        }
    if isinstance(origin, type):
        return _from_class(data, origin)
    return data


def _abc_sequence() -> object:
    import collections.abc

    return collections.abc.Sequence


def _abc_set() -> object:
    import collections.abc

    return collections.abc.Set


def _abc_mapping() -> object:
    import collections.abc

    return collections.abc.Mapping


def _as_list(data: object, hint: object) -> list[object]:
    if not isinstance(data, list):
        raise _fail(data, hint)
    return data


def _key_from_text(key: str, hint: object) -> object:
    if hint is Any or hint is str or hint is object:
        return key
    if hint is int:
        return int(key)
    if hint is float:
        return float(key)
    if hint is bool:
        if key not in ("true", "false"):
            raise _fail(key, hint)
        return key == "true"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        for member in hint:
            if _key_to_text(member) == key:
                return member
        raise _fail(key, hint)
    return _from_tree(key, hint)


def _from_class(data: object, hint: type) -> Any:
    try:
        decode = _class_decoder(hint)
    except TypeError:  # a class whose metaclass makes it unhashable
        decode = _choose_class_decoder(hint)
    return decode(data, hint)


@functools.lru_cache(maxsize=1024)
def _class_decoder(hint: type) -> Callable[[Any, Any], Any]:
    """Which rule decodes values of class ``hint`` depends on the class alone: chosen
    once per class, not by a dozen tests at every decode."""
    return _choose_class_decoder(hint)


def _choose_class_decoder(hint: type) -> Callable[[Any, Any], Any]:
    simple = _SIMPLE_DECODERS.get(hint)
    if simple is not None:
        return simple
    if issubclass(hint, enum.Enum):
        return _to_enum
    if issubclass(hint, PurePath):
        return _to_path
    if dataclasses.is_dataclass(hint):
        return _from_dataclass
    if _is_pydantic_model(hint):
        return _to_pydantic_model
    if typing.is_typeddict(hint):
        return _from_typed_dict
    if issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return _to_named_tuple
    return _to_instance


def _to_bool(data: object, hint: type) -> Any:
    if not isinstance(data, bool):
        raise _fail(data, hint)
    return data


def _to_int(data: object, hint: type) -> Any:
    if isinstance(data, bool) or not isinstance(data, int):
        raise _fail(data, hint)
    return data


def _to_float(data: object, hint: type) -> Any:
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise _fail(data, hint)
    return float(data)


def _to_str(data: object, hint: type) -> Any:
    if not isinstance(data, str):
        raise _fail(data, hint)
    return data


def _to_enum(data: object, hint: type) -> Any:
    try:
        return hint(data)
    except ValueError:
        raise _fail(data, hint) from None


def _to_iso_time(data: object, hint: Any) -> Any:
    if not isinstance(data, str):
        raise _fail(data, hint)
    return hint.fromisoformat(data)


def _to_timedelta(data: object, hint: type) -> Any:
    if isinstance(data, bool) or not isinstance(data, int):
        raise _fail(data, hint)
    return timedelta(microseconds=data)


def _to_uuid(data: object, hint: type) -> Any:
    return uuid.UUID(str(data))


def _to_decimal(data: object, hint: type) -> Any:
    try:
        return Decimal(str(data))
    except InvalidOperation:
        raise _fail(data, hint) from None


def _to_bytes(data: object, hint: type) -> Any:
    if not isinstance(data, str):
        raise _fail(data, hint)
    return hint(base64.b64decode(data.encode("ascii"), validate=True))


def _to_path(data: object, hint: type) -> Any:
    return hint(str(data))


def _to_pydantic_model(data: object, hint: Any) -> Any:
    return hint.model_validate(data)


def _to_named_tuple(data: object, hint: Any) -> Any:
    field_hints = _field_hints(hint)
    elements = _as_list(data, hint)
    return hint(
        *(
            _from_tree(e, field_hints.get(n, Any))
            for n, e in zip(hint._fields, elements, strict=False)
        )
    )


def _to_collection(data: object, hint: type) -> Any:
    return hint(_as_list(data, hint))


def _to_instance(data: object, hint: type) -> Any:
    if isinstance(data, hint):
        return data
    raise _fail(data, hint)


_SIMPLE_DECODERS: dict[type, Callable[[Any, Any], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    datetime: _to_iso_time,
    date: _to_iso_time,
    time: _to_iso_time,
    timedelta: _to_timedelta,
    uuid.UUID: _to_uuid,
    Decimal: _to_decimal,
    bytes: _to_bytes,
    bytearray: _to_bytes,
    list: _to_collection,
    tuple: _to_collection,
    set: _to_collection,
    frozenset: _to_collection,
    dict: _to_instance,
}


def _from_dataclass(data: object, hint: type) -> Any:
    if not isinstance(data, dict):
        raise _fail(data, hint)
    field_hints = _field_hints(hint)
    arguments: dict[str, object] = {}
    for field in dataclasses.fields(hint):
        if not field.init:
            continue
        if field.name in data:
            arguments[field.name] = _from_tree(data[field.name], field_hints.get(field.name, Any))
    try:
        return hint(**arguments)
    except TypeError as error:
        raise PayloadError(f"cannot rebuild {hint.__qualname__}: {error}") from None


def _from_typed_dict(data: object, hint: type) -> Any:
    if not isinstance(data, dict):
        raise _fail(data, hint)
    field_hints = _field_hints(hint)
    return {key: _from_tree(value, field_hints.get(key, Any)) for key, value in data.items()}
