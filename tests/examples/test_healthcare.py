"""examples/healthcare.py: onboarding survives SIGKILL (also during its durable sleep),
an expired policy and a cancellation from another process undo what was done."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

import durably

from .conftest import (
    Finished,
    duplicates,
    finish,
    kill_when_paused,
    operation_of,
    read_until,
    run_example,
    service_states,
    start_example,
    wait_for_status,
)

pytestmark = pytest.mark.crash

SCRIPT = "healthcare.py"
WORKFLOW = "onboarding-jane-roe-1984-03-02"


def register(state: Path, *args: str) -> Finished:
    """Onboard Jane Roe on ``state`` (a short reminder delay unless given)."""
    return run_example(
        SCRIPT, "register", "--state", str(state), *(args or ("--reminder-delay", "0.05"))
    )


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The clinic's systems after an onboarding nobody interrupted."""
    state = tmp_path_factory.mktemp("uncrashed")
    finished = register(state)
    assert finished.returncode == 0, finished.output
    assert f"{WORKFLOW} COMPLETED: Appointment(appointment_id='A-1'" in finished.output
    return service_states(state)


def test_onboarding_books_and_reminds_once(uncrashed: dict[str, Any]) -> None:
    """One record, one consent, one appointment and one reminder text."""
    assert uncrashed["patients"]["records"] == {
        "P-1": {"name": "Jane Roe", "born": "1984-03-02", "status": "active"}
    }
    assert uncrashed["consents"]["forms"]["C-1"]["status"] == "signed"
    assert uncrashed["scheduler"]["appointments"] == {"A-1": {"patient": "P-1", "status": "booked"}}
    assert len(uncrashed["sms"]["sent"]) == 1


@pytest.mark.parametrize("pause", ["insurer.check", "scheduler.book"])
def test_killed_mid_step_resumes_to_the_same_records(
    pause: str, uncrashed: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL after a system applied a request: same end state as without the crash."""
    kill_when_paused(SCRIPT, "register", "--state", str(tmp_path), pause=pause)
    resumed = register(tmp_path)
    assert resumed.returncode == 0, resumed.output
    assert service_states(tmp_path) == uncrashed
    assert duplicates(tmp_path) == [operation_of(pause)]


def test_killed_during_the_durable_sleep_sends_the_reminder_once(
    uncrashed: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL while the workflow sleeps (unloaded, SUSPENDED): the next process wakes
    it at the recorded time and sends the one reminder; nothing before it runs again."""
    process = start_example(SCRIPT, "register", "--state", str(tmp_path), "--reminder-delay", "1.5")
    read_until(process, "scheduler  booked A-1")
    wait_for_status(tmp_path / "workflows.db", WORKFLOW, durably.WorkflowStatus.SUSPENDED)
    process.send_signal(signal.SIGKILL)
    assert finish(process).returncode == -signal.SIGKILL
    assert service_states(tmp_path)["sms"]["sent"] == []
    resumed = register(tmp_path, "--reminder-delay", "1.5")
    assert resumed.returncode == 0, resumed.output
    assert resumed.lines_containing("sms", "Reminder") and not resumed.lines_containing("booked")
    assert service_states(tmp_path) == uncrashed
    assert duplicates(tmp_path) == []


def test_expired_policy_archives_the_record(tmp_path: Path) -> None:
    """Insurance rejected after its retries: the new record is archived, nothing booked."""
    finished = register(tmp_path, "--policy", "EXP-99")
    assert finished.returncode == 1
    assert "COMPENSATED: InsuranceRejected: EXP-99: policy expired" in finished.output
    states = service_states(tmp_path)
    assert states["patients"]["records"]["P-1"]["status"] == "archived"
    assert states["scheduler"]["appointments"] == {}
    assert states["consents"]["forms"] == {}


def test_cancellation_from_another_process_undoes_everything(tmp_path: Path) -> None:
    """The front desk cancels while the workflow waits to remind: the appointment is
    cancelled, the consent withdrawn, the record archived, in that order."""
    process = start_example(SCRIPT, "register", "--state", str(tmp_path), "--reminder-delay", "60")
    read_until(process, "scheduler  booked A-1")
    cancelled = run_example(SCRIPT, "cancel", "--state", str(tmp_path))
    assert cancelled.returncode == 0, cancelled.output
    finished = finish(process)
    assert finished.returncode == 1
    assert f"{WORKFLOW} CANCELLED" in finished.output
    undo = [line.split()[1] for line in finished.output.splitlines() if line.startswith(" ")]
    assert undo == ["scheduler", "consents", "patients"]
    states = service_states(tmp_path)
    assert states["scheduler"]["appointments"]["A-1"]["status"] == "cancelled"
    assert states["consents"]["forms"]["C-1"]["status"] == "withdrawn"
    assert states["patients"]["records"]["P-1"]["status"] == "archived"
    assert states["sms"]["sent"] == []
