"""How a benchmark child process talks to the parent: one JSON result line on stdout,
and a readiness line for children that the parent kills.

Standard library only: the DBOS driver, running in DBOS's own virtualenv, imports it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

RESULT_PREFIX = "BENCH_RESULT "
READY_LINE = "BENCH_READY"


def emit_result(result: dict[str, Any]) -> None:
    """Print the child's result as the one line the parent parses."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def emit_ready(detail: str = "") -> None:
    """Tell the parent that the child reached the point where it may be killed."""
    sys.stdout.write(f"{READY_LINE} {detail}\n")
    sys.stdout.flush()


def rss_bytes() -> int:
    """The resident set size of this process now (Linux ``/proc``)."""
    return _status_kib("VmRSS") * 1024


def peak_rss_bytes() -> int:
    """The largest resident set size this process has had."""
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")
