"""Contract: claims given ``versions`` take only the workflows of versions the claimer runs.

See "Versions" in the docstring of ``store/base.py``. A workflow "started" below is one
that ran before (``started_at`` set), so its history belongs to its version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from durably.models import QueueLimits, WorkflowRecord, WorkflowStatus
from durably.store.base import Store
from durably.testing._contract.records import (
    LEASE,
    NOW,
    TRICKY,
    ids,
    owned,
    stored,
    workflow,
)

NAMES = ["checkout", "refund"]


def started(workflow_id: str, version: str, **fields: Any) -> WorkflowRecord:
    """A workflow of ``version`` that ran before and is due now: suspended, its timer
    elapsed."""
    values: dict[str, Any] = {
        "status": WorkflowStatus.SUSPENDED,
        "wake_at": NOW - 1,
        "started_at": NOW - 100,
        "version": version,
    }
    values.update(fields)
    return workflow(workflow_id, **values)


async def claim_due(
    store: Store, versions: Mapping[str, Sequence[str]] | None, owner: str = "exec-a"
) -> list[WorkflowRecord]:
    """claim_due_workflows of NAMES at NOW, for an executor running ``versions``."""
    return await store.claim_due_workflows(
        owner=owner,
        names=NAMES,
        now=NOW,
        lease_until=NOW + LEASE,
        limit=100,
        versions=versions,
    )


class VersionsContract:
    """claim_due_workflows, claim_queued_workflows and next_wake_time given versions."""

    async def test_a_claim_takes_only_the_versions_its_executor_runs(self, store: Store) -> None:
        """An old and a new executor each resume the workflows of their own versions;
        the others stay unclaimed, unchanged."""
        old, new = started("old", "v1"), started("new", "v2")
        crashed = owned("crashed-old", version="v1", lease_until=NOW - 1, started_at=NOW - 9)
        for record in (old, new, crashed):
            await store.create_workflow(record)
        assert ids(await claim_due(store, {"checkout": ["v2"]}, owner="new-exec")) == ["new"]
        assert await stored(store, "old") == old
        assert await stored(store, "crashed-old") == crashed
        resumed = await claim_due(store, {"checkout": ["v1"]}, owner="old-exec")
        assert sorted(ids(resumed)) == ["crashed-old", "old"]
        assert {record.version for record in resumed} == {"v1"}

    async def test_an_executor_runs_every_version_it_lists(self, store: Store) -> None:
        """The older versions a code declares it replays are claimed with its own."""
        for record in (started("a", "v1"), started("b", "v2"), started("c", "v3")):
            await store.create_workflow(record)
        claimed = await claim_due(store, {"checkout": ["v3", "v1"]})
        assert sorted(ids(claimed)) == ["a", "c"]
        assert {r.workflow_id: r.version for r in claimed} == {"a": "v1", "c": "v3"}
        assert (await stored(store, "b")).owner is None

    async def test_versions_are_per_workflow_name(self, store: Store) -> None:
        """Running version v1 of one workflow says nothing about another one's v1."""
        await store.create_workflow(started("checkout-v1", "v1"))
        await store.create_workflow(started("refund-v1", "v1", workflow_name="refund"))
        claimed = await claim_due(store, {"refund": ["v1"], "checkout": ["v2"]})
        assert ids(claimed) == ["refund-v1"]

    async def test_a_workflow_recorded_without_a_version_is_claimed_by_every_executor(
        self, store: Store
    ) -> None:
        """Version "" (written before versions were recorded, or by code whose source
        could not be read) is run by any code that registers the name; it keeps ""."""
        await store.create_workflow(started("unversioned", ""))
        (claimed,) = await claim_due(store, {"checkout": ["v7"]})
        assert (claimed.workflow_id, claimed.version) == ("unversioned", "")

    async def test_a_workflow_that_never_ran_takes_the_version_of_its_claimer(
        self, store: Store
    ) -> None:
        """With no history to replay, any version may start it; the claim records the
        claimer's own version (the first it lists), so that its history is resumed by
        that version later."""
        await store.create_workflow(workflow("fresh", version="v1"))
        (claimed,) = await claim_due(store, {"checkout": ["v2", "v1"]})
        assert (claimed.workflow_id, claimed.version) == ("fresh", "v2")
        assert await stored(store, "fresh") == claimed

    async def test_a_pending_workflow_that_ran_before_keeps_its_version(self, store: Store) -> None:
        """Resumed by an operator (PENDING again, with history): only its version runs it."""
        resumed = workflow("resumed", version="v1", started_at=NOW - 50)
        await store.create_workflow(resumed)
        assert await claim_due(store, {"checkout": ["v2"]}) == []
        (claimed,) = await claim_due(store, {"checkout": ["v1"]})
        assert claimed.version == "v1"

    async def test_without_versions_a_claim_takes_every_version_and_changes_none(
        self, store: Store
    ) -> None:
        """``versions=None`` is the claim of a tool that runs whatever is there."""
        await store.create_workflow(started("old", "v1"))
        await store.create_workflow(workflow("fresh", version="v5"))
        claimed = await claim_due(store, None)
        assert {r.workflow_id: r.version for r in claimed} == {"old": "v1", "fresh": "v5"}

    async def test_versions_are_compared_exactly(self, store: Store) -> None:
        """Versions are opaque text: quotes, SQL and case are compared as they are."""
        await store.create_workflow(started("tricky", TRICKY))
        await store.create_workflow(started("upper", "V1"))
        claimed = await claim_due(store, {"checkout": [TRICKY, "v1"]})
        assert ids(claimed) == ["tricky"]

    async def test_a_queue_claim_takes_only_the_versions_its_executor_runs(
        self, store: Store
    ) -> None:
        """The same rule holds for queued workflows."""
        await store.create_workflow(started("old", "v1", queue_name="mail"))
        await store.create_workflow(started("new", "v2", queue_name="mail"))
        await store.create_workflow(workflow("fresh", version="v1", queue_name="mail"))
        claimed = await store.claim_queued_workflows(
            owner="exec-a",
            queue=QueueLimits(name="mail"),
            names=NAMES,
            now=NOW,
            lease_until=NOW + LEASE,
            limit=10,
            versions={"checkout": ["v2"]},
        )
        assert {r.workflow_id: r.version for r in claimed} == {"new": "v2", "fresh": "v2"}
        assert (await stored(store, "old")).owner is None

    async def test_next_wake_time_ignores_timers_of_versions_it_does_not_run(
        self, store: Store
    ) -> None:
        """An executor does not wake up for workflows it would leave alone."""
        await store.create_workflow(started("old", "v1", wake_at=NOW + 5))
        await store.create_workflow(started("new", "v2", wake_at=NOW + 9))
        await store.create_workflow(started("unversioned", "", wake_at=NOW + 7))
        assert await store.next_wake_time(names=NAMES, versions={"checkout": ["v2"]}) == NOW + 7
        assert await store.next_wake_time(names=NAMES, versions={"checkout": ["v1"]}) == NOW + 5
        assert await store.next_wake_time(names=NAMES, versions=None) == NOW + 5
