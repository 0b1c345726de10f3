"""Durations are checked in one place (durably.environment.to_micros), and retry
delays stay storable whatever the policy's numbers."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from durably import RetryPolicy
from durably.environment import MAX_DURATION, to_micros
from durably.identifiers import validate_identifier


def test_durations_up_to_100_years_either_way_are_exact_microseconds() -> None:
    """timedelta and seconds convert exactly; the limit itself is accepted."""
    assert to_micros(timedelta(seconds=1, microseconds=5)) == 1_000_005
    assert to_micros(1.5) == 1_500_000
    assert to_micros(-2) == -2_000_000
    assert to_micros(MAX_DURATION) == MAX_DURATION.days * 86_400 * 1_000_000
    assert to_micros(-MAX_DURATION) == -to_micros(MAX_DURATION)


@pytest.mark.parametrize(
    ("duration", "error", "says"),
    [
        (math.nan, ValueError, "finite"),
        (math.inf, ValueError, "finite"),
        (MAX_DURATION + timedelta(microseconds=1), ValueError, "100 years"),
        (-MAX_DURATION - timedelta(microseconds=1), ValueError, "100 years"),
        (10**30, ValueError, "100 years"),
        (True, TypeError, "timedelta or a number of seconds"),
        ("30", TypeError, "timedelta or a number of seconds"),
        (None, TypeError, "timedelta or a number of seconds"),
    ],
)
def test_impossible_durations_name_the_parameter(
    duration: object, error: type[Exception], says: str
) -> None:
    """Each refusal names the parameter it was given for and what is allowed."""
    with pytest.raises(error, match=f"^sleep duration must .*{says}"):
        to_micros(duration, "sleep duration")  # type: ignore[arg-type]


@pytest.mark.parametrize("multiplier", [2, 1e10, 1e308, 10**300])
def test_a_large_multiplier_is_capped_never_overflows(multiplier: float) -> None:
    """Delays grow to max_delay and stay there, for thousands of attempts."""
    policy = RetryPolicy.exponential(
        5000, initial_delay=1, multiplier=multiplier, max_delay=timedelta(hours=1)
    )
    delays = [policy.delay_after(attempt, 0.5) for attempt in (1, 2, 100, 4999)]
    assert delays[0] == 1_000_000
    assert delays[-1] == 3_600_000_000


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (lambda: RetryPolicy.exponential(3, multiplier=math.nan), "multiplier"),
        (lambda: RetryPolicy.exponential(3, jitter=math.inf), "jitter"),
        (lambda: RetryPolicy.fixed(3, timedelta(days=40_000)), "delay"),
        (lambda: RetryPolicy.exponential(3, initial_delay="1"), "initial_delay"),
        (lambda: RetryPolicy(kind="fixed", initial_delay_ms=math.inf), "initial_delay_ms"),
        (lambda: RetryPolicy(kind="fixed", max_delay_ms=-1), "max_delay_ms"),
    ],
)
def test_retry_parameters_that_cannot_work_are_named(build: object, parameter: str) -> None:
    """ValueError naming the parameter, when the policy is built."""
    with pytest.raises(ValueError, match=f"^{parameter} must"):
        build()  # type: ignore[operator]


def test_a_lone_surrogate_in_a_name_is_refused_with_its_position() -> None:
    """Not a UnicodeEncodeError from the driver later: a ValueError now."""
    with pytest.raises(
        ValueError, match=r"workflow_id must be valid Unicode.*U\+D800 at position 4"
    ):
        validate_identifier("half\ud800pair", "workflow_id")
