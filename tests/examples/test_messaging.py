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
