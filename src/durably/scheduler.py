"""Firing cron schedules: one background task per app, asleep until the next tick.

The tick decisions are pure (:mod:`durably.schedules`); this module adds the I/O:
on start it looks up the newest tick each schedule fired (the newest workflow whose
id is one of its tick ids), fires what was missed since then (see
:class:`~durably.schedules.Schedule` for the backfill rule), then sleeps on the
app's clock until the earliest next tick of all schedules. Firing a tick is starting
its workflow under the tick's deterministic id: when several processes fire the same
tick, the store keeps the first start and the others get the existing workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from durably.clock import Clock
from durably.codec import PayloadCodec
from durably.errors import ConfigurationError, PayloadError, StoreError
from durably.registry import WorkflowDefinition
from durably.schedules import Schedule, micros_to_utc, utc_to_micros
from durably.store.base import Store

logger = logging.getLogger("durably.schedules")

#: How many of a workflow's newest runs are searched for its schedule's last tick.
_HISTORY_SEARCH_LIMIT = 1000
_PAGE = 100


def check_tick_parameter(definition: WorkflowDefinition, codec: PayloadCodec) -> None:
    """Refuse a workflow that cannot take a tick: it must accept exactly one argument
    after its context, a ``datetime``.

    Raises:
        ConfigurationError: naming the workflow and the signature to write.
    """
    sample = micros_to_utc(0)
    expected = f"def {definition.fn.__name__}(ctx, tick: datetime)"
    try:
        arguments = definition.bind_input((sample,), {})
    except TypeError as error:
        raise ConfigurationError(
            f"a scheduled workflow receives its context and the tick's time: write "
            f"{expected} ({error})"
        ) from None
    try:
        codec.encode(arguments, definition.input_hint, what="a tick")
    except PayloadError as error:
        raise ConfigurationError(
            f"scheduled workflow {definition.name!r} must annotate the tick as a "
            f"datetime: {expected} ({error})"
        ) from None


class Scheduler:
    """Fires the ticks of an app's schedules while the app is open.

    Args:
        store: Where the ticks' workflows are found (to learn the last tick fired).
        clock: The app's clock: the loop sleeps on it until the next tick.
        fire: Starts a schedule's workflow for one tick (idempotent by workflow id).
        retry_interval: How long to wait (microseconds) before retrying after a
            store failure.
    """

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        fire: Callable[[Schedule, datetime], Awaitable[None]],
        retry_interval: int,
    ) -> None:
        self._store = store
        self._clock = clock
        self._fire = fire
        self._retry_interval = retry_interval
        self.schedules: dict[str, Schedule] = {}
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, schedule: Schedule) -> Schedule:
        """Add a schedule; a running loop takes it into account at once.

        Raises:
            ConfigurationError: another schedule already has this name.
        """
        existing = self.schedules.setdefault(schedule.name, schedule)
        if existing != schedule:
            raise ConfigurationError(
                f"schedule {schedule.name!r} is already declared (for workflow "
                f"{existing.workflow_name!r}, {existing.cron.expression!r}); give the "
                f"second one another name="
            )
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._restart)
        return existing

    def start(self) -> None:
        """Start the loop (on the running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._restart()

    async def stop(self) -> None:
        """Stop the loop; a tick being fired is either started or not, never half."""
        self._loop = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _restart(self) -> None:
        if self._loop is None:
            return
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.ensure_future(self._run()) if self.schedules else None

    async def last_fired(self, schedule: Schedule) -> datetime | None:
        """The newest tick of ``schedule`` found in the store (None: never fired, or
        its workflows were purged, or it is not among the workflow's newest runs)."""
        for offset in range(0, _HISTORY_SEARCH_LIMIT, _PAGE):
            records = await self._store.list_workflows(
                names=[schedule.workflow_name], limit=_PAGE, offset=offset, newest_first=True
            )
            ticks = [
                tick
                for record in records
                if (tick := schedule.tick_of(record.workflow_id)) is not None
            ]
            if ticks:
                return max(ticks)
            if len(records) < _PAGE:
                return None
        return None

    async def _run(self) -> None:
        handled: dict[str, datetime] = {}
        while True:
            now = micros_to_utc(self._clock.now())
            wake: int | None = None
            for schedule in list(self.schedules.values()):
                try:
                    if schedule.name not in handled:
                        last = await self.last_fired(schedule)
                        # Never fired (a first deploy): no earlier tick is missed, but a
                        # tick falling exactly now is due.
                        handled[schedule.name] = (
                            now - timedelta(microseconds=1) if last is None else last
                        )
                    await self._fire_due(schedule, handled[schedule.name], now)
                except StoreError as error:
                    logger.warning(
                        "schedule %s: the store failed, will retry: %s", schedule.name, error
                    )
                    retry = self._clock.now() + self._retry_interval
                    wake = retry if wake is None else min(wake, retry)
                    continue
                handled[schedule.name] = max(handled[schedule.name], now)
                upcoming = schedule.cron.next_after(handled[schedule.name])
                if upcoming is not None:
                    moment = utc_to_micros(upcoming)
                    wake = moment if wake is None else min(wake, moment)
            if wake is None:
                await asyncio.Event().wait()  # no schedule will ever fire: until stopped
            else:
                await self._clock.sleep_until(wake)

    async def _fire_due(self, schedule: Schedule, handled_until: datetime, now: datetime) -> None:
        ticks = schedule.due_ticks(handled_until=handled_until, now=now)
        if len(ticks) > 1 or (ticks and schedule.cron.next_after(handled_until) != ticks[0]):
            logger.info(
                "schedule %s: ticks were missed since %s; firing %d of them (backfill %s)",
                schedule.name,
                handled_until.isoformat(),
                len(ticks),
                "on" if schedule.backfill else "off",
            )
        for tick in ticks:
            try:
                await self._fire(schedule, tick)
            except StoreError:
                raise
            except Exception:
                logger.exception(
                    "schedule %s: starting the workflow of tick %s failed; the tick is skipped",
                    schedule.name,
                    tick.isoformat(),
                )
