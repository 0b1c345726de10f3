"""Two apps (think: two processes) share one SQLite file and run the same schedule:
each tick runs once. Run it, wait a few seconds, run it again: the second run starts
with the newest tick missed meanwhile. Run: python schedules_demo.py"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import durably


def make_app(name: str) -> durably.Durably:
    app = durably.Durably("sqlite:///schedules-demo.db", executor_id=name)

    # Six fields: a leading seconds field, so that the demo fires every 2 seconds.
    @app.scheduled("*/2 * * * * *", name="heartbeat")
    async def heartbeat(ctx: durably.Context, tick: datetime) -> str:
        print(f"tick {tick:%H:%M:%S} ran in {name} at {datetime.now(UTC):%H:%M:%S}")
        return name

    return app


async def main() -> None:
    alpha, bravo = make_app("alpha"), make_app("bravo")
    async with alpha, bravo:
        await asyncio.sleep(5)
        runs = await alpha.list_workflows(name="heartbeat", newest_first=True, limit=3)
        for info in reversed(runs):
            print(info.workflow_id, info.status, info.result_json)


if __name__ == "__main__":
    asyncio.run(main())
