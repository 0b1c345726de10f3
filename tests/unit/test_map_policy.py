"""ctx.map's completion policy as pure decisions: when it stops, and the verdict a
replay recomputes from the recorded outcomes."""

from __future__ import annotations

import itertools

import pytest

from durably.fan_out import MapPolicy, Outcome, map_result


def stop_point(policy: MapPolicy, outcomes: tuple[bool, ...]) -> tuple[str | None, int, int]:
    """Feed outcomes (True: success) one at a time; the decision and the counts there."""
    succeeded = failed = 0
    for ok in outcomes:
        succeeded, failed = succeeded + ok, failed + (not ok)
        decision = policy.decision(succeeded, failed)
        if decision is not None:
            return decision, succeeded, failed
    return None, succeeded, failed


@pytest.mark.parametrize("items", range(6))
def test_the_verdict_recomputed_at_the_stop_is_the_decision_that_stopped_it(
    items: int,
) -> None:
    """For every policy and every order of outcomes, the map stops (at the latest when
    every item settled), and has_failed over the settled counts equals the decision."""
    limits = [None, 0, 1, 2, 3]
    for min_successes, tolerated in itertools.product([None, 1, 2, 3, 4, 5], limits):
        if min_successes is not None and min_successes > items:
            continue
        policy = MapPolicy(items=items, min_successes=min_successes, tolerated_failures=tolerated)
        for outcomes in itertools.product([True, False], repeat=items):
            decision, succeeded, failed = stop_point(policy, outcomes)
            if items == 0:
                assert decision is None and not policy.has_failed(0, 0)
                continue
            assert decision is not None, (policy, outcomes)
            assert policy.has_failed(succeeded, failed) == (decision == "failed")


def test_min_successes_stops_as_soon_as_it_is_reached() -> None:
    policy = MapPolicy(items=5, min_successes=2)
    assert policy.decision(1, 1) is None
    assert policy.decision(2, 0) == "completed"


def test_too_many_failures_to_reach_min_successes_fails_early() -> None:
    policy = MapPolicy(items=4, min_successes=3)
    assert policy.decision(0, 1) is None
    assert policy.decision(1, 2) == "failed"


def test_without_limits_every_item_settles_and_failures_are_reported() -> None:
    policy = MapPolicy(items=3)
    assert policy.decision(0, 2) is None
    assert policy.decision(1, 2) == "completed"
    assert not policy.has_failed(0, 3)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"max_concurrency": 0}, ValueError, "max_concurrency must be at least 1"),
        ({"min_successes": 0}, ValueError, "min_successes must be at least 1"),
        ({"min_successes": 4}, ValueError, "can never be reached with 3 item"),
        ({"tolerated_failures": -1}, ValueError, "tolerated_failures must be at least 0"),
        ({"max_concurrency": 1.5}, TypeError, "must be an integer or None"),
        ({"min_successes": True}, TypeError, "must be an integer or None"),
    ],
)
def test_bad_policy_values_are_refused(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        MapPolicy(items=3, **options)  # type: ignore[arg-type]


def test_the_result_lists_items_in_input_order_with_skipped_ones() -> None:
    failure = ValueError("no")
    result = map_result(["a", "b", "c"], {2: Outcome(value="C"), 0: Outcome(error=failure)})
    assert [str(item.status) for item in result] == ["FAILED", "SKIPPED", "COMPLETED"]
    assert (result.values, result.errors) == (["C"], [failure])
    assert (result.succeeded, result.failed, result.skipped) == (1, 1, 1)
    assert result[1].item == "b" and not result[1].ok
