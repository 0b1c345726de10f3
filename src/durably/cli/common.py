"""What every operator command shares: ``--db`` and ``--json``, parsing of times,
durations and statuses, and running an admin action on an open store with errors
turned into exit codes (1: the action failed, 2: bad usage)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from durably import admin
from durably.clock import SystemClock
from durably.errors import ConfigurationError, DurablyError
from durably.models import WorkflowStatus, datetime_to_micros
from durably.store import Store

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_FORMS = "an age like 30d, 12h, 1h30m, 2w or 90s"


def _write_usage(
    command: click.Command, ctx: click.Context, formatter: click.HelpFormatter
) -> None:
    """Usage lines start with ``usage:``, as argparse writes them."""
    pieces = command.collect_usage_pieces(ctx)
    formatter.write_usage(ctx.command_path, " ".join(pieces), prefix="usage: ")


class Command(click.Command):
    """A ``durably`` command."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Write the usage line."""
        _write_usage(self, ctx, formatter)


class Group(click.Group):
    """The ``durably`` command group."""

    command_class = Command

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Write the usage line."""
        _write_usage(self, ctx, formatter)


class ActionFailed(click.ClickException):
    """The action could not be done (unknown id, wrong state, database failure): exit 1."""

    exit_code = 1


def now() -> int:
    """The current time in epoch microseconds."""
    return SystemClock().now()


def db_option(function: F) -> F:
    """``--db URL`` (or the ``DURABLY_DB`` environment variable)."""
    return click.option(
        "--db",
        "db",
        envvar="DURABLY_DB",
        metavar="URL",
        help="the workflow database: sqlite:///path.db, or postgresql://user@host/db "
        "(default: $DURABLY_DB)",
    )(function)


def json_option(function: F) -> F:
    """``--json``: one JSON document on stdout instead of tables."""
    return click.option(
        "--json", "as_json", is_flag=True, help="print one JSON document instead of tables"
    )(function)


def parse_duration(text: str) -> int:
    """A duration like ``30d``, ``12h``, ``1h30m``, ``2w``, ``90s`` in microseconds.

    Raises:
        ValueError: the text is not such a duration.
    """
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration: use {_DURATION_FORMS}")
    seconds = sum(
        int(value) * _UNITS[unit]
        for value, unit in zip(match.groups(), _UNITS, strict=True)
        if value is not None
    )
    return seconds * 1_000_000


def parse_moment(text: str, *, current: int) -> int:
    """A point in time: an age (``30d`` means 30 days before ``current``) or an ISO 8601
    date or date-time (naive means UTC), in epoch microseconds.

    Raises:
        ValueError: neither form.
    """
    try:
        return current - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use {_DURATION_FORMS} (meaning that long ago), or an "
            f"ISO date or date-time like 2026-01-31 or 2026-01-31T08:00:00+01:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime_to_micros(moment)


def moment_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Parse a time option (an age like ``30d``, or an ISO date-time)."""
    if value is None:
        return None
    try:
        return parse_moment(value, current=now())
    except ValueError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def statuses_option(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[WorkflowStatus] | None:
    """Parse a repeatable status option whose values may be comma-separated, in any
    case (``--status failed,parked``); None when not given."""
    statuses = []
    for value in values:
        for part in value.split(","):
            try:
                statuses.append(WorkflowStatus(part.strip().upper()))
            except ValueError:
                valid = ", ".join(status.lower() for status in WorkflowStatus)
                raise click.BadParameter(
                    f"{part.strip()!r} is not a status; use one of: {valid}", ctx, param
                ) from None
    return statuses or None


def open_operator_store(url: str | None) -> Store:
    """The store named by ``--db`` (see :func:`durably.admin.open_operator_store`).

    Raises:
        click.UsageError: no URL, or one that names no usable store.
    """
    if not url:
        raise click.UsageError(
            "no database given: pass --db URL or set DURABLY_DB (for example "
            "--db sqlite:///app.db or --db postgresql://user@host/dbname)"
        )
    try:
        return admin.open_operator_store(url)
    except ConfigurationError as error:
        raise click.BadParameter(str(error), param_hint="'--db'") from None


def run_on_store(url: str | None, action: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
    """Open the store, run ``action`` on it, close it; turn errors into exit codes.

    Raises:
        click.UsageError: bad input (exit 2).
        ActionFailed: the action failed (exit 1).
    """
    store = open_operator_store(url)

    async def act() -> T:
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    try:
        return asyncio.run(act())
    except ConfigurationError as error:
        raise click.UsageError(str(error)) from None
    except DurablyError as error:
        raise ActionFailed(str(error)) from None
    except ValueError as error:  # malformed ids or arguments found by the admin layer
        raise click.UsageError(str(error)) from None
