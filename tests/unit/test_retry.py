"""Retry policies: the seed's delay formula, classification and validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durably.retry import DEFAULT_COMPENSATION_RETRY, RetryPolicy

MS = 1_000


def test_exponential_delays_follow_the_seed_example() -> None:
    """initial 100 ms, x2: 100, 200, 400, 800 ms."""
    policy = RetryPolicy.exponential(5, initial_delay=0.1)
    assert [policy.delay_after(n, 0.5) for n in range(1, 5)] == [
        100 * MS,
        200 * MS,
        400 * MS,
        800 * MS,
    ]


def test_exponential_delay_is_capped_by_max_delay() -> None:
    """The cap applies before jitter."""
    policy = RetryPolicy.exponential(10, initial_delay=1, max_delay=timedelta(seconds=3))
    assert policy.delay_after(5, 0.5) == 3_000 * MS


def test_fixed_delay_is_constant() -> None:
    """fixed waits the same delay after every attempt."""
    policy = RetryPolicy.fixed(4, timedelta(milliseconds=250))
    assert {policy.delay_after(n, 0.0) for n in range(1, 4)} == {250 * MS}


def test_jitter_spreads_within_bounds() -> None:
    """jitter 0.1 gives delays between 90 % and 110 % of the base."""
    policy = RetryPolicy.fixed(3, 1, jitter=0.1)
    assert policy.delay_after(1, 0.0) == 900 * MS
    assert policy.delay_after(1, 0.5) == 1000 * MS
    assert policy.delay_after(1, 0.999999) == 1100 * MS


def test_none_never_retries() -> None:
    """The default policy tries once."""
    assert not RetryPolicy.none().should_retry(1, ValueError())


def test_attempts_are_bounded_by_max_attempts() -> None:
    """max_attempts counts the first attempt."""
    policy = RetryPolicy.fixed(3, 0)
    assert [policy.should_retry(n, ValueError()) for n in (1, 2, 3)] == [True, True, False]


def test_dont_retry_on_wins_over_retry_on() -> None:
    """A non-retryable error stops retries even when it also matches retry_on."""
    policy = RetryPolicy.fixed(5, 0, retry_on=(OSError,), dont_retry_on=(PermissionError,))
    assert policy.should_retry(1, ConnectionError())
    assert not policy.should_retry(1, PermissionError())
    assert not policy.should_retry(1, ValueError())


def test_predicate_filters_retries() -> None:
    """retry_if must also accept the error."""
    policy = RetryPolicy.fixed(5, 0, retry_if=lambda error: "transient" in str(error))
    assert policy.should_retry(1, RuntimeError("transient glitch"))
    assert not policy.should_retry(1, RuntimeError("bad input"))


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (lambda: RetryPolicy.fixed(0, 1), "max_attempts"),
        (lambda: RetryPolicy.fixed(2.5, 1), "max_attempts"),  # type: ignore[arg-type]
        (lambda: RetryPolicy.fixed(2, -1), "delay"),
        (lambda: RetryPolicy.exponential(2, multiplier=0.5), "multiplier"),
        (lambda: RetryPolicy.exponential(2, jitter=1.5), "jitter"),
        (lambda: RetryPolicy.exponential(2, initial_delay=-0.1), "initial_delay"),
        (lambda: RetryPolicy.fixed(2, 1, retry_on=(int,)), "retry_on"),  # type: ignore[arg-type]
    ],
)
def test_invalid_parameters_are_refused_by_name(build: object, parameter: str) -> None:
    """Each bad parameter gets a ValueError naming it."""
    with pytest.raises(ValueError, match=parameter):
        build()  # type: ignore[operator]


def test_json_round_trip_and_unknown_type() -> None:
    """The seed's JSON form round-trips; an unknown type is refused."""
    for policy in (
        RetryPolicy.none(),
        RetryPolicy.fixed(3, 0.5),
        RetryPolicy.exponential(4, initial_delay=0.2, multiplier=3, max_delay=9, jitter=0.2),
    ):
        assert RetryPolicy.from_json(policy.to_json()) == policy
    assert RetryPolicy.exponential(2).to_json()["jitter"] == 0.0
    with pytest.raises(ValueError, match="unknown retry policy type"):
        RetryPolicy.from_json({"type": "linear"})


def test_compensations_retry_by_default() -> None:
    """The default compensation policy retries."""
    assert DEFAULT_COMPENSATION_RETRY.max_attempts == 5


policies = st.builds(
    lambda attempts, initial, multiplier, cap, jitter: RetryPolicy.exponential(
        attempts, initial_delay=initial, multiplier=multiplier, max_delay=cap, jitter=jitter
    ),
    st.integers(1, 20),
    st.floats(0, 60),
    st.floats(1, 5),
    st.floats(0, 600),
    st.floats(0, 1),
)


@given(policies, st.integers(1, 30), st.floats(0, 1, exclude_max=True))
def test_delays_are_never_negative_and_respect_the_jittered_cap(
    policy: RetryPolicy, attempt: int, random_value: float
) -> None:
    """0 <= delay <= max_delay x (1 + jitter) (plus millisecond rounding)."""
    delay = policy.delay_after(attempt, random_value)
    assert delay >= 0
    assert delay <= policy.max_delay_ms * (1 + policy.jitter) * MS + MS


@given(st.integers(1, 20), st.floats(0, 60), st.floats(1, 5), st.floats(0, 600), st.integers(1, 29))
def test_delays_without_jitter_never_decrease(
    attempts: int, initial: float, multiplier: float, cap: float, attempt: int
) -> None:
    """Without jitter, each delay is at least the previous one and at most the cap."""
    policy = RetryPolicy.exponential(
        attempts, initial_delay=initial, multiplier=multiplier, max_delay=cap
    )
    assert policy.delay_after(attempt, 0.3) <= policy.delay_after(attempt + 1, 0.9)
    assert policy.delay_after(attempt, 0.3) <= round(policy.max_delay_ms) * MS
