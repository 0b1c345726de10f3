"""``durably signal``, ``cancel``, ``resume`` and ``retry``: acting on one workflow."""

from __future__ import annotations

import json
import sys

import click

from durably import admin
from durably.admin.documents import fork_document, signal_document, workflow_document
from durably.cli.common import Command, db_option, json_option, now, run_on_store
from durably.cli.inspect_commands import print_record_line
from durably.cli.output import emit_json, stderr_console, stdout_console
from durably.models import WorkflowStatus


def _parse_payload(text: str | None) -> object:
    if text is None:
        return None
    source = sys.stdin.read() if text == "-" else text
    try:
        return json.loads(source)
    except ValueError as error:
        raise click.BadParameter(
            f"the payload is not valid JSON ({error}); quote text as JSON: '\"ok\"', or give "
            f'an object: \'{{"by": "ann"}}\'',
            param_hint="PAYLOAD",
        ) from None


@click.command(
    "signal", cls=Command, short_help="Send a signal (with a JSON payload) to a workflow."
)
@click.argument("workflow_id")
@click.argument("name")
@click.argument("payload", required=False)
@click.option("--dedup-key", help="send at most once: a second send with this key is ignored")
@db_option
@json_option
def signal_command(
    workflow_id: str,
    name: str,
    payload: str | None,
    dedup_key: str | None,
    db: str | None,
    as_json: bool,
) -> int:
    """Send signal NAME to a workflow, with an optional JSON PAYLOAD ('-' reads stdin)."""
    value = _parse_payload(payload)
    signal, appended = run_on_store(
        db,
        lambda store: admin.send_signal(
            store, workflow_id, name, value, dedup_key=dedup_key, now=now()
        ),
    )
    if as_json:
        emit_json(
            {"workflow_id": workflow_id, "appended": appended, "signal": signal_document(signal)}
        )
        return 0
    if appended:
        stdout_console().print(
            f"signal {name!r} sent to workflow {workflow_id} (signal id {signal.signal_id}); "
            f"a worker delivers it to the workflow's next wait_signal({name!r})"
        )
    else:
        stdout_console().print(
            f"not sent again: dedup key {dedup_key!r} was already used for workflow "
            f"{workflow_id} (signal id {signal.signal_id})"
        )
    return 0


@click.command(
    "cancel", cls=Command, short_help="Cancel a workflow (optionally running its compensations)."
)
@click.argument("workflow_id")
@click.option("--compensate", is_flag=True, help="run the workflow's compensations before it stops")
@db_option
@json_option
def cancel_command(workflow_id: str, compensate: bool, db: str | None, as_json: bool) -> int:
    """Cancel a workflow (durably; a running one stops at its next operation)."""
    record = run_on_store(
        db,
        lambda store: admin.cancel_workflow(store, workflow_id, compensate=compensate, now=now()),
    )
    if as_json:
        emit_json({"workflow": workflow_document(record)})
        return 0
    console = stdout_console()
    print_record_line(console, record)
    if record.status is WorkflowStatus.CANCELLED:
        console.print("cancelled")
    elif compensate and record.status is not WorkflowStatus.RUNNING:
        console.print("cancellation recorded: a worker runs its compensations, then cancels it")
    else:
        console.print(
            "cancellation recorded: the executor running it stops it at its next heartbeat"
        )
    return 0


@click.command("resume", cls=Command, short_help="Run a PARKED or FAILED workflow again.")
@click.argument("workflow_id")
@db_option
@json_option
def resume_command(workflow_id: str, db: str | None, as_json: bool) -> int:
    """Make a PARKED or FAILED workflow run again (after deploying a fix)."""
    record = run_on_store(db, lambda store: admin.resume_workflow(store, workflow_id, now=now()))
    if as_json:
        emit_json({"workflow": workflow_document(record)})
        return 0
    console = stdout_console()
    print_record_line(console, record)
    console.print("resumed: a worker running this workflow picks it up")
    return 0


@click.command("retry", cls=Command, short_help="Fork a workflow, re-running it from step N.")
@click.argument("workflow_id")
@click.option(
    "--from-step",
    "from_step",
    type=click.IntRange(0),
    required=True,
    help="the operation number (#, from `durably show`) that runs again",
)
@click.option("--new-id", help="the new workflow's id (default: <id>-fork-<random>)")
@db_option
@json_option
def retry_command(
    workflow_id: str, from_step: int, new_id: str | None, db: str | None, as_json: bool
) -> int:
    """Fork a workflow: a new workflow with the same input replays the recorded results
    before step N and runs the rest."""
    fork = run_on_store(
        db,
        lambda store: admin.fork_workflow(
            store, workflow_id, from_seq=from_step, new_workflow_id=new_id, now=now()
        ),
    )
    if as_json:
        emit_json(fork_document(fork))
        return 0
    console = stdout_console()
    print_record_line(console, fork.fork)
    replayed = "nothing" if fork.copied == 0 else f"operations #0 to #{from_step - 1}"
    resent = f"; {fork.signals} signal(s) sent to it again" if fork.signals else ""
    console.print(
        f"forked from {workflow_id}: replays {replayed} ({fork.copied} recorded), runs "
        f"#{from_step} onwards{resent}; a worker running {fork.fork.workflow_name!r} picks it up"
    )
    if fork.copied_failures:
        stderr_console().print(
            f"note: {fork.copied_failures} of the replayed operations are recorded failures: "
            f"replay raises them again (fork from an earlier step to run them again)"
        )
    return 0
