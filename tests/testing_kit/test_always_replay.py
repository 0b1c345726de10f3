"""always_replay: every workflow is replayed from the top after each live operation."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta

import pytest

from durably import Context, NonDeterminismError, WorkflowFailedError, WorkflowStatus
from durably.testing import TestDurably


def seed_whose_first_two_draws_disagree() -> int:
    """A seed for ``random`` whose first two ``random()`` draws fall on both sides of
    0.5: a branch on them takes one path at the first run and the other at the replay."""
    for seed in range(1_000):
        draws = random.Random(seed)
        if (draws.random() < 0.5) != (draws.random() < 0.5):
            return seed
    raise AssertionError("no such seed")


async def test_a_deterministic_workflow_passes_and_runs_each_step_once() -> None:
    """Steps, a sleep, a signal, recorded randomness and a gather: the body is replayed
    after each, every step still runs exactly once, and the result is the same."""
    runs: list[str] = []
    bodies: list[int] = []
    async with TestDurably(always_replay=True) as app:

        async def act(name: str) -> str:
            runs.append(name)
            return name

        @app.workflow()
        async def onboarding(ctx: Context, user: str) -> str:
            bodies.append(1)
            welcome = await ctx.step("welcome", act, f"welcome {user}")
            await ctx.sleep("cool-off", timedelta(days=2))
            answer = await ctx.wait_signal("survey", timeout=timedelta(days=5))
            lucky = await ctx.random() < 2  # recorded: same value on replay
            both = await asyncio.gather(
                ctx.step("tag", act, "tag"), ctx.step("score", act, "score")
            )
            return f"{welcome} {answer} {lucky} {'+'.join(both)}"

        handle = await app.start(onboarding, "ada")
        await app.send_signal(handle.workflow_id, "survey", "great")
        assert await handle.result() == "welcome ada great True tag+score"
    assert sorted(runs) == sorted(["welcome ada", "tag", "score"])
    assert len(bodies) > 5  # replayed from the top again and again


async def test_a_branch_on_random_outside_ctx_is_caught() -> None:
    """random.random() outside ctx takes another branch at the replay: the workflow is
    parked and its result raises NonDeterminismError naming both operations."""
    sent: list[str] = []
    async with TestDurably(always_replay=True) as app:

        async def send(channel: str) -> None:
            sent.append(channel)

        @app.workflow()
        async def notify(ctx: Context) -> str:
            channel = "email" if random.random() < 0.5 else "sms"  # not recorded
            await ctx.step(f"send-{channel}", send, channel)
            return channel

        random.seed(seed_whose_first_two_draws_disagree())
        handle = await app.start(notify)
        with pytest.raises(NonDeterminismError, match="not deterministic") as caught:
            await handle.result()
        assert await handle.status() is WorkflowStatus.PARKED
    assert "send-email" in str(caught.value)
    assert "send-sms" in str(caught.value)
    assert isinstance(caught.value.__cause__, WorkflowFailedError)
    assert len(sent) == 1  # the replay did not run the other branch's step


async def test_an_operation_the_replay_no_longer_reaches_is_caught() -> None:
    """A body whose last step depends on state outside the workflow skips it on replay:
    caught when the body ends, before the outcome is written."""
    seen: list[int] = []
    async with TestDurably(always_replay=True) as app:

        async def audit() -> None:
            pass

        @app.workflow()
        async def report(ctx: Context) -> str:
            seen.append(1)
            if len(seen) == 1:  # true only the first time the body runs
                await ctx.step("audit", audit)
            return "done"

        with pytest.raises(NonDeterminismError, match="without reaching step 'audit'"):
            await app.run(report)


async def test_without_always_replay_the_same_workflow_completes() -> None:
    """The mode is what catches it: without it, a run without crash never replays."""
    async with TestDurably() as app:

        async def send(channel: str) -> None:
            pass

        @app.workflow()
        async def notify(ctx: Context) -> str:
            channel = "email" if random.random() < 0.5 else "sms"
            await ctx.step(f"send-{channel}", send, channel)
            return channel

        random.seed(seed_whose_first_two_draws_disagree())
        assert await app.run(notify) in {"email", "sms"}


async def test_always_replay_can_be_switched_on_for_one_part_of_a_test() -> None:
    """app.always_replay is a plain attribute."""
    bodies: list[int] = []
    async with TestDurably() as app:

        async def one() -> int:
            return 1

        @app.workflow()
        async def count(ctx: Context) -> int:
            bodies.append(1)
            return await ctx.step("one", one) + await ctx.step("two", one)

        assert await app.run(count) == 2
        assert len(bodies) == 1
        app.always_replay = True
        assert await app.run(count) == 2
        assert len(bodies) == 1 + 3  # the live run, then a replay after each step
