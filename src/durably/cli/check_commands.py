"""``durably replay`` and ``durably doctor``: checking code against history, and
explaining why work is stuck."""

from __future__ import annotations

import click
from rich.text import Text

from durably import admin
from durably.admin.documents import diagnosis_document, health_document, replay_document
from durably.cli.common import Command, db_option, json_option, now, run_on_store
from durably.cli.output import Screen, emit_json, new_table, status_text, stdout_console, when
from durably.engine import Durably
from durably.errors import ConfigurationError
from durably.models import WorkflowStatus
from durably.store.base import Store


def _load_app(spec: str) -> Durably:
    """The app named by ``--app`` (see :func:`durably.admin.load_app`); a usage error
    when it cannot be loaded, its module's own failures included."""
    try:
        return admin.load_app(spec)
    except ConfigurationError as error:
        raise click.BadParameter(str(error), param_hint="'--app'") from None


@click.command("replay", cls=Command, short_help="Dry-run new code against a recorded history.")
@click.argument("workflow_id")
@click.option(
    "--app",
    "app_spec",
    required=True,
    metavar="MODULE:APP",
    help="the code to check, e.g. shop:app",
)
@db_option
@json_option
def replay_command(workflow_id: str, app_spec: str, db: str | None, as_json: bool) -> int:
    """Dry-run the current code against a workflow's recorded history and report the
    first divergence. Writes nothing and runs no step. Exits 1 when the code diverges."""
    app = _load_app(app_spec)
    report = run_on_store(
        db, lambda store: admin.replay_workflow(store, app, workflow_id, now=now())
    )
    if as_json:
        emit_json(replay_document(report))
        return 1 if report.diverged else 0
    console = stdout_console()
    record = report.workflow
    line = Text(f"{record.workflow_id} ({record.workflow_name}), recorded ")
    line.append_text(status_text(record.status))
    line.append(f" with {report.recorded_operations} operation(s)")
    console.print(line)
    version = (
        f"version {record.version!r} (unchanged)"
        if record.version == report.code_version
        else f"recorded version {record.version!r}, code version {report.code_version!r}"
    )
    console.print(version)
    console.print(f"replayed to: {report.replayed_to}")
    if report.diverged:
        console.print(Text(f"DIVERGED: {report.message}", style="bold red"))
        return 1
    console.print(Text(f"ok: {report.message}", style="green"))
    return 0


@click.command("doctor", cls=Command, short_help="Explain why a workflow is not progressing.")
@click.argument("workflow_id", required=False)
@click.option(
    "--app",
    "app_spec",
    metavar="MODULE:APP",
    help="the deployed code: also check that it registers the workflow and its version",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="without an id: examine at most this many unfinished workflows",
)
@db_option
@json_option
def doctor_command(
    workflow_id: str | None, app_spec: str | None, limit: int, db: str | None, as_json: bool
) -> int:
    """Explain why a workflow is not progressing, and what to do. Without an id, check
    the executors and every unfinished workflow."""
    app = None if app_spec is None else _load_app(app_spec)
    console = stdout_console()
    if workflow_id is not None:

        async def diagnose(store: Store) -> admin.Diagnosis:
            return await admin.diagnose_workflow(store, workflow_id, now=now(), app=app)

        diagnosis = run_on_store(db, diagnose)
        if as_json:
            emit_json(diagnosis_document(diagnosis))
            return 0
        _print_diagnosis(console, diagnosis)
        return 0
    report = run_on_store(db, lambda store: admin.check_store(store, now=now(), limit=limit))
    if as_json:
        emit_json(health_document(report))
        return 0
    _print_health(console, report)
    return 0


def _print_diagnosis(console: Screen, diagnosis: admin.Diagnosis) -> None:
    record = diagnosis.workflow
    line = Text(f"workflow {record.workflow_id} ({record.workflow_name}) is ")
    line.append_text(status_text(record.status))
    console.print(line)
    for finding in diagnosis.findings:
        marker = Text("  ✗ ", style="bold red") if finding.is_problem else Text("  • ")
        console.print(marker + Text(finding.summary))
        for action in finding.actions:
            console.print(Text(f"      → {action}", style="cyan"))


def _print_health(console: Screen, report: admin.HealthReport) -> None:
    executors = new_table(
        "EXECUTOR", "HOST", "PID", "LAST HEARTBEAT (UTC)", "STATE", title="executors"
    )
    for executor in report.executors:
        state = "alive" if executor.is_alive else f"gone: {executor.reason}"
        executors.add_row(
            executor.executor_id,
            executor.hostname,
            str(executor.pid),
            when(executor.heartbeat_at),
            Text(state, style="green" if executor.is_alive else "red"),
        )
    if report.executors:
        console.print(executors)
    else:
        console.print("executors: none registered (no worker is running)")
    counts = Text("workflows: ")
    for index, status in enumerate(WorkflowStatus):
        total = report.counts.get(status)
        if total:
            if index and len(counts) > len("workflows: "):
                counts.append(", ")
            counts.append_text(status_text(status))
            counts.append(f" {total}")
    if not report.counts:
        counts.append("none")
    console.print(counts)
    more = f" (the first {report.examined}; raise --limit)" if report.truncated else ""
    console.print(
        f"examined {report.examined} unfinished or dead-letter workflow(s){more}: "
        f"{len(report.problems)} need attention"
    )
    for diagnosis in report.problems:
        _print_diagnosis(console, diagnosis)
