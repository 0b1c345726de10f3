"""The ``durably`` command group (click), its commands, and exit codes.

Exit codes: 0 done, 1 the action failed (unknown id, wrong state, database error, or
``replay`` found a divergence), 2 bad usage (unknown command or option, malformed
value, bad ``--db``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from durably import __version__
from durably.cli.check_commands import doctor_command, replay_command
from durably.cli.common import Group
from durably.cli.dashboard_command import dashboard_command
from durably.cli.inspect_commands import list_command, show_command
from durably.cli.purge_command import purge_command
from durably.cli.worker_command import worker_command
from durably.cli.workflow_commands import (
    cancel_command,
    resume_command,
    retry_command,
    signal_command,
)


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="durably")
def cli() -> None:
    """Crash-proof durable workflows for Python.

    Operator commands take --db URL (or DURABLY_DB) and print tables, or one JSON
    document with --json. Times are UTC.
    """


@cli.command("demo", short_help="Crash a workflow with SIGKILL and watch it resume.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="directory for the demo database and log (default: a new temporary directory)",
)
def demo_command(directory: Path | None) -> int:
    """Crash a workflow with SIGKILL and watch it resume (one minute, local SQLite)."""
    from durably.demo import run_demo

    return run_demo(directory)


for _command in (
    list_command,
    show_command,
    signal_command,
    cancel_command,
    resume_command,
    retry_command,
    purge_command,
    replay_command,
    doctor_command,
    worker_command,
    dashboard_command,
):
    cli.add_command(_command)


def run(arguments: list[str]) -> int:
    """Run the command line on ``arguments``; return the exit code."""
    try:
        result = cli.main(args=arguments, prog_name="durably", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except BrokenPipeError:
        # The reader went away (`durably list | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result if isinstance(result, int) else 0
