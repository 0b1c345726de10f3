"""The ``durably`` command line.

Operator commands (list, show, signal, cancel, resume, retry, purge, replay, doctor)
and ``worker`` need the ``cli`` extra (click and rich): ``pip install 'durably[cli]'``. ``durably
demo`` works without it, on the standard library alone, so that ``pip install . &&
durably demo`` runs on a fresh machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

#: Commands that need the ``cli`` extra.
OPERATOR_COMMANDS = frozenset(
    {
        "list",
        "show",
        "signal",
        "cancel",
        "resume",
        "retry",
        "purge",
        "replay",
        "doctor",
        "worker",
        "dashboard",
    }
)
_EXTRA_MODULES = frozenset({"click", "rich"})


def build_parser() -> argparse.ArgumentParser:
    """The argument parser used when the ``cli`` extra is missing (``demo`` only)."""
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
    """Run the ``durably`` command; return its exit code (0 ok, 1 failed, 2 bad usage)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        from durably.cli.app import run
    except ImportError as error:
        missing = (error.name or "").partition(".")[0]
        if missing not in _EXTRA_MODULES:
            raise
        return _run_without_extra(arguments, missing)
    return run(arguments)


def _run_without_extra(arguments: list[str], missing: str) -> int:
    if arguments and arguments[0] in OPERATOR_COMMANDS:
        print(
            f"durably {arguments[0]} needs the command-line extra ({missing} is not "
            f"installed): pip install 'durably[cli]'",
            file=sys.stderr,
        )
        return 1
    parsed = build_parser().parse_args(arguments)
    if parsed.command == "demo":
        from durably.demo import run_demo

        return run_demo(parsed.dir)
    raise AssertionError(parsed.command)  # argparse refuses unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
