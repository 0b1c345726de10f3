"""How commands print: rich tables on a terminal, the same tables without colour or
line wrapping when piped (so that ``grep`` sees whole lines), and ``--json`` as one
JSON document. Messages about the command itself (progress, notes) go to stderr."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from durably.admin import payload_value
from durably.models import WorkflowStatus, micros_to_datetime

#: How piped output is laid out: wide enough that no table row wraps.
PIPED_WIDTH = 4000

STATUS_STYLES = {
    WorkflowStatus.PENDING: "cyan",
    WorkflowStatus.RUNNING: "blue",
    WorkflowStatus.SUSPENDED: "magenta",
    WorkflowStatus.COMPLETED: "green",
    WorkflowStatus.FAILED: "red",
    WorkflowStatus.COMPENSATING: "yellow",
    WorkflowStatus.COMPENSATED: "yellow",
    WorkflowStatus.COMPENSATION_FAILED: "bold red",
    WorkflowStatus.CANCELLED: "dim",
    WorkflowStatus.PARKED: "bold yellow",
}


class Screen:
    """Prints rich renderables: as they are on a terminal; when piped, without colour,
    without wrapping, and without the trailing spaces of padded table cells."""

    def __init__(self, *, stderr: bool = False) -> None:
        stream = sys.stderr if stderr else sys.stdout
        self.is_terminal = stream.isatty()
        self._stderr = stderr
        self.console = (
            Console(stderr=stderr, highlight=False)
            if self.is_terminal
            else Console(stderr=stderr, highlight=False, width=PIPED_WIDTH)
        )

    def print(self, *renderables: RenderableType) -> None:
        """Print, one renderable after the other."""
        if self.is_terminal:
            self.console.print(*renderables)
            return
        with self.console.capture() as capture:
            self.console.print(*renderables)
        lines = [line.rstrip() for line in capture.get().splitlines()]
        click.echo("\n".join(lines), err=self._stderr)


def stdout_console() -> Screen:
    """Where results go."""
    return Screen()


def stderr_console() -> Screen:
    """Where progress and notes go."""
    return Screen(stderr=True)


def new_table(*headers: str, title: str | None = None) -> Table:
    """A table in the house style: rounded on a terminal, plain columns when piped.
    Only the last column wraps; the others keep each value on one line."""
    if sys.stdout.isatty():
        table = Table(title=title, title_justify="left", box=box.ROUNDED, header_style="bold")
    else:
        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            pad_edge=False,
            header_style="bold",
        )
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=index < len(headers) - 1)
    return table


def emit_json(document: object) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def status_text(status: WorkflowStatus | str) -> Text:
    """A status, coloured on a terminal."""
    try:
        style = STATUS_STYLES[WorkflowStatus(status)]
    except ValueError:
        style = ""
    return Text(str(status), style=style)


def when(micros: int | None) -> str:
    """A time as ``2026-01-31 08:00:00`` (UTC), or empty."""
    if micros is None:
        return ""
    return micros_to_datetime(micros).strftime("%Y-%m-%d %H:%M:%S")


def elapsed(micros: int | None) -> str:
    """A duration: ``850µs``, ``12ms``, ``1.5s``, ``3m 4s``, ``2h 5m``."""
    if micros is None:
        return ""
    if micros < 1_000:
        return f"{micros}µs"
    if micros < 1_000_000:
        return f"{micros // 1_000}ms"
    seconds = micros / 1_000_000
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3_600:
        return f"{whole // 60}m {whole % 60}s"
    return f"{whole // 3_600}h {whole % 3_600 // 60}m"


def payload_text(text: str | None, serializer: str, *, limit: int | None = 60) -> str:
    """A stored payload as compact JSON, cut at ``limit`` characters."""
    value = payload_value(text, serializer)
    shown = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if limit is not None and len(shown) > limit:
        return shown[: limit - 1] + "…"
    return shown


def pretty_json(value: Any) -> str:
    """A JSON value, indented."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def shorten(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut at ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
