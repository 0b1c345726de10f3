"""Hypothesis-driven bad input through the public API: names and ids, payloads (deeply
nested, huge, NaN, non-string keys, unencodable objects), retry parameters and
durations.

The contract checked for every example: the call either works (and what was stored
comes back exactly, with its type) or raises, at once, an error of the documented kind
whose message names what is wrong; and a refused call leaves the store unchanged.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import enum
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_faults import rows

from durably import (
    ConfigurationError,
    Context,
    Durably,
    MemoryStore,
    PayloadError,
    RetryPolicy,
    SqliteStore,
    WorkflowConflictError,
    WorkflowFailedError,
    WorkflowFinishedError,
    WorkflowStatus,
)
from durably.identifiers import validate_signal_name
from durably.step_call import workflow_body_context
from durably.testing import FakeClock, TestDurably

LIMIT = 64 * 1024
T = TypeVar("T")


async def outcome(call: Callable[[], Awaitable[T]]) -> tuple[T | None, Exception | None]:
    """What awaiting ``call()`` gives, or the exception it (or the call itself) raised;
    checked outside except blocks, so that a failed check is never mistaken for the
    error under test."""
    try:
        return await call(), None
    except Exception as error:
        return None, error


def outcome_of(call: Callable[[], T]) -> tuple[T | None, Exception | None]:
    """:func:`outcome` for a plain call."""
    try:
        return call(), None
    except Exception as error:
        return None, error


async def explore(check: Callable[..., Awaitable[None]], *strategies: Any, examples: int) -> int:
    """Run ``check`` on Hypothesis examples, each on this test's event loop; return how
    many examples were tried."""
    loop = asyncio.get_running_loop()
    tried = 0

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.tuples(*strategies))
    def run(values: tuple[Any, ...]) -> None:
        nonlocal tried
        tried += 1
        asyncio.run_coroutine_threadsafe(check(*values), loop).result(timeout=60)

    await asyncio.to_thread(run)
    return tried


# -- payloads -------------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    """An object no serializer can store without pickle."""


TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),  # NaN and infinities included
    TEXT,
    st.binary(max_size=20),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
    st.just(Colour.RED),
    st.builds(Point, st.integers(), st.integers()),
    st.builds(Opaque),
    st.just(lambda: None),
    st.just(iter([])),
)
KEYS = st.one_of(TEXT, st.integers(), st.booleans(), st.none(), st.tuples(st.integers()))
PAYLOADS = st.one_of(
    st.recursive(
        LEAVES,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.tuples(children, children),
            st.frozensets(st.integers(), max_size=3),
            st.dictionaries(KEYS, children, max_size=4),
        ),
        max_leaves=20,
    ),
    st.integers(min_value=150, max_value=400).map(lambda depth: nested(depth)),
    st.integers(min_value=LIMIT - 64, max_value=LIMIT + 64).map(lambda size: "x" * size),
)


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def same(left: object, right: object) -> bool:
    """Equal, with the same types all the way down (NaN is never stored)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        assert isinstance(right, dict)
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list | tuple):
        assert isinstance(right, list | tuple)
        return len(left) == len(right) and all(map(same, left, right))
    return left == right


@pytest.fixture
async def sqlite_app(tmp_path: Path) -> Any:
    """An open app on a SQLite file with a 64 KiB payload limit and an echo workflow."""
    app = Durably(SqliteStore(tmp_path / "fuzz.db"), max_payload_bytes=LIMIT)

    @app.workflow(name="echo")
    async def echo(ctx: Context, payload: Any) -> Any:
        return payload

    @app.workflow(name="wait")
    async def wait(ctx: Context) -> Any:
        return await ctx.wait_signal("payload")

    async with app:
        yield app, tmp_path / "fuzz.db"


async def test_payloads_round_trip_exactly_or_are_refused_clearly(
    sqlite_app: tuple[Durably, Path], record_property: Callable[[str, object], None]
) -> None:
    """An accepted payload comes back equal and of the same type (the workflow returns
    its input); a refused one raises PayloadError at start() naming the input and why,
    and nothing is stored."""
    app, database = sqlite_app

    async def check(payload: object) -> None:
        workflow_id = f"echo-{uuid.uuid4()}"
        before = rows(database)
        handle, error = await outcome(lambda: app.start("echo", payload, workflow_id=workflow_id))
        if handle is None:
            assert isinstance(error, PayloadError), error
            assert f"the input of workflow {workflow_id!r}" in str(error), error
            assert rows(database) == before, "a refused start changed the store"
            return
        assert same(await handle.result(), payload), payload

    tried = await explore(check, PAYLOADS, examples=120)
    record_property("bad_inputs", tried)


async def test_signal_payloads_are_stored_faithfully_or_refused_clearly(
    sqlite_app: tuple[Durably, Path], record_property: Callable[[str, object], None]
) -> None:
    """A signal payload is refused (PayloadError naming the signal, inbox unchanged)
    or delivered as the JSON it was encoded to."""
    app, database = sqlite_app

    async def check(payload: object) -> None:
        handle = await app.start("wait", workflow_id=f"wait-{uuid.uuid4()}")
        before = rows(database)["signals"]
        _, error = await outcome(lambda: app.send_signal(handle.workflow_id, "payload", payload))
        if error is not None:
            assert isinstance(error, PayloadError), error
            assert "signal 'payload'" in str(error), error
            assert rows(database)["signals"] == before, "a refused signal changed the inbox"
            await app.send_signal(handle.workflow_id, "payload", None)
        received = await handle.result()
        (stored,) = await app.store.list_signals(handle.workflow_id)
        assert stored.consumed_seq is not None
        assert same(received, json.loads(stored.payload or "null"))

    tried = await explore(check, PAYLOADS, examples=60)
    record_property("bad_inputs", tried)


# -- names and ids ----------------------------------------------------------------------------

NAMES = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=300),
    st.sampled_from(["", " ", " padded", "tab\there", "nul\x00", "x" * 257, "\x7f"]),
    st.none(),
    st.integers(),
    st.binary(max_size=5),
)


def refused_clearly(error: BaseException | None, what: str) -> bool:
    return isinstance(error, ValueError | TypeError) and what in str(error)


async def test_ids_and_names_round_trip_or_are_refused_clearly(
    sqlite_app: tuple[Durably, Path], record_property: Callable[[str, object], None]
) -> None:
    """Workflow ids, step names, signal names, dedup keys and sleep names: valid ones
    round-trip; invalid ones raise ValueError/TypeError naming the parameter, and a
    refused start or signal stores nothing, nor does a refused step or sleep name
    (the workflow's history holds the accepted operations only)."""
    app, database = sqlite_app
    names: dict[str, str] = {}
    accepted: dict[str, list[str]] = {}

    @app.workflow(name="named")
    async def named(ctx: Context, key: str) -> str:
        step, sleep = names[f"step:{key}"], names[f"sleep:{key}"]
        accepted[key] = []
        _, error = await outcome(lambda: ctx.step(step, lambda: "ran"))
        assert error is None or refused_clearly(error, "step name"), error
        accepted[key] += [step] if error is None else []
        _, error = await outcome(lambda: ctx.sleep(sleep, 0))
        assert error is None or refused_clearly(error, "sleep name"), error
        accepted[key] += [sleep] if error is None else []
        return "done"

    async def check(workflow_id: Any, step: Any, signal: Any, dedup_key: Any, sleep: Any) -> None:
        before = rows(database)
        key = str(uuid.uuid4())
        names[f"step:{key}"], names[f"sleep:{key}"] = step, sleep
        handle, error = await outcome(lambda: app.start(named, key, workflow_id=workflow_id))
        if handle is None:
            # Refused: an invalid id, or an id drawn twice (with another input).
            assert refused_clearly(error, "workflow_id") or isinstance(
                error, WorkflowConflictError
            ), error
            assert rows(database) == before
            return
        assert await handle.result() == "done"
        # A refused step or sleep name raises at the call, in the body (which goes
        # on): it records nothing and takes no operation number.
        history = await app.store.load_history(handle.workflow_id)
        assert [op.name for _, op in sorted(history.operations.items())] == accepted[key]
        assert sorted(history.operations) == list(range(len(accepted[key])))
        assert history.attempts == {}
        if workflow_id is not None:  # None asks for a generated id
            assert (await app.get_workflow(workflow_id)).workflow_id == workflow_id
        before = rows(database)
        _, error = await outcome(
            lambda: app.send_signal(handle.workflow_id, signal, 1, dedup_key=dedup_key)
        )
        # The workflow has finished, so even a valid signal is refused, clearly.
        assert (
            refused_clearly(error, "signal name")
            or refused_clearly(error, "dedup_key")
            or isinstance(error, WorkflowFinishedError)
        ), error
        assert rows(database) == before

    tried = await explore(check, NAMES, NAMES, NAMES, NAMES, NAMES, examples=120)
    record_property("bad_inputs", tried)


def is_valid_signal_name(name: str) -> bool:
    try:
        validate_signal_name(name)
    except ValueError:
        return False
    return True


SIGNAL_NAMES = st.one_of(
    st.sampled_from(
        [
            "o'brien",
            "'; DROP TABLE signals; --",
            "%s",
            "%(name)s",
            "?",
            ":name",
            "a b",
            "名前 ✓",
            "emoji 🎉",
            "__durably",
            "x.__durably.y",
            "z" * 256,
        ]
    ),
    st.text(
        alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=256
    ).filter(is_valid_signal_name),
)
#: When the signal is sent: while the workflow runs a step before its wait (it waits
#: in the inbox), while the workflow waits for it in memory, or once it suspended.
SIGNAL_MOMENTS = st.sampled_from(["before-the-wait", "waiting", "suspended"])
INLINE_WAIT = timedelta(minutes=1)


class BodyWaits(FakeClock):
    """A fake clock that tells when a workflow body starts waiting on it (a signal
    wait in memory: its timer sleeps on the clock in the body's context)."""

    def __init__(self) -> None:
        super().__init__()
        self.body_waits = asyncio.Event()

    async def sleep_until(self, moment: int) -> None:
        if workflow_body_context() is not None:
            self.body_waits.set()
        await super().sleep_until(moment)


async def suspended_now(app: Durably, workflow_id: str) -> None:
    async for info in app.watch(workflow_id):
        if info.status is WorkflowStatus.SUSPENDED:
            return
    raise AssertionError(f"{workflow_id} finished instead of suspending")


async def test_valid_signal_names_reach_the_workflow_waiting_for_them(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Any valid signal name (quotes, placeholders, SQL, any script, 256 characters),
    sent before the wait, during a wait in memory (RUNNING) or to the suspended
    workflow: the workflow waiting for that name gets the payload; the inbox and the
    history hold the name exactly, consumed once."""
    clock = BodyWaits()
    app = Durably(SqliteStore(tmp_path / "signals.db"), clock=clock, inline_wait=INLINE_WAIT)
    signal_names: dict[str, str] = {}
    gates: dict[str, asyncio.Event] = {}
    entered: dict[str, asyncio.Event] = {}

    async def hold(key: str) -> None:
        entered[key].set()
        await gates[key].wait()

    @app.workflow(name="listens")
    async def listens(ctx: Context, key: str) -> Any:
        if key in gates:
            await ctx.step("hold", hold, key)
        return await ctx.wait_signal(signal_names[key])

    async def check(name: str, moment: str) -> None:
        key = str(uuid.uuid4())
        signal_names[key] = name
        if moment == "before-the-wait":
            gates[key], entered[key] = asyncio.Event(), asyncio.Event()
        clock.body_waits.clear()
        handle = await app.start(listens, key, workflow_id=key)
        if moment == "before-the-wait":
            await entered[key].wait()
        else:
            await clock.body_waits.wait()
        if moment == "suspended":
            clock.advance(INLINE_WAIT)
            await suspended_now(app, key)
        else:
            assert (await app.get_workflow(key)).status is WorkflowStatus.RUNNING
        assert await app.send_signal(key, name, {"sent as": name}) is True
        if moment == "before-the-wait":
            gates[key].set()
        assert await handle.result() == {"sent as": name}
        (stored,) = await app.store.list_signals(key)
        consumed_at = 0 if key not in gates else 1  # after the step "hold", if any
        assert (stored.name, stored.consumed_seq) == (name, consumed_at)
        history = await app.store.load_history(key)
        assert history.operations[consumed_at].name == name

    async with app:
        tried = await explore(check, SIGNAL_NAMES, SIGNAL_MOMENTS, examples=45)
    record_property("bad_inputs", tried)


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=10),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


async def test_a_step_result_comes_back_the_same_on_replay(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """A step returning any JSON value (any number, text in any script, nesting):
    its result is recorded once, and every replay of the workflow (here after each
    operation: ``always_replay``) gets back an equal value of the same types."""
    app = TestDurably(store=SqliteStore(tmp_path / "replay.db"), always_replay=True)
    values: dict[str, object] = {}
    runs: Counter[str] = Counter()
    seen: dict[str, list[object]] = {}

    async def produce(key: str) -> Any:
        runs[key] += 1
        return copy.deepcopy(values[key])

    @app.workflow(name="produces")
    async def produces(ctx: Context, key: str) -> Any:
        value = await ctx.step("produce", produce, key)
        seen.setdefault(key, []).append(value)
        return value

    async def check(value: object) -> None:
        key = str(uuid.uuid4())
        values[key] = value
        result = await app.run(produces, key, workflow_id=key)
        assert runs[key] == 1, "a recorded step ran again"
        assert len(seen[key]) >= 1
        assert all(same(replayed, value) for replayed in [*seen[key], result]), (value, seen)

    async with app:
        tried = await explore(check, JSON_VALUES, examples=60)
    record_property("bad_inputs", tried)


async def test_workflow_names_are_registered_or_refused_clearly(
    record_property: Callable[[str, object], None],
) -> None:
    """Registering a workflow under any name: it is registered under exactly that
    name, or ValueError/TypeError names the problem."""

    async def check(name: Any) -> None:
        app = Durably(MemoryStore())

        async def body(ctx: Context) -> None:
            return None

        _, error = outcome_of(lambda: app.workflow(name=name)(body))
        if error is not None:
            assert refused_clearly(error, "workflow name"), error
            return
        assert app.registry.names() == [name]

    # None asks for the default name (the function's); "", 0, b"" are refused (below).
    tried = await explore(check, NAMES.filter(lambda name: name is not None), examples=100)
    record_property("bad_inputs", tried)


@pytest.mark.parametrize("where", ["workflow", "step", "executor_id"])
def test_an_explicitly_empty_name_is_refused(where: str) -> None:
    """name="" is a mistake to report, not a request for the default name."""

    def body(ctx: Context) -> None:
        return None

    attempts = {
        "workflow": lambda: Durably(MemoryStore()).workflow(name="")(body),
        "step": lambda: Durably(MemoryStore()).step(name="")(body),
        "executor_id": lambda: Durably(MemoryStore(), executor_id=""),
    }
    with pytest.raises(ValueError, match="must not be empty"):
        attempts[where]()


# -- retry parameters -------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=10_000),
    st.floats(min_value=-1e6, max_value=1e6),
    st.booleans(),
    st.timedeltas(min_value=timedelta(days=-10), max_value=timedelta(days=1000)),
)
ANYTHING = st.one_of(NUMBERS, st.none(), st.text(max_size=5), st.just(float("nan")))
PARAMETERS = ("max_attempts", "delay", "initial_delay", "multiplier", "max_delay", "jitter")
#: Microseconds that a wake-up time can be from now and still be stored (int64).
STORABLE = 2**62


def usable(policy: RetryPolicy) -> None:
    """Every delay the policy can produce is a storable, non-negative number of µs."""
    for attempt in range(1, min(policy.max_attempts, 40)):
        for random_value in (0.0, 0.5, 0.999):
            delay = policy.delay_after(attempt, random_value)
            assert isinstance(delay, int) and 0 <= delay < STORABLE, (policy, attempt, delay)


async def test_retry_parameters_make_a_usable_policy_or_are_refused_clearly(
    record_property: Callable[[str, object], None],
) -> None:
    """fixed() and exponential() with any numbers: ValueError/TypeError naming the
    parameter, or a policy whose every delay can be stored and waited for."""

    async def check(
        kind: str, attempts: Any, first: Any, multiplier: Any, cap: Any, jitter: Any
    ) -> None:
        if kind == "fixed":
            policy, error = outcome_of(lambda: RetryPolicy.fixed(attempts, first, jitter=jitter))
        else:
            policy, error = outcome_of(
                lambda: RetryPolicy.exponential(
                    attempts,
                    initial_delay=first,
                    multiplier=multiplier,
                    max_delay=cap,
                    jitter=jitter,
                )
            )
        if policy is None:
            assert isinstance(error, ValueError | TypeError), error
            assert any(name in str(error) for name in PARAMETERS), error
            return
        usable(policy)

    numeric = st.one_of(
        st.integers(min_value=-5, max_value=10_000), st.floats(min_value=0, max_value=1e6)
    )
    tried = await explore(
        check,
        st.sampled_from(["fixed", "exponential"]),
        ANYTHING,
        ANYTHING,
        numeric,
        ANYTHING,
        st.floats(min_value=-1, max_value=2),
        examples=200,
    )
    record_property("bad_inputs", tried)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RetryPolicy.fixed(3, float("inf")),
        lambda: RetryPolicy.fixed(3, 1e300),
        lambda: RetryPolicy.exponential(3, initial_delay=0, multiplier=float("inf")),
        lambda: RetryPolicy.exponential(3, max_delay=float("inf"), multiplier=1e308),
        lambda: RetryPolicy.exponential(3, multiplier="2"),  # type: ignore[arg-type]
        lambda: RetryPolicy.fixed(3, 1, jitter=None),  # type: ignore[arg-type]
    ],
    ids=[
        "fixed-inf",
        "fixed-huge",
        "zero-times-inf",
        "huge-multiplier",
        "text-multiplier",
        "none-jitter",
    ],
)
def test_retry_policies_that_cannot_work_are_refused_when_built(
    make: Callable[[], RetryPolicy],
) -> None:
    """A policy is refused when built, with an error naming the parameter, if it
    could not produce a storable delay."""
    policy, error = outcome_of(make)
    if policy is None:
        assert isinstance(error, ValueError), error
        assert any(name in str(error) for name in PARAMETERS), error
        return
    usable(policy)


# -- durations ---------------------------------------------------------------------------------

DURATIONS = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.timedeltas(min_value=timedelta(days=-1000), max_value=timedelta(days=1000)),
    st.none(),
    st.text(max_size=3),
    st.booleans(),
)


def call_and_close(make: Callable[[], Coroutine[Any, Any, Any]]) -> BaseException | None:
    """Call a durable operation without awaiting it; return what the call raised."""
    try:
        operation = make()
    except Exception as error:
        return error
    operation.close()
    return None


# The probe calls durable operations only to see what the call itself raises, and
# never awaits them: their coroutines are dropped unstarted, on purpose.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_durations_are_accepted_or_refused_clearly(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """ctx.sleep, wait_signal(timeout=), ctx.step(timeout=), start(timeout=),
    result(timeout=) and the app's own durations: each value is accepted or refused
    at the call with TypeError/ValueError/ConfigurationError saying what a duration
    must be; a refused start() stores nothing."""
    durations: dict[str, Any] = {}
    clock = FakeClock()
    database = tmp_path / "durations.db"
    app = Durably(SqliteStore(database), clock=clock)

    @app.workflow(name="probe")
    async def probe(ctx: Context, key: str) -> list[str]:
        duration = durations[key]
        met: list[str] = []
        for make in (
            lambda: ctx.sleep("nap", duration),
            lambda: ctx.wait_signal("never", timeout=duration),
            lambda: ctx.step("work", lambda: None, timeout=duration),
        ):
            error = call_and_close(make)
            if error is not None:
                met.append(f"{type(error).__name__}: {error}")
        return met

    def clear(message: str) -> bool:
        return "duration" in message or "timedelta" in message or "seconds" in message

    async def check(duration: Any) -> None:
        key = str(uuid.uuid4())
        durations[key] = duration
        for error in await app.run(probe, key, workflow_id=key):
            assert error.startswith(("TypeError", "ValueError")) and clear(error), error
        before = rows(database)
        handle, error = await outcome(
            lambda: app.start(probe, key, workflow_id=f"timed-{key}", timeout=duration)
        )
        assert error is None or (isinstance(error, TypeError | ValueError) and clear(str(error)))
        if handle is None:
            assert rows(database) == before, "a refused start changed the store"
        else:
            _, error = await outcome(lambda: handle.result(timeout=duration))
            # A deadline of zero or less is a durable timeout, as asked.
            assert (
                error is None
                or isinstance(error, TimeoutError | WorkflowFailedError)
                or (isinstance(error, TypeError | ValueError) and clear(str(error)))
            ), error
        for option in ("lease_duration", "poll_interval", "inline_wait"):
            _, error = outcome_of(lambda: Durably(MemoryStore(), **{option: duration}))  # noqa: B023 - called at once
            assert error is None or (
                isinstance(error, TypeError | ValueError | ConfigurationError)
                and (option in str(error) or clear(str(error)))
            ), (option, error)

    async with app:
        tried = await explore(check, DURATIONS, examples=120)
    record_property("bad_inputs", tried)


@pytest.mark.parametrize(
    "duration",
    [float("nan"), float("inf"), -float("inf"), timedelta.max, 1e300, "30"],
    ids=["nan", "inf", "-inf", "timedelta.max", "1e300", "text"],
)
async def test_impossible_durations_are_refused_at_the_call(tmp_path: Path, duration: Any) -> None:
    """NaN, infinite and unstorably long durations are refused where they are given,
    with an error naming the parameter."""
    app = Durably(SqliteStore(tmp_path / "durations.db"), inline_wait=0)

    @app.workflow(name="sleepy")
    async def sleepy(ctx: Context) -> str:
        await ctx.sleep("nap", duration)
        return "woke"

    with pytest.raises((ValueError, TypeError), match="lease_duration"):
        Durably(MemoryStore(), lease_duration=duration)
    async with app:
        with pytest.raises(WorkflowFailedError) as failed:
            await app.run(sleepy)
    assert failed.value.error_type in ("ValueError", "TypeError"), failed.value
    assert "sleep" in (failed.value.error_message or ""), failed.value


@pytest.mark.parametrize("where", ["workflow_id", "payload"])
async def test_unencodable_text_is_refused_clearly(
    sqlite_app: tuple[Durably, Path], where: str
) -> None:
    """Text that cannot be stored as UTF-8 is refused before the store sees it."""
    app, database = sqlite_app
    before = rows(database)
    bad = "half\ud800pair"
    start = (
        app.start("echo", 1, workflow_id=bad) if where == "workflow_id" else app.start("echo", bad)
    )
    with pytest.raises((ValueError, PayloadError)) as refused:
        await start
    assert not isinstance(refused.value, UnicodeError), refused.value
    assert rows(database) == before
