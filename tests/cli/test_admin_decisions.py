"""The operator layer's pure parts, without a subprocess: parsing times, the doctor's
judgement of states that are slow to reach for real, timelines and purge batches."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from durably import admin
from durably.cli.common import parse_duration, parse_moment
from durably.models import (
    AttemptRecord,
    History,
    OperationKind,
    OperationRecord,
    OperationStatus,
    WorkflowRecord,
    WorkflowStatus,
    datetime_to_micros,
)
from durably.store import MemoryStore

SECOND = 1_000_000
NOW = datetime_to_micros(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86_400), ("12h", 43_200), ("1h30m", 5_400), ("2w", 1_209_600), ("90s", 90)],
)
def test_durations_read_like_an_operator_writes_them(text: str, seconds: int) -> None:
    """Units w, d, h, m, s, combined largest first."""
    assert parse_duration(text) == seconds * SECOND


@pytest.mark.parametrize("text", ["30", "", "5x", "1.5h", "m30", "h"])
def test_malformed_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    """A number without a unit, an unknown unit or a fraction is refused."""
    with pytest.raises(ValueError, match="30d, 12h, 1h30m"):
        parse_duration(text)


def test_moments_are_ages_or_iso_times_and_naive_means_utc() -> None:
    """An age counts back from now; an ISO time keeps its offset; a date is midnight UTC."""
    assert parse_moment("12h", current=NOW) == NOW - 43_200 * SECOND
    assert parse_moment("2026-01-31", current=NOW) == datetime_to_micros(
        datetime(2026, 1, 31, tzinfo=UTC)
    )
    assert parse_moment("2026-01-31T08:00:00+01:00", current=NOW) == datetime_to_micros(
        datetime(2026, 1, 31, 7, tzinfo=UTC)
    )
    with pytest.raises(ValueError, match="ISO date"):
        parse_moment("yesterday", current=NOW)


def _record(status: WorkflowStatus, **fields: object) -> WorkflowRecord:
    values: dict[str, object] = {"created_at": NOW - 600 * SECOND, "updated_at": NOW - 60 * SECOND}
    values.update(fields)
    return WorkflowRecord(
        workflow_id="order-1",
        workflow_name="checkout",
        status=status,
        **values,  # type: ignore[arg-type]
    )


def _executor(alive: bool) -> admin.ExecutorState:
    return admin.ExecutorState(
        executor_id="host:1:ab",
        hostname="elsewhere",
        pid=1,
        heartbeat_at=NOW - SECOND,
        is_alive=alive,
        reason=None if alive else "no heartbeat for 5m",
    )


def test_an_expired_lease_with_no_live_executor_needs_a_worker() -> None:
    """The executor stopped renewing and nobody else runs: start a worker."""
    record = _record(
        WorkflowStatus.RUNNING, owner="host:9:cd", fence=3, lease_until=NOW - 120 * SECOND
    )
    (finding,) = admin.diagnose(record, now=NOW, executors=[_executor(alive=False)])
    assert finding.is_problem
    assert "its lease expired at 2026-03-01 11:58:00 UTC" in finding.summary
    assert "no live executor is registered" in finding.summary
    assert "start a worker whose app registers workflow 'checkout'" in finding.actions[0]


def test_due_work_is_a_problem_only_once_live_executors_leave_it_for_a_minute() -> None:
    """Just due: the next poll claims it. Due for minutes: nobody runs that workflow."""
    live = [_executor(alive=True)]
    fresh = _record(WorkflowStatus.SUSPENDED, wake_at=NOW - 5 * SECOND, wait_reason="sleep 'x'")
    (soon,) = admin.diagnose(fresh, now=NOW, executors=live)
    assert not soon.is_problem and "claims it at its next poll" in soon.summary
    stale = _record(WorkflowStatus.SUSPENDED, wake_at=NOW - 300 * SECOND, wait_reason="sleep 'x'")
    (stuck,) = admin.diagnose(stale, now=NOW, executors=live)
    assert stuck.is_problem
    assert "1 live executor(s) have not claimed it for 5m" in stuck.summary


def test_a_queued_workflow_left_unclaimed_points_at_the_queue() -> None:
    """On a queue, live workers that do not claim it may be held back by its limits."""
    queued = _record(WorkflowStatus.PENDING, queue_name="emails", updated_at=NOW - 600 * SECOND)
    (finding,) = admin.diagnose(queued, now=NOW, executors=[_executor(alive=True)])
    assert finding.is_problem
    assert "it is on queue 'emails'" in finding.summary
    assert "concurrency or rate limit holds it back" in finding.summary
    assert finding.actions == (
        "check the limits of queue 'emails' and that a worker's app registers workflow "
        "'checkout' and queue 'emails'",
    )


def test_a_step_between_retries_is_reported_with_its_last_error() -> None:
    """Failed attempts of an unrecorded step: how many, the error, the next attempt."""
    record = _record(
        WorkflowStatus.RUNNING, owner="host:1:ab", fence=1, lease_until=NOW + 20 * SECOND
    )
    error = json.dumps({"type": "TimeoutError", "message": "bank slow", "traceback": None})
    attempts = [
        AttemptRecord(
            workflow_id="order-1",
            seq=2,
            attempt=number,
            error=error,
            started_at=NOW - 30 * SECOND,
            finished_at=NOW - 29 * SECOND,
            next_attempt_at=NOW + 40 * SECOND,
        )
        for number in (1, 2)
    ]
    findings = admin.diagnose(
        record, now=NOW, executors=[_executor(alive=True)], history=History(attempts={2: attempts})
    )
    assert "it is running on executor 'host:1:ab'" in findings[0].summary
    assert findings[1].summary == (
        "operation #2 has failed 2 attempt(s); next attempt at 2026-03-01 12:00:40 UTC "
        "(in 40s); last error: TimeoutError: bank slow"
    )


def test_a_timeline_lists_body_operations_then_compensations_in_the_order_they_ran() -> None:
    """Compensations (negative seq) follow the body, by start time; a step between
    retries shows as RETRYING."""

    def operation(seq: int, name: str, started: int) -> OperationRecord:
        return OperationRecord(
            workflow_id="order-1",
            seq=seq,
            kind=OperationKind.COMPENSATION if seq < 0 else OperationKind.STEP,
            name=name,
            status=OperationStatus.COMPLETED,
            started_at=started,
            finished_at=started + 1,
        )

    history = History(
        operations={
            0: operation(0, "reserve", 10),
            1: operation(1, "pack", 20),
            -1: operation(-1, "reserve:compensate", 50),
            -2: operation(-2, "pack:compensate", 40),
        },
        attempts={
            2: [
                AttemptRecord(
                    workflow_id="order-1",
                    seq=2,
                    attempt=1,
                    error="{}",
                    started_at=30,
                    finished_at=31,
                    next_attempt_at=99,
                )
            ]
        },
    )
    timeline = admin.build_timeline(history, [])
    assert [(entry.seq, entry.status) for entry in timeline] == [
        (0, "COMPLETED"),
        (1, "COMPLETED"),
        (2, admin.RETRYING),
        (-2, "COMPLETED"),
        (-1, "COMPLETED"),
    ]
    assert timeline[2].wake_at == 99 and timeline[2].error is not None


async def test_a_purge_deletes_in_batches_only_what_finished_before_the_cutoff() -> None:
    """1,200 old completed workflows go in batches of 500; newer or failed ones stay."""
    store = MemoryStore()
    for number in range(1_203):
        status = WorkflowStatus.FAILED if number >= 1_201 else WorkflowStatus.COMPLETED
        finished = NOW - (2_000 - number) * SECOND if number < 1_200 else NOW
        await store.create_workflow(
            WorkflowRecord(
                workflow_id=f"w-{number}",
                workflow_name="checkout",
                status=status,
                created_at=finished - SECOND,
                updated_at=finished,
                finished_at=finished,
            )
        )
    plan = await admin.plan_purge(store, finished_before=NOW - SECOND)
    assert plan.total == 1_200 and len(plan.cutoffs) == 3
    assert [count async for count in admin.purge(store, plan)] == [500, 500, 200]
    remaining = sorted(record.workflow_id for record in await store.list_workflows(limit=10))
    assert remaining == ["w-1200", "w-1201", "w-1202"]
    with pytest.raises(ValueError, match="SUSPENDED is not a final status"):
        await admin.plan_purge(store, finished_before=NOW, statuses=[WorkflowStatus.SUSPENDED])


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (WorkflowStatus.PENDING, ("signal", "cancel", "retry")),
        (WorkflowStatus.SUSPENDED, ("signal", "cancel", "retry")),
        (WorkflowStatus.PARKED, ("signal", "cancel", "resume", "retry")),
        (WorkflowStatus.FAILED, ("resume", "retry")),
        (WorkflowStatus.COMPENSATION_FAILED, ("resume", "retry")),
        (WorkflowStatus.COMPLETED, ("retry",)),
        (WorkflowStatus.CANCELLED, ("retry",)),
    ],
)
def test_allowed_actions_follow_the_status(
    status: WorkflowStatus, expected: tuple[str, ...]
) -> None:
    """What a dashboard or terminal UI offers for a status: what admin accepts."""
    assert admin.allowed_actions(status) == expected
