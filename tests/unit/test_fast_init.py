"""fast_init: the same records as the __init__ dataclasses writes, made faster."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from durably._fast_init import fast_init
from durably.models import (
    OperationKind,
    OperationRecord,
    OperationStatus,
    WorkflowRecord,
    WorkflowStatus,
)
from durably.step_call import StepInfo


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Plain:
    name: str
    count: int = 0
    note: str | None = None


@fast_init
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fast:
    name: str
    count: int = 0
    note: str | None = None


@pytest.mark.parametrize(
    "arguments", [{"name": "a"}, {"name": "b", "count": 3}, {"name": "c", "note": "n"}]
)
def test_the_same_values_defaults_equality_and_hash(arguments: dict[str, object]) -> None:
    plain, fast = Plain(**arguments), Fast(**arguments)  # type: ignore[arg-type]
    assert dataclasses.asdict(fast) == dataclasses.asdict(plain)
    assert fast == Fast(**arguments)  # type: ignore[arg-type]
    assert hash(fast) == hash(Fast(**arguments))  # type: ignore[arg-type]
    assert repr(fast) == repr(plain).replace("Plain", "Fast")


def test_the_same_signature_and_errors_for_missing_or_unknown_arguments() -> None:
    assert str(inspect.signature(Fast)) == str(inspect.signature(Plain))
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'name'"):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'other'"):
        Fast(name="a", other=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="positional"):
        Fast("a")  # type: ignore[call-arg]


def test_records_stay_frozen() -> None:
    fast = Fast(name="a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.count = 2  # type: ignore[misc]
    assert dataclasses.replace(fast, count=2) == Fast(name="a", count=2)


def test_the_engine_records_use_it_and_keep_their_fields() -> None:
    operation = OperationRecord(
        workflow_id="w", seq=1, kind=OperationKind.STEP, name="s", status=OperationStatus.WAITING
    )
    assert (operation.serializer, operation.attempts, operation.result) == ("json", 1, None)
    info = StepInfo(workflow_id="w", seq=1, name="s", attempt=2)
    assert info.idempotency_key == "w:1"
    record = WorkflowRecord(workflow_id="w", workflow_name="n", status=WorkflowStatus.RUNNING)
    assert (record.fence, record.priority, record.owner) == (0, 0, None)
    for cls in (OperationRecord, StepInfo, WorkflowRecord):
        assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
        assert "_set_" in " ".join(cls.__init__.__code__.co_names)


def test_refuses_classes_it_cannot_build() -> None:
    @dataclasses.dataclass(slots=True, kw_only=True)
    class Mutable:
        name: str

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class WithFactory:
        items: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class WithPostInit:
        name: str

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class Positional:
        name: str

    for cls in (Mutable, WithFactory, WithPostInit, Positional):
        with pytest.raises(TypeError, match="fast_init"):
            fast_init(cls)
