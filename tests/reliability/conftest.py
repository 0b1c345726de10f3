"""The reliability suite's figures: each test records what it tried with
``record_property`` (crash points, recoveries, checks, faults injected, bad inputs);
``pytest tests/reliability`` prints their totals at the end (with xdist too: the
properties travel with the test reports). docs/guarantees.md quotes them."""

from __future__ import annotations

from collections import Counter

import pytest

FIGURES = {
    "crash_points": "crash points tried (SIGKILL)",
    "recoveries": "recoveries checked",
    "checks": "recovery checks made",
    "orphaned_runs": "runs stopped by the orphaned-claim defect (then recovered)",
    "faults_injected": "faults injected (storage, connections, clock, duplicates)",
    "bad_inputs": "bad inputs tried",
    "soak_workflows": "soak workflows completed",
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the totals of the figures recorded by the reliability tests."""
    totals: Counter[str] = Counter()
    reports = [
        report
        for category in ("passed", "failed", "xfailed", "xpassed")
        for report in terminalreporter.stats.get(category, [])
        if getattr(report, "when", None) == "call"
    ]
    for report in reports:
        for name, value in getattr(report, "user_properties", ()):
            if name in FIGURES and isinstance(value, int):
                totals[name] += value
    if not totals:
        return
    failed = [r for r in reports if r.outcome == "failed" and "reliability" in r.nodeid]
    terminalreporter.section("durably reliability figures")
    for name, label in FIGURES.items():
        terminalreporter.write_line(f"{label}: {totals[name]:,}")
    lost = "0" if not failed else f"unknown: {len(failed)} reliability test(s) failed"
    terminalreporter.write_line(f"workflows lost: {lost}")
