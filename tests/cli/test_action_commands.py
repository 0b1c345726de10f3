"""`durably signal`, `cancel`, `resume`, `retry` and `purge` change what a real worker
then does."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import cli_workflows
import pytest
from cli_workflows import Order

import durably
from conftest import HERE, Cli, finish, park, record, start_waiting_approval, until_status
from durably.models import WorkflowStatus
from durably.testing import FakeClock


async def _resume_and_wait(app: durably.Durably, workflow_id: str) -> object:
    """Claim what the CLI made due (no poll wait) and return the workflow's result."""
    await app.recover()
    try:
        return await app.handle(workflow_id).result()
    except durably.WorkflowFailedError as error:
        return error.status


def test_signal_wakes_a_waiting_workflow_which_completes_with_the_payload(cli: Cli) -> None:
    """A signal sent from the command line is consumed by the workflow's wait."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    sent = cli("signal", "order-1", "approved", '"dora"')
    assert sent.returncode == 0, sent.stderr
    assert "signal 'approved' sent to workflow order-1" in sent.stdout
    result = record(cli.url, lambda app: _resume_and_wait(app, "order-1"))
    assert result == "reservation-order-1, 4200 cents, approved by dora"


def test_signal_with_a_dedup_key_is_appended_once(cli: Cli) -> None:
    """Sending twice with one dedup key appends one signal."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    first = cli.json("signal", "order-1", "approved", "--dedup-key", "k1")
    second = cli.json("signal", "order-1", "approved", '"eve"', "--dedup-key", "k1")
    assert first["appended"] is True and second["appended"] is False
    assert second["signal"]["signal_id"] == first["signal"]["signal_id"]
    signals = cli.json("show", "order-1")["signals"]
    assert [(s["name"], s["payload"]) for s in signals] == [("approved", None)]


def test_signal_payload_from_stdin(sqlite_cli: Cli) -> None:
    """'-' reads the JSON payload from standard input."""
    record(sqlite_cli.url, lambda app: start_waiting_approval(app, "order-1"))
    sent = sqlite_cli("signal", "order-1", "approved", "-", "--json", stdin='"frank"\n')
    assert sent.returncode == 0, sent.stderr
    assert sqlite_cli.json("show", "order-1")["signals"][0]["payload"] == "frank"


def test_signal_refuses_bad_json_and_finished_workflows(cli: Cli) -> None:
    """Invalid JSON is a usage error (2); a finished or unknown workflow fails (1)."""
    record(cli.url, lambda app: finish(app, "failing", "order-1"))
    bad = cli("signal", "order-1", "approved", "dora")
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    finished = cli("signal", "order-1", "approved", '"dora"')
    assert finished.returncode == 1
    assert "already ended with status FAILED" in finished.stderr
    unknown = cli("signal", "order-404", "approved")
    assert unknown.returncode == 1 and "no workflow with id 'order-404'" in unknown.stderr


def test_cancel_stops_a_sleeping_workflow_at_once(cli: Cli) -> None:
    """Nobody runs a sleeping workflow: cancelling it makes it CANCELLED right away."""

    async def sleeping(app: durably.Durably) -> None:
        await app.start("cooling", Order("order-1", 1), workflow_id="order-1")
        await until_status(app, "order-1", WorkflowStatus.SUSPENDED)

    record(cli.url, sleeping)
    cancelled = cli("cancel", "order-1")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "order-1 (cooling): CANCELLED" in cancelled.stdout
    assert cli.json("show", "order-1")["workflow"]["status"] == "CANCELLED"
    again = cli("cancel", "order-1")
    assert again.returncode == 0


def test_cancel_with_compensate_runs_the_compensations(cli: Cli) -> None:
    """--compensate: a worker undoes the recorded steps, then the workflow is CANCELLED."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    requested = cli.json("cancel", "order-1", "--compensate")
    assert requested["workflow"]["cancel_requested"] is True
    assert requested["workflow"]["compensate_on_cancel"] is True
    assert record(cli.url, lambda app: _resume_and_wait(app, "order-1")) == "CANCELLED"
    timeline = cli.json("show", "order-1")["timeline"]
    assert (timeline[-1]["name"], timeline[-1]["status"]) == ("reserve:compensate", "COMPLETED")


def test_cancel_of_a_finished_workflow_exits_1(cli: Cli) -> None:
    """A completed workflow cannot be cancelled."""
    record(cli.url, lambda app: finish(app, "failing", "order-1"))
    refused = cli("cancel", "order-1")
    assert refused.returncode == 1 and "cannot cancel it" in refused.stderr


def test_resume_runs_a_failed_workflow_again_from_its_failed_step(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the cause is fixed, `resume` makes the FAILED workflow run its failed step
    again (the completed one is replayed, not re-run) and complete under the same id."""
    monkeypatch.setattr(cli_workflows, "charges_allowed", False)
    monkeypatch.setattr(cli_workflows, "STEP_CALLS", [])
    assert record(cli.url, lambda app: finish(app, "checkout", "order-1")) == "FAILED"
    resumed = cli.json("resume", "order-1")
    assert resumed["workflow"]["status"] == "PENDING"
    monkeypatch.setattr(cli_workflows, "charges_allowed", True)
    result = record(cli.url, lambda app: _resume_and_wait(app, "order-1"))
    assert result == "reservation-order-1 paid 100"
    assert cli_workflows.STEP_CALLS == [
        ("reserve", "order-1"),
        ("charge", "order-1"),
        ("charge", "order-1"),
    ]
    assert cli.json("show", "order-1")["workflow"]["status"] == "COMPLETED"


def test_resume_of_a_parked_workflow_and_refusals(cli: Cli) -> None:
    """A PARKED workflow becomes PENDING (it parks again while the code still
    diverges); a workflow that is not stopped is refused with the reason."""
    park(cli.url, "order-1")
    resumed = cli("resume", "order-1")
    assert resumed.returncode == 0, resumed.stderr
    assert cli.json("show", "order-1")["workflow"]["status"] == "PENDING"
    record(cli.url, lambda app: start_waiting_approval(app, "order-2"))
    waiting = cli("resume", "order-2")
    assert waiting.returncode == 1
    assert "is SUSPENDED: only a PARKED, FAILED or COMPENSATION_FAILED" in waiting.stderr


def test_retry_from_step_forks_and_replays_the_steps_before_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork replays `reserve` (it does not run again) and runs `charge` with the fix;
    the failed original stays as it was."""
    monkeypatch.setattr(cli_workflows, "charges_allowed", False)
    monkeypatch.setattr(cli_workflows, "STEP_CALLS", [])
    assert record(cli.url, lambda app: finish(app, "checkout", "order-1")) == "FAILED"
    fork = cli.json("retry", "order-1", "--from-step", "1", "--new-id", "order-1b")
    assert fork["workflow"]["workflow_id"] == "order-1b"
    assert fork["workflow"]["input"] == {"order": {"order_id": "order-1", "total_cents": 100}}
    assert (fork["replayed_operations"], fork["replayed_failures"]) == (1, 0)
    monkeypatch.setattr(cli_workflows, "charges_allowed", True)
    result = record(cli.url, lambda app: _resume_and_wait(app, "order-1b"))
    assert result == "reservation-order-1 paid 100"
    assert cli_workflows.STEP_CALLS == [
        ("reserve", "order-1"),
        ("charge", "order-1"),
        ("charge", "order-1"),
    ]
    assert cli.json("show", "order-1")["workflow"]["status"] == "FAILED"
    taken = cli("retry", "order-1", "--from-step", "1", "--new-id", "order-1b")
    assert taken.returncode == 1 and "already taken" in taken.stderr


def test_retry_sends_again_the_signals_of_the_steps_that_run_again(cli: Cli) -> None:
    """Forking a completed approval from its signal wait re-delivers the signal it
    consumed there, so the fork completes the same way; a parked workflow forked with
    its whole history gets the signal that arrived for it."""

    async def approved(app: durably.Durably) -> None:
        await start_waiting_approval(app, "order-1")
        await app.send_signal("order-1", "approved", "ann")
        await app.handle("order-1").result()

    record(cli.url, approved)
    fork = cli.json("retry", "order-1", "--from-step", "2", "--new-id", "order-1b")
    assert (fork["replayed_operations"], fork["signals_resent"]) == (2, 1)
    result = record(cli.url, lambda app: _resume_and_wait(app, "order-1b"))
    assert result == "reservation-order-1, 4200 cents, approved by ann"
    park(cli.url, "order-2")
    rescued = cli.json("retry", "order-2", "--from-step", "2", "--new-id", "order-2b")
    assert rescued["signals_resent"] == 1
    result = record(cli.url, lambda app: _resume_and_wait(app, "order-2b"))
    assert result == "reservation-order-2, 4200 cents, approved by ann"


@pytest.mark.crash
def test_a_fork_killed_while_copying_never_runs_on_a_partial_history(cli: Cli) -> None:
    """SIGKILL halfway through copying: the fork stays suspended with a reason, no
    worker claims it, the doctor explains it, and it can be cancelled."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    killed = subprocess.run(
        [
            sys.executable,
            str(HERE / "cli_workflows.py"),
            "fork-and-crash",
            cli.url,
            "order-1",
            "order-1b",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = cli.json("show", "order-1b")
    assert partial["workflow"]["status"] == "SUSPENDED"
    assert "the fork was interrupted" in partial["workflow"]["wait_reason"]
    assert [entry["name"] for entry in partial["timeline"]] == ["reserve"]

    async def claim(app: durably.Durably) -> tuple[str, ...]:
        return (await app.recover()).resumed

    assert "order-1b" not in record(cli.url, claim)
    diagnosis = cli.json("doctor", "order-1b")
    assert (
        "the fork was interrupted: cancel it and fork again"
        in (diagnosis["findings"][0]["summary"])
    )
    assert cli.json("cancel", "order-1b")["workflow"]["status"] == "CANCELLED"
    assert cli.json("show", "order-1")["workflow"]["status"] == "SUSPENDED"


def test_retry_beyond_the_history_is_a_usage_error(sqlite_cli: Cli) -> None:
    """--from-step must name a recorded operation or the one after the last."""
    record(sqlite_cli.url, lambda app: finish(app, "failing", "order-1"))
    refused = sqlite_cli("retry", "order-1", "--from-step", "3")
    assert refused.returncode == 2
    assert "between 0 and 2" in refused.stderr
    assert [w["workflow_id"] for w in sqlite_cli.json("list")["workflows"]] == ["order-1"]


def test_purge_deletes_old_finished_workflows_and_keeps_failures_unless_asked(
    cli: Cli,
) -> None:
    """Only workflows finished before the cutoff go, by default not the failed ones."""
    long_ago = FakeClock(datetime.now(UTC) - timedelta(days=60))

    async def old(app: durably.Durably) -> None:
        assert await finish(app, "declined", "old-compensated") is WorkflowStatus.COMPENSATED
        assert await finish(app, "failing", "old-failed") is WorkflowStatus.FAILED

    record(cli.url, old, clock=long_ago)
    record(cli.url, lambda app: finish(app, "declined", "new-compensated"))
    planned = cli.json("purge", "--older-than", "30d", "--dry-run")
    assert (planned["planned"], planned["purged"]) == (1, 0)
    purged = cli("purge", "--older-than", "30d")
    assert purged.returncode == 0, purged.stderr
    assert "purged 1 workflow(s)" in purged.stdout
    assert "1/1" in purged.stderr
    remaining = sorted(w["workflow_id"] for w in cli.json("list")["workflows"])
    assert remaining == ["new-compensated", "old-failed"]
    failures = cli.json("purge", "--older-than", "30d", "--status", "failed")
    assert failures["purged"] == 1
    assert [w["workflow_id"] for w in cli.json("list")["workflows"]] == ["new-compensated"]


def test_purge_refuses_unfinished_statuses_and_bad_ages(sqlite_cli: Cli) -> None:
    """Only final statuses can be purged; an age needs a unit."""
    running = sqlite_cli("purge", "--older-than", "30d", "--status", "suspended")
    assert running.returncode == 2 and "SUSPENDED is not a final status" in running.stderr
    unitless = sqlite_cli("purge", "--older-than", "30")
    assert unitless.returncode == 2 and "30d" in unitless.stderr
