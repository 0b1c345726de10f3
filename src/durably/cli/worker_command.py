"""``durably worker module:app``: run a worker process (see :mod:`durably.worker_process`)."""

from __future__ import annotations

import click

from durably.cli.common import Command


@click.command("worker", cls=Command)
@click.argument("app_spec", metavar="MODULE:APP")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="seconds given to running workflows on SIGTERM before the rest are released",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="what the worker logs (to standard error)",
)
def worker_command(app_spec: str, grace: float, log_level: str) -> int:
    """Run a worker: claim and run the app's workflows until SIGTERM or Ctrl-C.

    MODULE:APP names the durably.Durably object, e.g. myproject.jobs:app (the
    current directory is importable, as with python -m). The app's own store URL is
    used; start as many workers as you like on one PostgreSQL database (or on one
    SQLite file, on one machine). On SIGTERM a worker stops claiming, lets running
    workflows finish for --grace seconds, then releases the rest to other workers.
    """
    from durably.worker_process import run_worker

    return run_worker(app_spec, grace_seconds=grace, log_level=log_level)
