"""examples/iot_provisioning.py: a typed signal from another process, a durable
timeout, and SIGKILL before the signal arrives and while the workflow waits for it."""

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
    kill,
    kill_when_paused,
    operation_of,
    read_until,
    run_example,
    service_states,
    start_example,
    wait_for_status,
    wait_until_past,
)

pytestmark = pytest.mark.crash

SCRIPT = "iot_provisioning.py"
DEVICE = "sensor-42"
WORKFLOW = f"provision-{DEVICE}"
WAITING = f"{DEVICE}: waiting for firmware_update_complete"


def report(state: Path, *flags: str) -> Finished:
    """The device's update service reports, from its own process."""
    sent = run_example(
        SCRIPT, "report", DEVICE, "--version", "2.4.1", *flags, "--state", str(state)
    )
    assert sent.returncode == 0, sent.output
    return sent


def provision_with_report(state: Path, *flags: str) -> Finished:
    """Provision; once the workflow waits, send the report from a second process."""
    process = start_example(SCRIPT, "provision", DEVICE, "--state", str(state))
    read_until(process, WAITING)
    report(state, *flags)
    return finish(process)


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The device and cloud after a provisioning nobody interrupted."""
    state = tmp_path_factory.mktemp("uncrashed")
    finished = provision_with_report(state)
    assert finished.returncode == 0, finished.output
    assert "COMPLETED: Provisioned(device_id='sensor-42', thing_id='thing-1'" in finished.output
    return service_states(state)


def test_provisioning_ends_with_an_active_device(uncrashed: dict[str, Any]) -> None:
    """Paired, on Wi-Fi, registered once and active on the reported firmware."""
    assert uncrashed["devices"]["devices"] == {DEVICE: {"paired": True, "wifi": "greenhouse-wifi"}}
    assert uncrashed["cloud"]["things"] == {
        "thing-1": {"device": DEVICE, "status": "active", "firmware": "2.4.1"}
    }


@pytest.mark.parametrize("pause", ["devices.send_credentials", "cloud.register"])
def test_killed_before_the_signal_resumes_and_consumes_it(
    pause: str, uncrashed: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL mid-provisioning; the report is sent while no process runs the workflow
    (it waits in the inbox); a new process finishes with the same end state."""
    kill_when_paused(SCRIPT, "provision", DEVICE, "--state", str(tmp_path), pause=pause)
    report(tmp_path)
    resumed = run_example(SCRIPT, "provision", DEVICE, "--state", str(tmp_path))
    assert resumed.returncode == 0, resumed.output
    assert service_states(tmp_path) == uncrashed
    assert duplicates(tmp_path) == [operation_of(pause)]


def test_a_report_sent_twice_is_applied_once(tmp_path: Path) -> None:
    """The same report (same dedup key) delivered twice counts once."""
    kill_when_paused(SCRIPT, "provision", DEVICE, "--state", str(tmp_path), pause="cloud.register")
    assert "sent firmware_update_complete" in report(tmp_path).output
    assert "already sent firmware_update_complete" in report(tmp_path).output


def test_no_report_before_the_timeout_unregisters_the_device(tmp_path: Path) -> None:
    """The durable timeout passes: the wait returns None and the registration is undone."""
    finished = run_example(
        SCRIPT, "provision", DEVICE, "--timeout", "0.3", "--state", str(tmp_path)
    )
    assert finished.returncode == 1
    assert "COMPENSATED: FirmwareUpdateFailed: no firmware report from sensor-42" in (
        finished.output
    )
    assert service_states(tmp_path)["cloud"]["things"]["thing-1"]["status"] == "unregistered"


def test_a_failed_update_report_unregisters_the_device(tmp_path: Path) -> None:
    """The typed payload says the update failed: the registration is undone."""
    finished = provision_with_report(tmp_path, "--failed")
    assert finished.returncode == 1
    assert "FirmwareReport(version='2.4.1', succeeded=False)" in finished.output
    assert service_states(tmp_path)["cloud"]["things"]["thing-1"]["status"] == "unregistered"


def test_killed_while_waiting_for_the_report_consumes_it_after_resuming(
    uncrashed: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL once the workflow says it waits for the signal; the report is sent while
    no process runs it; a new process consumes it and ends as a run without a crash."""
    process = start_example(SCRIPT, "provision", DEVICE, "--state", str(tmp_path))
    try:
        read_until(process, WAITING)
    finally:
        kill(process)
    assert process.returncode == -signal.SIGKILL
    assert service_states(tmp_path)["cloud"]["things"]["thing-1"]["status"] == "registered"
    report(tmp_path)
    resumed = run_example(SCRIPT, "provision", DEVICE, "--state", str(tmp_path))
    assert resumed.returncode == 0, resumed.output
    assert f"{WORKFLOW}: found " in resumed.output
    assert service_states(tmp_path) == uncrashed
    assert duplicates(tmp_path) == []


def test_killed_while_waiting_then_resumed_after_the_deadline_unregisters_at_once(
    tmp_path: Path,
) -> None:
    """SIGKILL while the workflow waits (its deadline recorded: it is SUSPENDED until
    then); nothing is reported; a process started after the deadline does not wait a
    new timeout: the wait ends with None at once and the registration is undone."""
    timeout = 2.0  # above the engine's 1 s inline wait, so that the workflow suspends
    provision = ("provision", DEVICE, "--timeout", str(timeout), "--state", str(tmp_path))
    process = start_example(SCRIPT, *provision)
    try:
        read_until(process, WAITING)
        suspended = wait_for_status(
            tmp_path / "workflows.db", WORKFLOW, durably.WorkflowStatus.SUSPENDED
        )
    finally:
        kill(process)
    assert process.returncode == -signal.SIGKILL
    # Killed before its deadline: the registration is still there to be undone.
    assert service_states(tmp_path)["cloud"]["things"]["thing-1"]["status"] == "registered"
    assert suspended.wake_at is not None
    wait_until_past(suspended.wake_at)
    resumed = run_example(SCRIPT, *provision)
    assert resumed.returncode == 1, resumed.output
    assert f"{WORKFLOW}: found SUSPENDED" in resumed.output
    assert "COMPENSATED: FirmwareUpdateFailed: no firmware report from sensor-42" in (
        resumed.output
    )
    assert WAITING not in resumed.output  # the recorded wait was replayed, not started anew
    (undone,) = resumed.lines_containing("cloud", "unregistered thing-1")
    seconds = float(undone.partition("s")[0])  # the trace's time since the process started
    assert seconds < timeout, f"the new process waited again: {resumed.output}"
    assert service_states(tmp_path)["cloud"]["things"]["thing-1"]["status"] == "unregistered"
    assert duplicates(tmp_path) == []
