"""docs/observability.md shows the example it ships and the output it really prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.doc_pages import fenced_blocks, run_script

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "observability.md"
TOUR = ROOT / "docs" / "examples" / "observability_tour.py"


def blocks(language: str) -> list[str]:
    """The doc's fenced blocks of ``language``, in order."""
    return fenced_blocks(DOC, language)


def test_the_tour_in_the_doc_is_the_shipped_example() -> None:
    """The first python block is observability_tour.py, as it is."""
    assert blocks("python")[0] == TOUR.read_text(encoding="utf-8")


def test_the_tour_prints_the_output_shown(tmp_path: Path) -> None:
    """The tour's output equals the doc's, but for the measured latency."""
    printed = run_script(TOUR, tmp_path).stdout.splitlines()
    shown = blocks("text")[0].splitlines()
    latency = re.compile(r"charge latency: 2 attempts, max \d+\.\d{4} s")
    assert len(printed) == len(shown)
    for actual, expected in zip(printed, shown, strict=True):
        if latency.fullmatch(expected):
            assert latency.fullmatch(actual), actual
        else:
            assert actual == expected


def test_the_json_logging_snippet_prints_what_is_shown(tmp_path: Path) -> None:
    """The JsonLogFormatter snippet logs the record shown (its time aside)."""
    script = tmp_path / "json_logs.py"
    script.write_text(blocks("python")[1], encoding="utf-8")
    [line] = run_script(script, tmp_path).stderr.splitlines()
    [shown] = blocks("text")[1].splitlines()
    printed, expected = json.loads(line), json.loads(shown)
    assert printed.pop("time") and expected.pop("time")
    assert printed == expected


def test_the_traces_snippet_runs(tmp_path: Path) -> None:
    """The OpenTelemetry snippet is a complete program (it builds the app)."""
    script = tmp_path / "traces.py"
    script.write_text(blocks("python")[2], encoding="utf-8")
    run_script(script, tmp_path)


def test_the_metrics_snippet_prints_what_is_shown(tmp_path: Path) -> None:
    """The Metrics snippet runs and prints the output shown, but for the measured
    latency."""
    script = tmp_path / "metrics_demo.py"
    script.write_text(blocks("python")[3], encoding="utf-8")
    printed = run_script(script, tmp_path).stdout.splitlines()
    shown = blocks("text")[2].splitlines()
    latency = re.compile(r"charge: 2 attempts, p99 \d+\.\d{6} s")
    assert len(printed) == len(shown)
    for actual, expected in zip(printed, shown, strict=True):
        if latency.fullmatch(expected):
            assert latency.fullmatch(actual), actual
        else:
            assert actual == expected
