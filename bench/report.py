"""The result table: printed, written as markdown, and drawn as a PNG (matplotlib)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Summary
from bench.suite import Row

# -- numbers ---------------------------------------------------------------------------


def number(value: float) -> str:
    """A figure with as many digits as it deserves."""
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def figure(summary: Summary | None, note: str = "") -> str:
    """``median (min-max)``, or the note saying why there is no figure."""
    if summary is None:
        return note or "—"
    if len(summary.samples) == 1:
        return number(summary.median)
    return f"{number(summary.median)} ({number(summary.minimum)}-{number(summary.maximum)})"


def ratio(value: float | None) -> str:
    """A ratio such as ``0.52x`` or ``31x``."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{number(value)}x"


# -- targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One target of the issue, checked against this run's figures."""

    target: str
    measured: str
    met: bool | None  # None: not measured in this run


def _row(rows: Sequence[Row], key: str) -> Row | None:
    return next((row for row in rows if row.key == key), None)


def _check(
    rows: Sequence[Row],
    target: str,
    key: str,
    value: Callable[[Row], float | None],
    threshold: float,
) -> Verdict:
    row = _row(rows, key)
    measured = None if row is None else value(row)
    if measured is None:
        return Verdict(target, "not measured in this run", None)
    return Verdict(target, ratio(measured), measured >= threshold)


def _micros(summary: Summary | None) -> float | None:
    """The time of one unit of a rate's median, in microseconds."""
    if summary is None or summary.median <= 0:
        return None
    return 1e6 / summary.median


def _step_budget(stored: Row, alone: Row, statements: Row) -> str:
    """Where a concurrent step's time goes, from medians of the same run: what the
    engine alone and the checkpoint statements alone take, and what is left to the rest
    (the store's Python, each task's wait for its batch, the workflows' own rows); empty
    when a median is missing."""
    step, raw = _micros(stored.durably), _micros(stored.reference)
    engine, sql = _micros(alone.durably), _micros(statements.durably)
    if step is None or raw is None or engine is None or sql is None:
        return ""
    return (
        f"Per step: durably {number(step)} µs against the raw commit's {number(raw)} µs; "
        f"the engine alone takes {number(engine)} µs and the checkpoint statements alone "
        f"{number(sql)} µs, which leaves {number(step - engine - sql)} µs to the rest "
        f"(the store's Python, the wait for each batch's commit, the workflow rows)"
    )


def verdicts(rows: Sequence[Row]) -> list[Verdict]:
    """The issue's targets (ratios measured in the same run); never asserted in tests."""

    def to_reference(row: Row) -> float | None:
        return row.reference_ratio

    def over_dbos(row: Row) -> float | None:
        return row.dbos_advantage

    found = [
        _check(
            rows,
            "sequential steps, SQLite NORMAL ≥ 0.5 x raw NORMAL single-row commits",
            "sequential/steps/sqlite-normal",
            to_reference,
            0.5,
        ),
        _check(
            rows,
            "sequential steps, SQLite FULL ≥ 0.8 x raw FULL single-row commits",
            "sequential/steps/sqlite-full",
            to_reference,
            0.8,
        ),
        _check(
            rows,
            "sequential steps, SQLite FULL ≥ 8 x DBOS (SQLite, default settings)",
            "sequential/steps/sqlite-full",
            over_dbos,
            8.0,
        ),
    ]
    alone = _row(rows, "concurrent/steps-100/engine-alone")
    for backend, label in (
        ("sqlite-normal", "SQLite NORMAL"),
        ("sqlite-full", "SQLite FULL"),
        ("postgres", "PostgreSQL"),
    ):
        verdict = _check(
            rows,
            f"100 concurrent workflows, {label}: steps/s > raw single-row commit rate",
            f"concurrent/steps-100/{backend}",
            to_reference,
            1.0,
        )
        if verdict.met is False and alone is not None and alone.reference_ratio is not None:
            # No store can make the engine faster than it is storing nothing, nor
            # faster than its own statements run with no engine.
            ceilings = (
                f"the engine alone, storing nothing: {ratio(alone.reference_ratio)} of the "
                f"fastest raw rate"
            )
            statements = _row(rows, f"concurrent/checkpoint-100/{backend}")
            if statements is not None and statements.reference_ratio is not None:
                ceilings += (
                    f"; the store's checkpoint statements alone, 100 per commit: "
                    f"{ratio(statements.reference_ratio)}"
                )
                stored = _row(rows, f"concurrent/steps-100/{backend}")
                budget = None if stored is None else _step_budget(stored, alone, statements)
                if budget:
                    ceilings += f". {budget}"
            verdict = Verdict(verdict.target, f"{verdict.measured} ({ceilings})", False)
        found.append(verdict)
    for backend, label in (("sqlite-full", "SQLite FULL"), ("postgres", "PostgreSQL")):
        found.append(
            _check(
                rows,
                f"100 concurrent workflows, {label}: steps/s ≥ 30 x DBOS",
                f"concurrent/steps-100/{backend}",
                over_dbos,
                30.0,
            )
        )
    compared = [row for row in rows if row.dbos_advantage is not None]
    slower = [row for row in compared if (row.dbos_advantage or 0) < 1]
    found.append(
        Verdict(
            "every scenario faster than DBOS",
            f"{len(compared) - len(slower)} of {len(compared)} compared figures better than DBOS"
            + (
                ""
                if not slower
                else "; worse: "
                + "; ".join(
                    f"{row.scenario.split('.')[0]}. {row.metric} ({row.backend}) "
                    f"{ratio(row.dbos_advantage)}"
                    for row in slower
                )
            ),
            None if not compared else not slower,
        )
    )
    memory = [row for row in rows if row.key.startswith("idle/rss-per-workflow/")]
    if memory:
        worst = max(row.durably.median for row in memory if row.durably is not None)
        found.append(
            Verdict(
                "memory of suspended workflows bounded and reported (≤ 1 KiB of RSS per "
                "suspended workflow: nothing kept in memory)",
                f"{number(worst)} bytes per suspended workflow (worst backend)",
                worst <= 1024,
            )
        )
    else:
        found.append(
            Verdict(
                "memory of suspended workflows bounded and reported",
                "not measured in this run",
                None,
            )
        )
    return found


# -- text ------------------------------------------------------------------------------

HEADER = (
    "metric",
    "backend",
    "durably",
    "reference (same run)",
    "durably ÷ ref",
    "DBOS (same run)",
    "durably vs DBOS",
)


def cells(row: Row) -> tuple[str, ...]:
    """The text of one row's cells."""
    reference = figure(row.reference, "—")
    if row.reference is not None and row.reference_label:
        reference = f"{reference} [{row.reference_label}]"
    return (
        f"{row.metric} [{row.unit}]" + (f" — {row.note}" if row.note else ""),
        row.backend,
        figure(row.durably),
        reference,
        ratio(row.reference_ratio),
        figure(row.dbos, row.dbos_note),
        ratio(row.dbos_advantage),
    )


def scenarios_of(rows: Sequence[Row]) -> list[str]:
    """The scenario titles in the order they first appear."""
    return list(dict.fromkeys(row.scenario for row in rows))


def text_table(rows: Sequence[Row]) -> str:
    """The table for a terminal."""
    lines = []
    for scenario in scenarios_of(rows):
        lines.append("")
        lines.append(scenario)
        body = [cells(row) for row in rows if row.scenario == scenario]
        widths = [
            max(len(line[column]) for line in [HEADER, *body]) for column in range(len(HEADER))
        ]
        for line in [HEADER, *body]:
            lines.append(
                "  "
                + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            )
    lines.append("")
    lines.append("Targets (ratios measured in this run):")
    for verdict in verdicts(rows):
        mark = {True: "met", False: "NOT MET", None: "n/a"}[verdict.met]
        lines.append(f"  [{mark}] {verdict.target}: {verdict.measured}")
    return "\n".join(lines)


def markdown(rows: Sequence[Row], *, preamble: str, notes: str, image: str | None) -> str:
    """The whole page: what was run where, the tables, the targets, the method."""
    parts = [preamble.rstrip(), ""]
    for scenario in scenarios_of(rows):
        parts.append(f"### {scenario}")
        parts.append("")
        parts.append("| " + " | ".join(HEADER) + " |")
        parts.append("|" + "---|" * len(HEADER))
        for row in rows:
            if row.scenario == scenario:
                parts.append(
                    "| " + " | ".join(cell.replace("|", "\\|") for cell in cells(row)) + " |"
                )
        parts.append("")
    parts.append("### Targets")
    parts.append("")
    parts.append("| target | measured | verdict |")
    parts.append("|---|---|---|")
    for verdict in verdicts(rows):
        mark = {True: "met", False: "**not met**", None: "n/a"}[verdict.met]
        parts.append(f"| {verdict.target} | {verdict.measured} | {mark} |")
    parts.append("")
    if image:
        parts.append(f"![durably against its references and DBOS]({image})")
        parts.append("")
    parts.append(notes.rstrip())
    parts.append("")
    return "\n".join(parts)


# -- picture ---------------------------------------------------------------------------


def plot(rows: Sequence[Row], path: Path, title: str) -> str | None:
    """Draw durably ÷ reference and durably vs DBOS as horizontal bars (log scale).

    Returns:
        None when drawn, else why not (matplotlib missing: ``pip install -e '.[bench]'``).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: pip install -e '.[bench]'"
    panels = [
        (
            "durably ÷ raw reference (same run; rates: higher is better)",
            [
                (row, row.reference_ratio)
                for row in rows
                if row.reference_ratio is not None
                and row.durably is not None
                and row.higher_is_better
            ],
        ),
        (
            "durably vs DBOS: times better (>1: durably better)",
            [(row, row.dbos_advantage) for row in rows if row.dbos_advantage is not None],
        ),
    ]
    heights = [max(len(items), 1) for _, items in panels]
    figure_, axes = plt.subplots(
        len(panels),
        1,
        figsize=(11, 1.5 + 0.28 * sum(heights)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for axis, (label, items) in zip(axes[:, 0], panels, strict=True):
        names = [
            f"{row.scenario.split('.')[0]}. {_short(row.metric)} · {row.backend}"
            for row, _ in items
        ]
        values = [value for _, value in items]
        if not items:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
            axis.set_axis_off()
            continue
        colors = ["#2a7" if value >= 1 else "#c44" for value in values]
        axis.barh(range(len(values)), values, color=colors)
        axis.set_yticks(range(len(values)), names, fontsize=8)
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.axvline(1.0, color="black", linewidth=0.8)
        axis.set_title(label, fontsize=10)
        for index, value in enumerate(values):
            axis.text(value, index, f" {number(value)}x", va="center", fontsize=7)
        axis.grid(axis="x", which="both", alpha=0.3)
    figure_.suptitle(title, fontsize=11)
    figure_.tight_layout(rect=(0, 0, 1, 0.97))
    figure_.savefig(path, dpi=110)
    plt.close(figure_)
    return None


def _short(metric: str) -> str:
    return metric.split(" (")[0][:48]
