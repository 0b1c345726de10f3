"""What every scenario shares: the backends, fresh database locations, the children
that measure durably, the raw references and DBOS, and the rows of the result table."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import BenchError, Child, Summary, child_command, run_child, summarize

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Backend:
    """A database and durability level that durably and its references run on."""

    key: str
    label: str
    kind: str  # "sqlite" or "postgres"
    synchronous: str = ""
    #: DBOS runs on this backend's row: SQLite FULL (DBOS's default SQLite setup also
    #: fsyncs every commit) and PostgreSQL.
    compare_dbos: bool = False

    @property
    def raw_label(self) -> str:
        """How the raw reference of this backend is named in the table."""
        if self.kind == "sqlite":
            return f"raw SQLite WAL {self.synchronous}"
        return "raw PostgreSQL (loopback)"


SQLITE_NORMAL = Backend("sqlite-normal", "SQLite NORMAL", "sqlite", "NORMAL")
SQLITE_FULL = Backend("sqlite-full", "SQLite FULL", "sqlite", "FULL", compare_dbos=True)
POSTGRES = Backend("postgres", "PostgreSQL", "postgres", compare_dbos=True)
BACKENDS = (SQLITE_NORMAL, SQLITE_FULL, POSTGRES)


@dataclass
class Row:
    """One line of the result table: a durably figure next to its references."""

    scenario: str
    metric: str
    unit: str
    backend: str
    higher_is_better: bool
    durably: Summary | None
    reference: Summary | None = None
    reference_label: str = ""
    dbos: Summary | None = None
    dbos_note: str = ""
    note: str = ""
    #: A stable name for lookups by the targets (``scenario/metric/backend``).
    key: str = ""

    @property
    def reference_ratio(self) -> float | None:
        """durably's median divided by the reference's median."""
        if self.durably is None or self.reference is None or self.reference.median == 0:
            return None
        return self.durably.median / self.reference.median

    @property
    def dbos_advantage(self) -> float | None:
        """How many times better durably's median is than DBOS's (>1: durably wins)."""
        if self.durably is None or self.dbos is None:
            return None
        if self.higher_is_better:
            return self.durably.median / self.dbos.median if self.dbos.median else None
        return self.dbos.median / self.durably.median if self.durably.median else None

    def to_json(self) -> dict[str, Any]:
        """The row as plain JSON values."""
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "backend": self.backend,
            "higher_is_better": self.higher_is_better,
            "durably": None if self.durably is None else self.durably.to_json(),
            "reference": None if self.reference is None else self.reference.to_json(),
            "reference_label": self.reference_label,
            "reference_ratio": self.reference_ratio,
            "dbos": None if self.dbos is None else self.dbos.to_json(),
            "dbos_note": self.dbos_note,
            "dbos_advantage": self.dbos_advantage,
            "note": self.note,
            "key": self.key,
        }


@dataclass
class Samples:
    """Samples collected over the repetitions of a scenario, by name."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        """Record one sample of ``name``."""
        self.values.setdefault(name, []).append(value)

    def summary(self, name: str) -> Summary | None:
        """The summary of ``name``, or None when it was never measured."""
        values = self.values.get(name)
        return summarize(values) if values else None


class DbosUnavailableError(BenchError):
    """DBOS cannot run here; the message says why."""


@dataclass
class Bench:
    """The settings of one benchmark run and the means to take samples."""

    quick: bool
    repeat: int
    workdir: Path
    postgres_url: str = DEFAULT_POSTGRES_URL
    dbos_python: str | None = None
    dbos_reason: str = "not measured: DBOS was not set up"
    verbose: bool = True
    #: The backends the scenarios run on (PostgreSQL-only scenarios need POSTGRES).
    backends: tuple[Backend, ...] = BACKENDS
    #: Sizes divided further for the smoke test (a tenth of the quick sizes).
    tiny: bool = False
    #: Multiplies the full sizes of the two heaviest scenarios (recovery, idle).
    heavy_scale: float = 1.0
    #: Child-process timeout, in seconds.
    timeout: float = 1800.0
    log: Callable[[str], None] = field(default=lambda text: print(text, file=sys.stderr))

    def heavy_size(self, full: int, quick: int) -> int:
        """Like :meth:`size`, with the full size multiplied by ``--heavy-scale``."""
        if self.quick or self.tiny:
            return self.size(full, quick)
        return max(round(full * self.heavy_scale), quick)

    def size(self, full: int, quick: int) -> int:
        """The full-run size, or the quick one under ``--quick``."""
        if self.tiny:
            return max(quick // 10, 2)
        return quick if self.quick else full

    # -- locations ------------------------------------------------------------------

    @contextlib.contextmanager
    def location(self, backend: Backend) -> Iterator[dict[str, Any]]:
        """A new, empty place for one sample: a directory (SQLite) or a schema
        (PostgreSQL), removed afterwards."""
        if backend.kind == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="sample-", dir=self.workdir))
            try:
                yield {
                    "kind": "sqlite",
                    "synchronous": backend.synchronous,
                    "directory": str(directory),
                    "path": str(directory / "durably.db"),
                    "url": f"sqlite:///{directory / 'dbos.sqlite'}",
                }
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        else:
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            try:
                yield {"kind": "postgres", "url": self.postgres_url, "schema": schema}
            finally:
                self.drop_schema(schema)

    def drop_schema(self, schema: str) -> None:
        """Drop a PostgreSQL schema made for one sample."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.postgres_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )

    # -- samples --------------------------------------------------------------------

    def durably(self, module: str, function: str, **params: Any) -> dict[str, Any]:
        """Run a durably workload in a new process (this interpreter's environment)."""
        return run_child(
            child_command(sys.executable, module, function, params), timeout=self.timeout
        )

    def durably_child(self, module: str, function: str, **params: Any) -> Child:
        """Start a durably workload in a new process and return it without waiting."""
        return Child(child_command(sys.executable, module, function, params))

    def dbos(self, function: str, **params: Any) -> dict[str, Any]:
        """Run a DBOS workload in a new process of DBOS's own virtualenv.

        Raises:
            DbosUnavailableError: DBOS is not installed here (the reason is kept).
        """
        return run_child(self._dbos_command(function, params), timeout=self.timeout)

    def dbos_child(self, function: str, **params: Any) -> Child:
        """Start a DBOS workload in a new process and return it without waiting."""
        return Child(self._dbos_command(function, params))

    def _dbos_command(self, function: str, params: dict[str, Any]) -> list[str]:
        if self.dbos_python is None:
            raise DbosUnavailableError(self.dbos_reason)
        return child_command(self.dbos_python, "dbos_driver", function, params)

    def raw_commit_rate(
        self,
        backend: Backend,
        *,
        rows_per_commit: int = 1,
        payload_bytes: int = 2,
        seconds: float | None = None,
        max_rows: int = 20_000,
    ) -> float:
        """Raw committed rows per second on ``backend``, in a new process and location
        (for at most ``seconds``: 1 s, or 0.2 s under ``--quick``)."""
        if seconds is None:
            seconds = self._reference_seconds
        with self.location(backend) as where:
            if backend.kind == "sqlite":
                result = self.durably(
                    "raw",
                    "sqlite_commit_rate",
                    path=where["path"],
                    synchronous=backend.synchronous,
                    rows_per_commit=rows_per_commit,
                    payload_bytes=payload_bytes,
                    seconds=seconds,
                    max_rows=max_rows,
                )
            else:
                result = self.durably(
                    "raw",
                    "postgres_commit_rate",
                    url=where["url"],
                    schema=where["schema"],
                    rows_per_commit=rows_per_commit,
                    payload_bytes=payload_bytes,
                    seconds=seconds,
                    max_rows=max_rows,
                )
        return float(result["rows_per_second"])

    def checkpoint_commit_rate(
        self,
        backend: Backend,
        *,
        rows_per_commit: int = 1,
        steps_per_workflow: int | None = None,
        max_rows: int = 20_000,
    ) -> float:
        """Checkpoints per second with durably's own statement, schema and pragmas on
        the bare driver: one workflow's, one per commit, or ``rows_per_commit`` workflows'
        of ``steps_per_workflow`` steps, one of each per commit (SQLite backends; see
        :func:`bench.raw.sqlite_checkpoint_rate`)."""
        with self.location(backend) as where:
            result = self.durably(
                "raw",
                "sqlite_checkpoint_rate",
                path=where["path"],
                synchronous=backend.synchronous,
                seconds=self._reference_seconds,
                max_rows=max_rows,
                rows_per_commit=rows_per_commit,
                steps_per_workflow=steps_per_workflow,
            )
        return float(result["rows_per_second"])

    @property
    def _reference_seconds(self) -> float:
        """How long a raw reference is timed: 1 s, or 0.2 s for a smoke run."""
        return 0.2 if self.quick or self.tiny else 1.0

    def try_dbos(
        self, samples: Samples, notes: dict[str, str], key: str, take: Callable[[], float]
    ) -> None:
        """Take one DBOS sample into ``samples[key]``; on failure keep the reason in
        ``notes[key]`` (shown in the table instead of a figure, never invented)."""
        if key in notes:
            return  # it failed before: do not retry every repetition
        try:
            samples.add(key, take())
        except DbosUnavailableError as error:
            notes[key] = str(error)
        except BenchError as error:
            first = str(error).strip().splitlines()
            self.log(f"  DBOS failed on {key}: {error}")
            notes[key] = (
                f"not measured: DBOS run failed ({first[0][:120] if first else 'no output'})"
            )

    def progress(self, text: str) -> None:
        """Print a progress line (to stderr, so the table on stdout stays clean)."""
        if self.verbose:
            self.log(f"[{time.strftime('%H:%M:%S')}] {text}")
