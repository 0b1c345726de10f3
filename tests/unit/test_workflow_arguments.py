"""Binding a workflow's call arguments to names, and back: the fast path for plain
signatures gives what ``inspect`` gives."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from durably.registry import Registry


async def plain(ctx: object, a: int, b: str = "b") -> None: ...


async def keyword_only(ctx: object, a: int, *, b: str = "b") -> None: ...


async def positional_only(ctx: object, a: int, /, b: str = "b") -> None: ...


async def variadic(ctx: object, a: int, *rest: int, **named: str) -> None: ...


CALLS: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
    (plain, (1, "x"), {}),
    (plain, (1,), {}),
    (plain, (), {"a": 1, "b": "x"}),
    (plain, (), {"b": "x", "a": 1}),
    (plain, (1,), {"b": "x"}),
    (keyword_only, (1,), {"b": "x"}),
    (keyword_only, (1,), {}),
    (positional_only, (1, "x"), {}),
    (variadic, (1, 2, 3), {"c": "x"}),
    (variadic, (1,), {}),
]


@pytest.mark.parametrize(("fn", "args", "kwargs"), CALLS)
def test_arguments_bind_and_rebuild_as_inspect_does(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """bind_input gives the names inspect binds (the context left out), and
    call_arguments gives back a call that binds the same way, whatever the order of
    the names it is given."""
    definition = Registry().register_workflow(fn)
    expected = dict(inspect.signature(fn).bind(None, *args, **kwargs).arguments)
    del expected["ctx"]
    arguments = definition.bind_input(args, kwargs)
    assert arguments == expected
    for given in (arguments, dict(reversed(arguments.items()))):
        again, again_kwargs = definition.call_arguments(given)
        rebound = inspect.signature(fn).bind(None, *again, **again_kwargs).arguments
        assert {k: v for k, v in rebound.items() if k != "ctx"} == expected


def test_only_a_signature_of_plain_parameters_takes_the_fast_path() -> None:
    """Parameters that may each be given by position or by name are plain; any other
    kind sends binding through inspect."""
    assert Registry().register_workflow(plain).plain_names == ("a", "b")
    for fn in (keyword_only, positional_only, variadic):
        assert Registry().register_workflow(fn).plain_names is None


def test_a_bad_call_is_refused_on_either_path() -> None:
    """Too many or unknown arguments raise TypeError naming the workflow."""
    definition = Registry().register_workflow(plain)
    with pytest.raises(TypeError, match=r"workflow 'plain'.*too many"):
        definition.bind_input((1, "x", 3), {})
    with pytest.raises(TypeError, match=r"workflow 'plain'.*unexpected keyword"):
        definition.bind_input((1,), {"c": 3})
