"""A faster ``__init__`` for the frozen, slotted dataclasses made on every step.

The ``__init__`` that :mod:`dataclasses` writes for a frozen class sets each field
with ``object.__setattr__(self, name, value)``: a global lookup, an attribute lookup
and a generic call per field. Setting each field through its own slot descriptor
does the same in about half the time (on a 2-core VM: an ``OperationRecord``, made at
every step, in 3.0 µs instead of 5.3 µs; a ``WorkflowRecord`` in 4.6 µs instead of
7.6 µs). The class stays frozen: assigning to a field still raises
:class:`dataclasses.FrozenInstanceError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def fast_init(cls: C) -> C:
    """Replace the ``__init__`` of ``cls`` (a frozen, slotted, keyword-only dataclass
    whose fields have plain defaults) with one that sets each slot directly.

    Same signature, defaults and behaviour; only faster. Apply it after ``@dataclass``.

    Raises:
        TypeError: ``cls`` is not such a dataclass (checked once, at import).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__qualname__}: fast_init needs a frozen, slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__qualname__}: fast_init does not call __post_init__")
    namespace: dict[str, Any] = {}
    arguments: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):
        name = field.name
        if not name.isidentifier():  # the generated source is made of these names only
            raise TypeError(f"{cls.__qualname__}: field name {name!r} is not an identifier")
        if not field.kw_only or not field.init or field.default_factory is not dataclasses.MISSING:
            raise TypeError(
                f"{cls.__qualname__}.{name}: fast_init needs keyword-only fields with "
                f"plain defaults"
            )
        if field.default is dataclasses.MISSING:
            arguments.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            arguments.append(f"{name}=_default_{name}")
        namespace[f"_set_{name}"] = cls.__dict__[name].__set__
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, *, {', '.join(arguments)}):\n" + "\n".join(body) + "\n"
    # The source is made of this class's own field names (identifiers), nothing else.
    exec(source, namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    generated = cls.__dict__["__init__"]  # the one @dataclass wrote
    init.__doc__ = generated.__doc__
    init.__annotations__ = dict(generated.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning to __init__)
    return cls
