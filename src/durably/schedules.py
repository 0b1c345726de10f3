"""Cron schedules: which ticks are due, and the workflow id of each (pure, no I/O).

A schedule fires its workflow once per *tick* of a cron expression. Every process that
runs the schedule computes the same ticks and starts the tick's workflow under the
same deterministic id (:meth:`Schedule.workflow_id`); starting an existing id returns
the existing workflow, so a tick runs once however many processes share the store,
with no table of its own.

Cron expressions are parsed by `cronsim <https://pypi.org/project/cronsim/>`_ (the
``schedules`` extra: ``pip install 'durably[schedules]'``), imported only when a
schedule is declared: ``import durably`` works without it.

Missed ticks (the process was down, or its loop was late) are the ticks after the
newest one fired and up to now. Without backfill only the newest of them runs; with
backfill each of them runs, the newest ``max_backfill`` at most, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from durably.errors import ConfigurationError
from durably.identifiers import validate_identifier

if TYPE_CHECKING:
    from cronsim import CronSim

#: Workflow ids of ticks are ``f"{SCHEDULE_ID_PREFIX}:{schedule name}:{tick in UTC}"``.
SCHEDULE_ID_PREFIX = "sched"
#: How many missed ticks a backfilling schedule runs at most by default.
DEFAULT_MAX_BACKFILL = 100
_TICK_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INSTALL_HINT = "cron schedules need the schedules extra: pip install 'durably[schedules]'"


def _cron_sim(expression: str, start: datetime, *, reverse: bool = False) -> CronSim:
    """A cronsim iterator, or a ConfigurationError naming the extra to install."""
    try:
        from cronsim import CronSim
    except ImportError as error:
        raise ConfigurationError(f"{_INSTALL_HINT} ({error})") from error
    return CronSim(expression, start, reverse=reverse)


def resolve_timezone(timezone: str | tzinfo) -> tzinfo:
    """The tzinfo named by ``timezone`` (an IANA name such as ``"Europe/Paris"``).

    Raises:
        ValueError: no such time zone.
        TypeError: ``timezone`` is neither a string nor a tzinfo.
    """
    if isinstance(timezone, tzinfo):
        return timezone
    if not isinstance(timezone, str):
        raise TypeError(f"timezone must be an IANA name or a tzinfo, not {timezone!r}")
    if timezone.upper() in {"UTC", "Z"}:
        return UTC
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"unknown time zone {timezone!r}: give an IANA name such as 'UTC' or "
            f"'Europe/Paris' (the tzdata package provides them where the system has none)"
        ) from error


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A validated cron expression evaluated in a time zone.

    Five fields (minute hour day-of-month month day-of-week) as in Debian's cron, with
    ``L``, ``W`` and ``#``, and names such as ``MON`` or ``JAN``; a sixth leading field
    for seconds is accepted. Ticks are computed in ``timezone``: a daily ``0 9 * * *``
    in ``Europe/Paris`` fires at 09:00 Paris time, summer and winter; a time skipped
    by a daylight-saving change runs at the first minute after it, a repeated time
    runs once (as Debian's cron does).
    """

    expression: str
    timezone: tzinfo

    @classmethod
    def parse(cls, expression: str, timezone: str | tzinfo = "UTC") -> CronExpression:
        """Validate ``expression`` and ``timezone``.

        Raises:
            ValueError: the expression or the time zone is invalid (the message says
                which field and shows a valid example).
            ConfigurationError: the ``schedules`` extra is not installed.
        """
        if not isinstance(expression, str):
            raise TypeError(
                f"a cron expression is a string such as '*/5 * * * *', not {expression!r}"
            )
        zone = resolve_timezone(timezone)
        try:
            from cronsim import CronSimError
        except ImportError as error:
            raise ConfigurationError(f"{_INSTALL_HINT} ({error})") from error
        try:
            _cron_sim(expression, datetime.now(zone))
        except CronSimError as error:
            raise ValueError(
                f"invalid cron expression {expression!r}: {error}; expected five fields "
                f"'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *' (every "
                f"five minutes) or '0 9 * * MON-FRI' (09:00 on weekdays)"
            ) from error
        return cls(expression, zone)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first tick strictly after ``moment``, in the schedule's time zone; None
        when there is none in the next 50 years."""
        try:
            return next(_cron_sim(self.expression, moment.astimezone(self.timezone)))
        except StopIteration:
            return None

    def latest_ticks(self, *, after: datetime, until: datetime, limit: int) -> list[datetime]:
        """The newest ``limit`` ticks in ``(after, until]``, oldest first."""
        if limit < 1 or until <= after:
            return []
        # Arithmetic in UTC: an aware local time plus a timedelta loses its fold (which
        # of a repeated hour it is), and the search would start an hour off.
        start = (until.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)).astimezone(
            self.timezone
        )
        found: list[datetime] = []
        for tick in _cron_sim(self.expression, start, reverse=True):
            if tick <= after:
                break
            found.append(tick)
            if len(found) == limit:
                break
        found.reverse()
        return found


@dataclass(frozen=True, slots=True)
class Schedule:
    """A workflow fired on the ticks of a cron expression.

    Attributes:
        name: The schedule's name, part of each tick's workflow id.
        workflow_name: The registered workflow that each tick starts.
        cron: When it fires.
        backfill: Run every missed tick (up to ``max_backfill``), not only the newest.
        max_backfill: The most missed ticks run at once when ``backfill`` is on.
        queue: The queue each tick's workflow is enqueued on (None: started at once).
    """

    name: str
    workflow_name: str
    cron: CronExpression
    backfill: bool = False
    max_backfill: int = DEFAULT_MAX_BACKFILL
    queue: str | None = None

    def __post_init__(self) -> None:
        validate_identifier(self.name, "schedule name")
        validate_max_backfill(self.max_backfill)
        if self.queue is not None:
            validate_identifier(self.queue, f"the queue of schedule {self.name!r}")
        # Every tick's id has the same length: check one now, not at the first tick.
        validate_identifier(self.workflow_id(_EPOCH), f"the workflow ids of schedule {self.name!r}")

    def workflow_id(self, tick: datetime) -> str:
        """The workflow id of ``tick``: ``sched:{name}:{tick in UTC, ISO 8601}``.

        The tick is written in UTC so that a local time repeated by a daylight-saving
        change still gives two ids.
        """
        moment = tick.astimezone(UTC).strftime(_TICK_FORMAT)
        return f"{SCHEDULE_ID_PREFIX}:{self.name}:{moment}"

    def tick_of(self, workflow_id: str) -> datetime | None:
        """The tick (in the schedule's time zone) whose workflow id is ``workflow_id``;
        None when it is not one of this schedule's ids."""
        prefix = f"{SCHEDULE_ID_PREFIX}:{self.name}:"
        if not workflow_id.startswith(prefix):
            return None
        try:
            moment = datetime.strptime(workflow_id[len(prefix) :], _TICK_FORMAT)
        except ValueError:
            return None
        return moment.replace(tzinfo=UTC).astimezone(self.cron.timezone)

    def due_ticks(self, *, handled_until: datetime, now: datetime) -> list[datetime]:
        """The ticks to fire now, oldest first: the ticks in ``(handled_until, now]``,
        all of them (the newest ``max_backfill``) with backfill, else the newest one."""
        limit = self.max_backfill if self.backfill else 1
        return self.cron.latest_ticks(after=handled_until, until=now, limit=limit)


def validate_max_backfill(max_backfill: object) -> int:
    """Return ``max_backfill`` if it is a positive integer.

    Raises:
        TypeError: it is not an integer.
        ValueError: it is less than 1.
    """
    if isinstance(max_backfill, bool) or not isinstance(max_backfill, int):
        raise TypeError(f"max_backfill must be an integer, not {max_backfill!r}")
    if max_backfill < 1:
        raise ValueError(f"max_backfill must be at least 1, not {max_backfill}")
    return max_backfill


def micros_to_utc(micros: int) -> datetime:
    """Epoch microseconds as an aware UTC datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(microseconds=micros)


def utc_to_micros(moment: datetime) -> int:
    """An aware datetime as epoch microseconds, exactly."""
    return (moment - _EPOCH) // timedelta(microseconds=1)
