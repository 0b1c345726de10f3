"""examples/messaging.py: every queued message reaches the broker exactly once, in
order, through dropped sends and SIGKILL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    Finished,
    duplicates,
    journal,
    kill_when_paused,
    operation_of,
    run_example,
    service_states,
)

pytestmark = pytest.mark.crash

SCRIPT = "messaging.py"
TEXTS = ["on my way", "running late", "10 min", "parking", "here!"]


def messaging(state: Path, *args: str) -> Finished:
    """Run one command of the example on ``state``."""
    finished = run_example(SCRIPT, *args, "--state", str(state))
    assert finished.returncode == 0, finished.output
    return finished


def inbox(state: Path) -> list[str]:
    """The texts in bob's inbox at the broker, in order."""
    return [entry["text"] for entry in service_states(state)["broker"]["inboxes"]["bob"]]


@pytest.fixture(scope="module")
def uncrashed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Broker and outbox after a flush nobody interrupted."""
    state = tmp_path_factory.mktemp("uncrashed")
    messaging(state, "queue", "--to", "bob", *TEXTS)
    messaging(state, "flush")
    return service_states(state)


def test_flush_delivers_each_message_once_in_order(tmp_path: Path) -> None:
    """Every send is dropped once and retried; bob gets the five texts once, in order."""
    messaging(tmp_path, "queue", "--to", "bob", *TEXTS)
    finished = messaging(tmp_path, "flush", "--network-drops", "2")
    assert "COMPLETED: 5 messages delivered" in finished.output
    assert inbox(tmp_path) == TEXTS
    outcomes = [e["outcome"] for e in journal(tmp_path, "broker")]
    assert outcomes == ["unavailable", "unavailable", "applied"] * 5
    assert {m["status"] for m in service_states(tmp_path)["outbox"]["messages"].values()} == {
        "delivered"
    }
    assert "outbox: nothing to send" in messaging(tmp_path, "flush").output


@pytest.mark.parametrize("pause", ["broker.publish#3", "outbox.mark_delivered#3"])
def test_killed_mid_flush_delivers_the_rest_exactly_once(
    pause: str, uncrashed: dict[str, Any], tmp_path: Path
) -> None:
    """SIGKILL after the third message was published (or marked): the next flush
    finishes the old one; the broker refuses the repeated message; same end state."""
    messaging(tmp_path, "queue", "--to", "bob", *TEXTS)
    kill_when_paused(SCRIPT, "flush", "--state", str(tmp_path), pause=pause)
    resumed = messaging(tmp_path, "flush")
    assert "flush-m-1-to-m-5: found RUNNING, finishing it first" in resumed.output
    assert service_states(tmp_path) == uncrashed
    assert duplicates(tmp_path) == [operation_of(pause)]


def test_message_written_after_a_crash_follows_the_recovered_ones(tmp_path: Path) -> None:
    """A message queued while the app was dead goes out after the recovered flush."""
    messaging(tmp_path, "queue", "--to", "bob", *TEXTS)
    kill_when_paused(SCRIPT, "flush", "--state", str(tmp_path), pause="broker.publish#2")
    messaging(tmp_path, "queue", "--to", "bob", "sorry, phone died")
    resumed = messaging(tmp_path, "flush")
    assert "flush-m-6-to-m-6: sending 1 messages" in resumed.output
    assert inbox(tmp_path) == [*TEXTS, "sorry, phone died"]


def test_a_message_in_two_flushes_reaches_the_inbox_once(tmp_path: Path) -> None:
    """The broker keys a message by its own id, not by the step that sends it: a flush
    killed after publishing m-2 is lost with its workflow database, and a later flush
    (another workflow, so other step keys) publishes m-2 again; bob has it once."""
    messaging(tmp_path, "queue", "--to", "bob", *TEXTS[:3])
    kill_when_paused(SCRIPT, "flush", "--state", str(tmp_path), pause="broker.publish#2")
    messaging(tmp_path, "queue", "--to", "bob", TEXTS[3])
    lost = ("--db", str(tmp_path / "reinstalled.db"))  # the old flush is not found again
    again = messaging(tmp_path, "flush", *lost)
    assert "flush-m-2-to-m-4: sending 3 messages" in again.output  # m-2 is still queued
    assert inbox(tmp_path) == TEXTS[:4]
    published = [e for e in journal(tmp_path, "broker") if e["outcome"] != "unavailable"]
    assert [(e["key"], e["outcome"]) for e in published] == [
        ("m-1", "applied"),
        ("m-2", "applied"),
        ("m-2", "duplicate"),
        ("m-3", "applied"),
        ("m-4", "applied"),
    ]
    assert duplicates(tmp_path) == ["broker.publish"]
