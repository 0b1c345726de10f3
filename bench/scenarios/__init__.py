"""The scenarios, in the order they run and appear in the table.

Each module has ``NAME``, ``TITLE`` and ``run(bench) -> list[Row]``; its durably
workload functions run in child processes (``python -m bench.child``), and the
DBOS twin of each lives in ``bench/dbos_driver.py``.
"""

from __future__ import annotations

SCENARIOS = (
    "references",
    "sequential",
    "concurrent",
    "recovery",
    "replay",
    "idle",
    "payloads",
    "pg_workers",
)
