"""The ``durably`` command line.

Only ``durably demo`` exists so far; operator commands (list, show, signal, cancel,
resume, retry, purge, replay, doctor, dashboard, worker) come with the operator tools.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``durably`` command."""
    parser = argparse.ArgumentParser(
        prog="durably", description="Crash-proof durable workflows for Python."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="crash a workflow with SIGKILL and watch it resume (one minute, local SQLite)",
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="directory for the demo database and log (default: a new temporary directory)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``durably`` command; return its exit code."""
    arguments = build_parser().parse_args(argv)
    if arguments.command == "demo":
        from durably.demo import run_demo

        return run_demo(arguments.dir)
    raise AssertionError(arguments.command)  # argparse refuses unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
