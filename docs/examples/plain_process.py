"""A plain long-lived process that runs durable work until SIGTERM or Ctrl-C, then
drains: here, a schedule firing every 3 seconds.

Run: python plain_process.py
"""

from __future__ import annotations

import logging
from datetime import datetime

import durably

app = durably.Durably("sqlite:///jobs.db", executor_id="jobs-1")


@app.scheduled("*/3 * * * * *", name="cleanup")  # every 3 seconds (leading seconds field)
async def cleanup(ctx: durably.Context, tick: datetime) -> str:
    logging.getLogger("jobs").info("cleanup for tick %s", f"{tick:%H:%M:%S}")
    return "cleaned"


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    durably.serve(app, grace=10)
