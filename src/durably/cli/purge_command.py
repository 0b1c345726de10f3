"""``durably purge``: delete finished workflows older than a cutoff, with a progress bar."""

from __future__ import annotations

import sys

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from durably import admin
from durably.admin.documents import moment
from durably.cli.common import (
    Command,
    db_option,
    json_option,
    moment_option,
    run_on_store,
    statuses_option,
)
from durably.cli.output import emit_json, stderr_console, stdout_console, when
from durably.models import WorkflowStatus
from durably.store.base import Store


@click.command("purge", cls=Command, short_help="Delete finished workflows older than a cutoff.")
@click.option(
    "--older-than",
    "older_than",
    callback=moment_option,
    required=True,
    help="delete workflows that finished before TIME: an age like 30d or 12h, or an ISO time",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    callback=statuses_option,
    help="only these final statuses (default: completed,compensated,cancelled; failed "
    "and compensation_failed are kept unless named)",
)
@click.option("--dry-run", is_flag=True, help="count what would be deleted, delete nothing")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation on a terminal")
@db_option
@json_option
def purge_command(
    older_than: int,
    statuses: list[WorkflowStatus] | None,
    dry_run: bool,
    yes: bool,
    db: str | None,
    as_json: bool,
) -> int:
    """Delete finished workflows (with their history and signals) older than a cutoff."""
    chosen = statuses or sorted(admin.DEFAULT_PURGE_STATUSES)
    names = ", ".join(status.lower() for status in sorted(chosen))
    notes = stderr_console()

    async def act(store: Store) -> tuple[admin.PurgePlan, int]:
        plan = await admin.plan_purge(store, finished_before=older_than, statuses=chosen)
        if not as_json:
            notes.print(
                f"{plan.total} workflow(s) with status {names} finished before "
                f"{when(older_than)} UTC"
            )
        if dry_run or plan.total == 0:
            return plan, 0
        if not yes and sys.stdin.isatty() and not as_json:
            click.confirm(f"delete {plan.total} workflow(s)?", abort=True, err=True)
        deleted = 0
        with Progress(
            TextColumn("purging"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=notes.console,
            disable=as_json,
            transient=False,
        ) as progress:
            task = progress.add_task("purge", total=plan.total)
            async for count in admin.purge(store, plan):
                deleted += count
                progress.update(task, completed=deleted, total=max(plan.total, deleted))
        return plan, deleted

    plan, deleted = run_on_store(db, act)
    if as_json:
        emit_json(
            {
                "finished_before": moment(plan.finished_before),
                "statuses": [str(status) for status in sorted(plan.statuses)],
                "dry_run": dry_run,
                "planned": plan.total,
                "purged": deleted,
            }
        )
        return 0
    if dry_run:
        stdout_console().print(f"dry run: {plan.total} workflow(s) would be purged")
    else:
        stdout_console().print(f"purged {deleted} workflow(s)")
    return 0
