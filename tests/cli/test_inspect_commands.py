"""`durably list` and `durably show` read what real workflows recorded."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_workflows import Order

import durably
from conftest import Cli, finish, record, run_durably, start_waiting_approval, until_status
from durably.models import WorkflowStatus
from durably.testing import FakeClock

LAST_YEAR = datetime.now(UTC) - timedelta(days=365)


async def _several(app: durably.Durably) -> None:
    await start_waiting_approval(app, "order-1")
    assert await finish(app, "declined", "order-2") is WorkflowStatus.COMPENSATED
    assert await finish(app, "failing", "order-3") is WorkflowStatus.FAILED
    await start_waiting_approval(app, "order-4")
    await app.send_signal("order-4", "approved", "ann")
    await app.handle("order-4").result()


def test_list_prints_one_row_per_workflow_with_its_status(cli: Cli) -> None:
    """The table names every workflow, its workflow name and its status."""
    record(cli.url, _several)
    completed = cli("list")
    assert completed.returncode == 0, completed.stderr
    rows = {line.split()[0]: line.split() for line in completed.stdout.splitlines()[2:-1]}
    assert rows["order-1"][1:3] == ["approval", "SUSPENDED"]
    assert rows["order-2"][1:3] == ["declined", "COMPENSATED"]
    assert rows["order-3"][1:3] == ["failing", "FAILED"]
    assert rows["order-4"][1:3] == ["approval", "COMPLETED"]
    assert "waiting for signal 'approved'" in " ".join(rows["order-1"])
    assert "4 workflow(s) shown (1-4)" in completed.stdout


def test_list_filters_by_status_and_name(cli: Cli) -> None:
    """--status takes several statuses in any case; --name narrows by workflow name."""
    record(cli.url, _several)
    failed = cli.json("list", "--status", "failed,Compensated")
    assert sorted(w["workflow_id"] for w in failed["workflows"]) == ["order-2", "order-3"]
    approvals = cli.json("list", "--name", "approval", "--status", "completed")
    assert [w["workflow_id"] for w in approvals["workflows"]] == ["order-4"]
    assert approvals["workflows"][0]["result"] == "reservation-order-4, 4200 cents, approved by ann"


def test_list_filters_by_queue_and_pages_within_it(cli: Cli) -> None:
    """--queue keeps the workflows enqueued on that queue, page by page."""

    async def enqueue(app: durably.Durably) -> None:
        app.queue("emails")
        app.queue("reports")
        for number in range(3):
            await app.enqueue(
                "failing", Order(f"mail-{number}", 1), queue="emails", workflow_id=f"mail-{number}"
            )
        await app.enqueue("failing", Order("report", 1), queue="reports", workflow_id="report")
        await app.start("failing", Order("direct", 1), workflow_id="direct")

    record(cli.url, enqueue, worker=False)
    first = cli.json("list", "--queue", "emails", "--limit", "2", "--oldest-first")
    assert [w["workflow_id"] for w in first["workflows"]] == ["mail-0", "mail-1"]
    assert first["workflows"][0]["queue_name"] == "emails"
    second = cli.json(
        "list", "--queue", "emails", "--limit", "2", "--oldest-first", "--offset", "2"
    )
    assert [w["workflow_id"] for w in second["workflows"]] == ["mail-2"]
    assert (first["next_offset"], second["next_offset"]) == (2, None)


def test_list_pages_newest_first_with_limit_and_offset(cli: Cli) -> None:
    """Pages follow each other without overlap; the last page has no next offset."""
    record(cli.url, _several)
    first = cli.json("list", "--limit", "3")
    second = cli.json("list", "--limit", "3", "--offset", str(first["next_offset"]))
    assert first["next_offset"] == 3 and second["next_offset"] is None
    ids = [w["workflow_id"] for w in first["workflows"] + second["workflows"]]
    assert ids == ["order-4", "order-3", "order-2", "order-1"]
    oldest = cli.json("list", "--limit", "1", "--oldest-first")
    assert [w["workflow_id"] for w in oldest["workflows"]] == ["order-1"]


def test_list_filters_by_creation_time_as_an_age_or_an_iso_time(cli: Cli) -> None:
    """--since 30d keeps recent workflows; --until an ISO date keeps older ones."""
    record(cli.url, lambda app: finish(app, "declined", "old-order"), clock=FakeClock(LAST_YEAR))
    record(cli.url, lambda app: finish(app, "declined", "new-order"))
    recent = cli.json("list", "--since", "30d")
    assert [w["workflow_id"] for w in recent["workflows"]] == ["new-order"]
    cutoff = (LAST_YEAR + timedelta(days=1)).date().isoformat()
    older = cli.json("list", "--until", cutoff)
    assert [w["workflow_id"] for w in older["workflows"]] == ["old-order"]


def test_list_with_a_bad_filter_exits_2_and_names_the_valid_values(sqlite_cli: Cli) -> None:
    """An unknown status or a malformed time is a usage error."""
    status = sqlite_cli("list", "--status", "finished")
    assert status.returncode == 2
    assert "'finished' is not a status" in status.stderr and "parked" in status.stderr
    since = sqlite_cli("list", "--since", "yesterday")
    assert since.returncode == 2
    assert "'yesterday' is not a time" in since.stderr and "30d" in since.stderr


def test_show_prints_input_result_and_a_timeline_with_the_signal(cli: Cli) -> None:
    """A completed workflow shows its input, result, steps and the signal it consumed."""
    record(cli.url, _several)
    completed = cli("show", "order-4")
    assert completed.returncode == 0, completed.stderr
    output = completed.stdout
    assert '"order_id": "order-4"' in output
    assert '"reservation-order-4, 4200 cents, approved by ann"' in output
    lines = output.splitlines()
    assert any(line.split()[:4] == ["0", "step", "reserve", "COMPLETED"] for line in lines)
    assert any(line.split()[:4] == ["1", "step", "charge", "COMPLETED"] for line in lines)
    signal_line = next(line for line in lines if line.startswith("2 "))
    assert "signal approved   COMPLETED" in signal_line and 'received "ann"' in signal_line


def test_show_json_has_failures_tracebacks_and_compensations(cli: Cli) -> None:
    """A compensated workflow: the failed step with its traceback, then the compensation."""
    record(cli.url, _several)
    document = cli.json("show", "order-2")
    assert document["workflow"]["status"] == "COMPENSATED"
    assert document["workflow"]["error"]["type"] == "PaymentDeclinedError"
    timeline = document["timeline"]
    assert [(e["seq"], e["name"], e["status"]) for e in timeline] == [
        (0, "reserve", "COMPLETED"),
        (1, "charge", "FAILED"),
        (-1, "reserve:compensate", "COMPLETED"),
    ]
    assert timeline[2]["is_compensation"] is True
    assert "in decline" in timeline[1]["error"]["traceback"]
    assert timeline[0]["duration_ms"] >= 0


def test_show_of_a_sleeping_workflow_says_until_when(cli: Cli) -> None:
    """A durable sleep shows its wake-up time, and the workflow's wait reason."""
    record(cli.url, lambda app: _sleeping(app, "order-9"))
    document = cli.json("show", "order-9")
    sleep = document["timeline"][1]
    assert (sleep["kind"], sleep["name"], sleep["status"]) == ("SLEEP", "cool-off", "WAITING")
    assert sleep["wake_at"] == document["workflow"]["wake_at"]
    assert "sleeping until" in cli("show", "order-9").stdout


async def _sleeping(app: durably.Durably, workflow_id: str) -> None:
    await app.start("cooling", Order(workflow_id, 1), workflow_id=workflow_id)
    await until_status(app, workflow_id, WorkflowStatus.SUSPENDED)


def test_show_of_an_unknown_id_exits_1_with_a_clear_message(cli: Cli) -> None:
    """An unknown id fails (exit 1) and says what to check."""
    completed = cli("show", "no-such-order")
    assert completed.returncode == 1
    assert "no workflow with id 'no-such-order'" in completed.stderr
    assert completed.stdout == ""


def test_database_comes_from_durably_db_when_no_option_is_given(sqlite_cli: Cli) -> None:
    """DURABLY_DB names the database; without it or --db the command explains."""
    record(sqlite_cli.url, _several)
    completed = run_durably(["list", "--json"], env={"DURABLY_DB": sqlite_cli.url})
    assert completed.returncode == 0, completed.stderr
    assert '"order-1"' in completed.stdout
    missing = run_durably(["list"], env={"DURABLY_DB": ""})
    assert missing.returncode == 2
    assert "pass --db URL or set DURABLY_DB" in missing.stderr


def test_a_bad_database_url_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    """A malformed URL or a missing SQLite file is refused; no file is created."""
    malformed = run_durably(["list", "--db", "sqlite://nohost/x.db"])
    assert malformed.returncode == 2
    assert "three slashes" in malformed.stderr
    absent = tmp_path / "absent.db"
    missing = run_durably(["list", "--db", f"sqlite:///{absent}"])
    assert missing.returncode == 2
    assert "no database file at" in missing.stderr
    assert not absent.exists()
    unknown = run_durably(["list", "--db", "mysql://localhost/x"])
    assert unknown.returncode == 2 and "cannot open a store" in unknown.stderr


def test_a_fresh_install_without_click_still_runs_demo_help_and_explains_the_extra() -> None:
    """Without the cli extra, `durably demo` still parses; operator commands say what
    to install."""
    code = (
        "import sys; sys.modules['click'] = None; from durably.cli import main; "
        "raise SystemExit(main(sys.argv[1:]))"
    )
    listing = subprocess.run(
        [sys.executable, "-c", code, "list"], capture_output=True, text=True, check=False
    )
    assert listing.returncode == 1
    assert "pip install 'durably[cli]'" in listing.stderr
    demo = subprocess.run(
        [sys.executable, "-c", code, "demo", "--help"], capture_output=True, text=True, check=False
    )
    assert demo.returncode == 0 and "--dir" in demo.stdout


def test_help_lists_every_operator_command() -> None:
    """`durably --help` lists the commands; a command's help shows its options."""
    overview = run_durably(["--help"])
    assert overview.returncode == 0
    for command in (
        "list",
        "show",
        "signal",
        "cancel",
        "resume",
        "retry",
        "purge",
        "replay",
        "doctor",
        "demo",
        "worker",
        "dashboard",
    ):
        assert f"\n  {command} " in overview.stdout, command
    purge = run_durably(["purge", "--help"])
    assert "--older-than" in purge.stdout and "--db URL" in purge.stdout
