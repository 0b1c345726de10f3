"""``durably list`` and ``durably show``: reading workflows."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table
from rich.text import Text

from durably import admin
from durably.admin.documents import detail_document, page_document
from durably.cli.common import (
    Command,
    db_option,
    json_option,
    moment_option,
    now,
    run_on_store,
    statuses_option,
)
from durably.cli.output import (
    Screen,
    elapsed,
    emit_json,
    new_table,
    payload_text,
    pretty_json,
    shorten,
    status_text,
    stdout_console,
    when,
)
from durably.models import ErrorInfo, OperationKind, OperationStatus, WorkflowRecord, WorkflowStatus


@click.command("list", cls=Command, short_help="List workflows by status, name, queue and time.")
@db_option
@json_option
@click.option(
    "--status",
    "statuses",
    multiple=True,
    callback=statuses_option,
    help="only these statuses (repeat, or separate with commas: failed,parked)",
)
@click.option("--name", "names", multiple=True, help="only this workflow name (repeatable)")
@click.option("--queue", "queues", multiple=True, help="only workflows on this queue (repeatable)")
@click.option(
    "--since", callback=moment_option, help="created at or after TIME (30d = 30 days ago, or ISO)"
)
@click.option(
    "--until", callback=moment_option, help="created before TIME (12h = 12 hours ago, or ISO)"
)
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="page size"
)
@click.option("--offset", type=click.IntRange(0), default=0, help="skip this many (paging)")
@click.option("--oldest-first", is_flag=True, help="oldest first (default: newest first)")
def list_command(
    db: str | None,
    as_json: bool,
    statuses: list[WorkflowStatus] | None,
    names: tuple[str, ...],
    queues: tuple[str, ...],
    since: int | None,
    until: int | None,
    limit: int,
    offset: int,
    oldest_first: bool,
) -> int:
    """List workflows, newest first, filtered by status, name, queue and creation time."""
    page = run_on_store(
        db,
        lambda store: admin.list_workflows(
            store,
            statuses=statuses,
            names=list(names) or None,
            queues=list(queues) or None,
            created_after=None if since is None else since - 1,
            created_before=until,
            limit=limit,
            offset=offset,
            newest_first=not oldest_first,
        ),
    )
    if as_json:
        emit_json(page_document(page))
        return 0
    console = stdout_console()
    table = new_table("ID", "NAME", "STATUS", "CREATED (UTC)", "UPDATED (UTC)", "DETAIL")
    for record in page.workflows:
        table.add_row(
            record.workflow_id,
            record.workflow_name,
            status_text(record.status),
            when(record.created_at),
            when(record.updated_at),
            _detail(record),
        )
    console.print(table)
    shown = len(page.workflows)
    first = page.offset + 1 if shown else page.offset
    more = f"; next page: --offset {page.next_offset}" if page.next_offset is not None else ""
    console.print(f"{shown} workflow(s) shown ({first}-{page.offset + shown}){more}")
    return 0


def _detail(record: WorkflowRecord) -> str:
    error = record.error_info
    if record.status is WorkflowStatus.SUSPENDED and record.wait_reason:
        return shorten(record.wait_reason)
    if error is not None and record.status is not WorkflowStatus.COMPLETED:
        return shorten(f"{error.type}: {error.message}")
    if record.owner is not None:
        return f"owner {record.owner}"
    return ""


@click.command(
    "show", cls=Command, short_help="Show a workflow's input, outcome and step timeline."
)
@click.argument("workflow_id")
@db_option
@json_option
def show_command(workflow_id: str, db: str | None, as_json: bool) -> int:
    """Show a workflow: input, status, result or error, and its step timeline."""
    detail = run_on_store(db, lambda store: admin.describe_workflow(store, workflow_id))
    if as_json:
        emit_json(detail_document(detail))
        return 0
    console = stdout_console()
    record = detail.workflow
    console.print(_summary(record))
    console.print(Text("input", style="bold"))
    console.print(pretty_json(admin.payload_value(record.input, record.serializer)))
    error = record.error_info
    if record.status is WorkflowStatus.COMPLETED:
        console.print(Text("result", style="bold"))
        console.print(pretty_json(admin.payload_value(record.result, record.serializer)))
    elif error is not None:
        console.print(Text("error", style="bold"))
        console.print(Text(f"{error.type}: {error.message}", style="red"))
        if error.traceback:
            console.print(Text("Traceback (frames only):\n" + error.traceback.rstrip()))
    console.print(_timeline(detail, now()))
    for entry in detail.timeline:
        if entry.error is not None and entry.error.traceback and entry.status != admin.RETRYING:
            console.print(Text(f"error of #{entry.seq} {entry.name}", style="bold"))
            console.print(Text(f"{entry.error.type}: {entry.error.message}", style="red"))
            console.print(Text("Traceback (frames only):\n" + entry.error.traceback.rstrip()))
    if detail.signals:
        console.print(_signals(detail))
    return 0


def _summary(record: WorkflowRecord) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, Any]] = [
        ("workflow", record.workflow_id),
        ("name", record.workflow_name),
        ("status", status_text(record.status)),
        ("version", record.version or "(none)"),
        ("created", when(record.created_at) + " UTC"),
        ("updated", when(record.updated_at) + " UTC"),
    ]
    if record.finished_at is not None:
        rows.append(("finished", when(record.finished_at) + " UTC"))
    if record.owner is not None:
        rows.append(("owner", f"{record.owner} (lease until {when(record.lease_until)} UTC)"))
    if record.wait_reason and record.status is WorkflowStatus.SUSPENDED:
        rows.append(("waiting", record.wait_reason))
    if record.wake_at is not None:
        rows.append(("wakes at", when(record.wake_at) + " UTC"))
    if record.deadline_at is not None:
        rows.append(("deadline", when(record.deadline_at) + " UTC"))
    if record.cancel_requested:
        compensating = " (with compensation)" if record.compensate_on_cancel else ""
        rows.append(("cancel", f"requested{compensating}"))
    if record.queue_name is not None:
        rows.append(("queue", f"{record.queue_name} (priority {record.priority})"))
    if record.recovery_attempts:
        rows.append(("recoveries", str(record.recovery_attempts)))
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _timeline(detail: admin.WorkflowDetail, current: int) -> Table:
    table = new_table(
        "#", "OPERATION", "STATUS", "TRIES", "STARTED (UTC)", "TOOK", "DETAIL", title="timeline"
    )
    for entry in detail.timeline:
        kind = "step?" if entry.kind is None else entry.kind.lower()
        label = f"{kind} {entry.name or ''}".strip()
        if entry.is_compensation:
            label = f"↩ {entry.name}"
        table.add_row(
            str(entry.seq),
            label,
            entry.status,
            str(entry.attempts),
            when(entry.started_at),
            elapsed(entry.duration),
            _entry_detail(entry, current),
        )
        for attempt in entry.failed_attempts:
            info = ErrorInfo.from_json(attempt.error)
            retry = f"; retry at {when(attempt.next_attempt_at)}" if attempt.next_attempt_at else ""
            table.add_row(
                "",
                f"  attempt {attempt.attempt}",
                "failed",
                "",
                when(attempt.started_at),
                elapsed(attempt.finished_at - attempt.started_at),
                shorten(f"{info.type}: {info.message}") + retry,
            )
    record = detail.workflow
    if record.status is WorkflowStatus.SUSPENDED and record.wait_reason:
        table.add_row("…", "now", "SUSPENDED", "", "", "", record.wait_reason)
    return table


def _entry_detail(entry: admin.TimelineEntry, current: int) -> str:
    if entry.error is not None and entry.status != admin.RETRYING:
        return shorten(f"{entry.error.type}: {entry.error.message}")
    if entry.status == admin.RETRYING:
        return f"next attempt at {when(entry.wake_at)}"
    if entry.kind is OperationKind.PATCH:
        return "took the new code path of this change (ctx.patched)"
    if entry.kind is OperationKind.SLEEP:
        woke = entry.wake_at is not None and entry.wake_at <= current
        return f"{'slept' if woke else 'sleeping'} until {when(entry.wake_at)}"
    if entry.kind is OperationKind.SIGNAL:
        if entry.signal is not None:
            payload = payload_text(entry.signal.payload, entry.signal.serializer)
            return f"received {payload} (sent {when(entry.signal.created_at)})"
        if entry.status == OperationStatus.WAITING:
            return f"waiting, times out at {when(entry.wake_at)}"
        return f"timed out at {when(entry.wake_at)}"
    if entry.status == OperationStatus.COMPLETED and entry.result not in (None, "null"):
        return f"→ {payload_text(entry.result, entry.serializer)}"
    return ""


def _signals(detail: admin.WorkflowDetail) -> Table:
    table = new_table("ID", "SIGNAL", "SENT (UTC)", "PAYLOAD", "CONSUMED", title="signals")
    for signal in detail.signals:
        consumed = (
            "pending"
            if signal.consumed_seq is None
            else f"by #{signal.consumed_seq} at {when(signal.consumed_at)}"
        )
        table.add_row(
            str(signal.signal_id),
            signal.name,
            when(signal.created_at),
            payload_text(signal.payload, signal.serializer),
            consumed,
        )
    return table


def print_record_line(console: Screen, record: WorkflowRecord) -> None:
    """One line about a workflow: id, name and status."""
    line = Text(f"{record.workflow_id} ({record.workflow_name}): ")
    line.append_text(status_text(record.status))
    console.print(line)
