"""`durably replay` checks code against recorded histories; `durably doctor` explains
stuck work, including a worker killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cli_workflows import Order

import durably
from conftest import HERE, Cli, finish, park, record, start_waiting_approval
from durably.models import WorkflowStatus


def test_replay_of_unchanged_code_matches_every_kind_of_history(cli: Cli) -> None:
    """Waiting, completed, compensated and failed histories replay as recorded."""

    async def histories(app: durably.Durably) -> None:
        await start_waiting_approval(app, "waiting")
        await start_waiting_approval(app, "completed")
        await app.send_signal("completed", "approved", "ann")
        await app.handle("completed").result()
        assert await finish(app, "declined", "compensated") is WorkflowStatus.COMPENSATED
        assert await finish(app, "unrefundable", "dead-letter") is (
            WorkflowStatus.COMPENSATION_FAILED
        )

    record(cli.url, histories)
    expected = {
        "waiting": "end of history",
        "completed": "COMPLETED",
        "compensated": "COMPENSATED",
        "dead-letter": "COMPENSATION_FAILED",
    }
    for workflow_id, replayed_to in expected.items():
        report = cli.json("replay", workflow_id, "--app", "cli_workflows:app")
        assert (report["diverged"], report["replayed_to"]) == (False, replayed_to), report
    text = cli("replay", "completed", "--app", "cli_workflows:app")
    assert text.returncode == 0
    assert "ok: the current code completes from the recorded history" in text.stdout


def test_replay_of_changed_code_reports_the_first_divergence_and_exits_1(cli: Cli) -> None:
    """A step inserted before `charge` diverges at operation #1; nothing is written."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    before = cli.json("show", "order-1")
    diverged = cli("replay", "order-1", "--app", "cli_workflows:changed_app")
    assert diverged.returncode == 1
    assert "DIVERGED" in diverged.stdout
    assert "at operation #1 the history records step 'charge'" in diverged.stdout
    assert "but the code now runs step 'audit'" in diverged.stdout
    assert "recorded version '1', code version '2'" in diverged.stdout
    assert cli.json("show", "order-1") == before


def test_replay_runs_no_step_past_the_recorded_history(cli: Cli, tmp_path: Path) -> None:
    """Code that would run a new step after the history stops before running it."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    marker = tmp_path / "notified"
    checked = cli(
        "replay",
        "order-1",
        "--app",
        "cli_workflows:extended_app",
        "--json",
        env={"DURABLY_CLI_TEST_MARKER": str(marker)},
    )
    assert checked.returncode == 0, checked.stderr
    assert '"replayed_to": "end of history"' in checked.stdout
    assert not marker.exists()


def test_replay_of_a_parked_workflow_shows_whether_the_fix_works(cli: Cli) -> None:
    """The code that parked it still diverges; the recorded code replays it."""
    park(cli.url, "order-1")
    assert cli("replay", "order-1", "--app", "cli_workflows:changed_app").returncode == 1
    fixed = cli.json("replay", "order-1", "--app", "cli_workflows:app")
    assert fixed["recorded_status"] == "PARKED" and fixed["diverged"] is False


def test_replay_with_a_bad_app_is_a_usage_error(sqlite_cli: Cli) -> None:
    """A module that does not import, or an attribute that is not an app, exits 2."""
    record(sqlite_cli.url, lambda app: finish(app, "failing", "order-1"))
    missing = sqlite_cli("replay", "order-1", "--app", "no_such_module:app")
    assert missing.returncode == 2 and "cannot import module 'no_such_module'" in missing.stderr
    not_app = sqlite_cli("replay", "order-1", "--app", "cli_workflows:Order")
    assert not_app.returncode == 2 and "not a durably app" in not_app.stderr
    malformed = sqlite_cli("replay", "order-1", "--app", "cli_workflows")
    assert malformed.returncode == 2 and "module:attribute" in malformed.stderr


def test_doctor_explains_a_signal_wait_and_how_to_send_the_signal(cli: Cli) -> None:
    """A workflow waiting for a signal: what it waits for, since when, and the command."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    diagnosis = cli.json("doctor", "order-1")
    finding = diagnosis["findings"][0]
    assert "waiting for signal 'approved' since" in finding["summary"]
    assert "no signal 'approved' is in its inbox" in finding["summary"]
    assert finding["actions"] == ["send it: `durably signal order-1 approved 'JSON payload'`"]
    assert diagnosis["is_problem"] is False


def test_doctor_explains_non_determinism_and_the_way_out(cli: Cli) -> None:
    """A parked workflow: the divergence, the replay check and the resume command."""
    park(cli.url, "order-1")
    text = cli("doctor", "order-1")
    assert text.returncode == 0
    assert "✗ it is parked on non-determinism" in text.stdout
    assert "`durably replay order-1 --app module:app`" in text.stdout
    assert "then `durably resume order-1`" in text.stdout


def test_doctor_with_the_deployed_app_reports_a_version_change(cli: Cli) -> None:
    """--app compares the recorded version with the code's."""
    record(cli.url, lambda app: start_waiting_approval(app, "order-1"))
    diagnosis = cli.json("doctor", "order-1", "--app", "cli_workflows:changed_app")
    summaries = [finding["summary"] for finding in diagnosis["findings"]]
    assert (
        "it was recorded by version '1' of 'approval'; the given app runs version '2' and "
        "declares that it also runs '1' (also_runs)"
    ) in summaries


def test_doctor_finds_a_pending_workflow_that_no_worker_will_claim(cli: Cli) -> None:
    """Started by a client (no worker) and no executor alive: start a worker."""

    async def enqueue(app: durably.Durably) -> None:
        await app.start("failing", Order("order-1", 1), workflow_id="order-1")

    record(cli.url, enqueue, worker=False)
    diagnosis = cli.json("doctor", "order-1")
    assert diagnosis["status"] == "PENDING" and diagnosis["is_problem"] is True
    assert "no live executor is registered" in diagnosis["findings"][0]["summary"]
    health = cli.json("doctor")
    assert [p["workflow_id"] for p in health["problems"]] == ["order-1"]
    assert health["executors"] == []


@pytest.mark.crash
def test_doctor_names_a_killed_worker_that_still_holds_a_lease(cli: Cli) -> None:
    """SIGKILL a worker inside a step: its lease is still live, but the doctor sees that
    its process is gone and says what to do."""
    with subprocess.Popen(
        [sys.executable, str(HERE / "cli_workflows.py"), "stuck", cli.url, "order-1"],
        stdout=subprocess.PIPE,
        text=True,
    ) as worker:
        try:
            assert worker.stdout is not None
            for line in worker.stdout:
                if line.strip() == "blocked":
                    break
            alive = cli.json("doctor", "order-1")
            assert "it is running on executor" in alive["findings"][0]["summary"]
            assert alive["is_problem"] is False
        finally:
            os.kill(worker.pid, signal.SIGKILL)
    dead = cli.json("doctor", "order-1")
    summary = dead["findings"][0]["summary"]
    assert dead["status"] == "RUNNING" and dead["is_problem"] is True
    assert f"process {worker.pid} on this host is not running" in summary
    assert "its lease expires at" in summary
    health = cli("doctor")
    assert health.returncode == 0
    assert f"gone: process {worker.pid} on this host is not running" in health.stdout
    assert "1 need attention" in health.stdout
