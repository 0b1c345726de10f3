"""What every fake service shares: a state file, idempotency keys, a journal, a trace.

A service's file ``<state dir>/<name>.json`` holds three things:

* ``state``: what the service knows (stock, charges, chunks...). The crash tests compare
  it with the state left by a run without a crash: it must be identical.
* ``responses``: the response given to each idempotency key. A request whose key was
  seen before is not applied again; the original response is returned (as Stripe does
  with its ``Idempotency-Key`` header), and the request is journaled as a duplicate.
* ``journal``: every request received, applied or not, for the tests to inspect.

The file is rewritten with write-to-temporary, fsync, ``os.replace``: a process killed
at any moment leaves the old file or the new one, never half of one.

Crash tests set ``EXAMPLE_PAUSE_AFTER=<service>.<operation>[#n]``: right after the n-th
request of that operation (default: the first) has been applied and saved, the process
prints ``PAUSED after ...`` and blocks until the test kills it. The step that made the
request has not returned, so its result is not recorded: the new process runs it again.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

PAUSE_VARIABLE = "EXAMPLE_PAUSE_AFTER"
_STARTED = time.monotonic()

Json = dict[str, Any]


class ServiceError(Exception):
    """A request the service refused for good (a declined card, a rejected claim)."""


class ServiceUnavailable(ConnectionError):
    """A transient failure (a timeout, a dropped connection): worth retrying."""


def trace(source: str, message: str) -> None:
    """Print one line of the example's trace: seconds since start, who, what."""
    print(f"{time.monotonic() - _STARTED:6.2f}s  {source:<10} {message}", flush=True)


class FakeService:
    """A remote service whose state lives in ``<state_dir>/<name>.json``.

    Args:
        state_dir: Where the state file is kept (created if missing).
        timeouts: Per operation, how many times each new request of it fails with
            :class:`ServiceUnavailable` before it succeeds (counted in the file, so a
            restart does not reset the count).
    """

    name: ClassVar[str]

    def __init__(self, state_dir: Path, *, timeouts: Mapping[str, int] | None = None) -> None:
        self._path = state_dir / f"{self.name}.json"
        self._timeouts = dict(timeouts or {})
        self._lock = threading.Lock()
        self._applied: Counter[str] = Counter()
        state_dir.mkdir(parents=True, exist_ok=True)
        if not self._path.exists():
            self._save({"state": self.initial_state(), "responses": {}, "journal": []})

    def initial_state(self) -> Json:
        """The state of a service nobody has used yet."""
        return {}

    @property
    def state(self) -> Json:
        """The service's current state (a copy)."""
        state: Json = self._load()["state"]
        return state

    def request(
        self, operation: str, key: str | None, apply: Callable[[Json], tuple[Json, str]]
    ) -> Json:
        """Apply one request to the state, at most once per idempotency ``key``.

        ``apply(state)`` changes ``state`` in place and returns the response and a line
        for the trace; it may raise :class:`ServiceError` to refuse the request.

        Returns:
            The response: new, or the original one when ``key`` was seen before.
        """
        with self._lock:
            data = self._load()
            if key is not None and key in data["responses"]:
                self._journal(data, operation, key, "duplicate")
                self._save(data)
                original = data["responses"][key]
                trace(self.name, f"{operation} {key} repeated, not redone: {original['done']}")
                response: Json = original["response"]
                return response
            failures = sum(
                1
                for entry in data["journal"]
                if entry["key"] == key and entry["outcome"] == "unavailable"
            )
            if key is not None and failures < self._timeouts.get(operation, 0):
                self._journal(data, operation, key, "unavailable")
                self._save(data)
                trace(self.name, f"{operation}: timed out (attempt {failures + 1})")
                raise ServiceUnavailable(f"{self.name} timed out")
            state = copy.deepcopy(data["state"])  # a refused request changes nothing
            try:
                response, message = apply(state)
            except ServiceError as error:
                self._journal(data, operation, key, f"refused: {error}")
                self._save(data)
                trace(self.name, f"{operation}: refused: {error}")
                raise
            data["state"] = state
            if key is not None:
                data["responses"][key] = {"response": response, "done": message}
            self._journal(data, operation, key, "applied")
            self._save(data)
            trace(self.name, message)
            self._applied[operation] += 1
            self._pause_if_asked(operation)
            return response

    def _pause_if_asked(self, operation: str) -> None:
        here = f"{self.name}.{operation}"
        count = self._applied[operation]
        wanted = os.environ.get(PAUSE_VARIABLE, "")
        if wanted == f"{here}#{count}" or (wanted == here and count == 1):
            print(f"PAUSED after {here}#{count}", flush=True)
            threading.Event().wait()  # until the crash test kills this process

    @staticmethod
    def _journal(data: Json, operation: str, key: str | None, outcome: str) -> None:
        data["journal"].append({"operation": operation, "key": key, "outcome": outcome})

    def _load(self) -> Json:
        data: Json = json.loads(self._path.read_text(encoding="utf-8"))
        return data

    def _save(self, data: Json) -> None:
        temporary = self._path.with_name(self._path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump(data, file, indent=1, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path)
