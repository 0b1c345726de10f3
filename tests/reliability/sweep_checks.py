"""The SIGKILL sweep's stores and checks: a fresh store per crash point, snapshots of
the recorded work, and the checks each recovery must pass (see sweep_driver.py)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import all_features_program as program

from durably.children import PARENT_SIGNAL, child_signal

#: Operation and attempt statuses that end them.
FINISHED = ("COMPLETED", "FAILED")
#: Operations whose recorded result must be the crash-free run's too: which child was
#: started (its id), what it returned, which map items settled.
COMPOSITION = ("CHILD", "CHILD_RESULT", "MAP")


# -- stores -----------------------------------------------------------------------------


@dataclass
class Target:
    """Where one crash point's workflows are stored."""

    spec: dict[str, str]
    directory: Path

    @property
    def log(self) -> Path:
        return self.directory / "side-effects.jsonl"


class Stores:
    """Makes a fresh, empty store per crash point, reads it, and drops it."""

    def __init__(self, kind: str, work: Path, url: str | None, schema_prefix: str | None) -> None:
        self.kind = kind
        self.work = work
        self.url = url
        self.schema_prefix = schema_prefix

    def fresh(self, index: int, label: str) -> Target:
        directory = self.work / f"{index:04d}-{label.replace(':', '-').replace('@', '-')}"
        directory.mkdir(parents=True)
        if self.kind == "sqlite":
            spec = {"kind": "sqlite", "path": str(directory / "durably.db")}
        else:
            assert self.url is not None and self.schema_prefix is not None
            spec = {"kind": "postgres", "url": self.url, "schema": f"{self.schema_prefix}_{index}"}
        return Target(spec, directory)

    def drop(self, target: Target) -> None:
        if target.spec["kind"] == "postgres":
            import psycopg
            from psycopg import sql

            with psycopg.connect(target.spec["url"], autocommit=True) as connection:
                connection.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(target.spec["schema"])
                    )
                )
        shutil.rmtree(target.directory, ignore_errors=True)


#: The recorded work: every row of each table in ``TABLES``, by its primary key.
State = dict[str, dict[tuple[Any, ...], dict[str, Any]]]
TABLES = {
    "workflows": ("workflow_id",),
    "operations": ("workflow_id", "seq"),
    "attempts": ("workflow_id", "seq", "attempt"),
    "signals": ("signal_id",),
}


def snapshot(target: Target) -> State:
    """Every row of the tables that hold recorded work, keyed by primary key."""
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
    if target.spec["kind"] == "sqlite":
        import sqlite3

        path = Path(target.spec["path"])
        if path.exists():
            connection = sqlite3.connect(path)
            connection.row_factory = sqlite3.Row
            try:
                for table in TABLES:
                    query = f"SELECT * FROM {table}"  # noqa: S608 - fixed table names
                    rows[table] = [dict(row) for row in connection.execute(query)]
            except sqlite3.OperationalError:  # killed before the schema was created
                pass
            finally:
                connection.close()
    else:
        import psycopg
        from psycopg import sql
        from psycopg.rows import dict_row

        with psycopg.connect(target.spec["url"], autocommit=True, row_factory=dict_row) as db:
            exists = db.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s"
                " AND table_name = 'signals'",
                (target.spec["schema"],),
            ).fetchone()
            if exists:
                for table in TABLES:
                    statement = sql.SQL("SELECT * FROM {}.{}").format(
                        sql.Identifier(target.spec["schema"]), sql.Identifier(table)
                    )
                    rows[table] = list(db.execute(statement))
    return {
        table: {tuple(row[column] for column in TABLES[table]): row for row in rows[table]}
        for table in TABLES
    }


def progress(state: State) -> object:
    """The recorded work in a snapshot, without ownership (claims change that)."""
    statuses = {
        key: (row["status"], row["result"], row["cancel_requested"])
        for key, row in state["workflows"].items()
    }
    return (statuses, state["operations"], state["attempts"], state["signals"])


def side_effects(target: Target) -> list[dict[str, Any]]:
    """Every body execution logged so far, in order."""
    if not target.log.exists():
        return []
    return [json.loads(line) for line in target.log.read_text().splitlines() if line]


# -- checks -----------------------------------------------------------------------------


@dataclass
class Tally:
    """What the sweep tried and found."""

    crash_points: int = 0
    recoveries: int = 0
    orphaned_runs: int = 0
    processes: int = 0
    checks: int = 0
    violations: list[str] = field(default_factory=list)

    def check(self, holds: bool, problem: str) -> None:
        self.checks += 1
        if not holds:
            self.violations.append(problem)


def check_nothing_lost(
    tally: Tally,
    point: str,
    before: State,
    after: State,
) -> None:
    """Whatever was recorded before a crash is still recorded, unchanged, after it."""
    for key, row in before["workflows"].items():
        later = after["workflows"].get(key)
        tally.check(later is not None, f"{point}: workflow {key} was lost")
        if later is None:
            continue
        same: tuple[str, ...] = ("workflow_name", "input", "deadline_at", "created_at")
        tally.check(
            all(later[column] == row[column] for column in same),
            f"{point}: workflow {key} changed its input or deadline: {row} -> {later}",
        )
    for key, row in before["operations"].items():
        later = after["operations"].get(key)
        tally.check(later is not None, f"{point}: operation {key} was lost")
        if later is None:
            continue
        if row["status"] in FINISHED:
            tally.check(
                later == row, f"{point}: finished operation {key} changed: {row} -> {later}"
            )
        else:  # a waiting sleep or signal: it may finish, its timer never moves
            same = ("kind", "name", "started_at", "wake_at")
            tally.check(
                all(later[column] == row[column] for column in same),
                f"{point}: waiting operation {key} changed its timer: {row} -> {later}",
            )
    for key, row in before["attempts"].items():
        tally.check(after["attempts"].get(key) == row, f"{point}: failed attempt {key} lost")
    for key, row in before["signals"].items():
        later = after["signals"].get(key)
        tally.check(later is not None, f"{point}: signal {key} was lost")
        if later is None:
            continue
        same = ("workflow_id", "name", "payload", "dedup_key", "created_at")
        tally.check(
            all(later[column] == row[column] for column in same),
            f"{point}: signal {key} changed: {row} -> {later}",
        )
        if row["consumed_seq"] is not None:
            tally.check(
                later["consumed_seq"] == row["consumed_seq"],
                f"{point}: signal {key} consumed twice: {row} -> {later}",
            )
    for key, row in before["workflows"].items():
        if row["status"] in ("COMPLETED", "FAILED", "COMPENSATED", "CANCELLED"):
            later = after["workflows"].get(key, {})
            tally.check(
                (later.get("status"), later.get("result")) == (row["status"], row["result"]),
                f"{point}: finished workflow {key} changed: {row} -> {later}",
            )


def check_nothing_repeated(
    tally: Tally,
    point: str,
    before: State,
    effects: list[dict[str, Any]],
    crashed_pids: set[int],
) -> None:
    """No body whose result (or failed attempt) was recorded before the crash ran again
    after it, and no process ran one body attempt twice."""
    recorded_bodies = {
        (row["workflow_id"], row["seq"])
        for row in before["operations"].values()
        if row["status"] in FINISHED and row["kind"] in ("STEP", "COMPENSATION")
    }
    recorded_attempts = {
        (row["workflow_id"], row["seq"], row["attempt"]) for row in before["attempts"].values()
    }
    seen: set[tuple[int, str, int, int]] = set()
    for line in effects:
        body = (line["workflow"], line["seq"])
        attempt = (*body, line["attempt"])
        once = (line["pid"], *attempt)
        tally.check(once not in seen, f"{point}: process {line['pid']} ran {attempt} twice")
        seen.add(once)
        if line["pid"] in crashed_pids:
            continue
        tally.check(
            body not in recorded_bodies,
            f"{point}: {line['name']} of {line['workflow']} was recorded, yet ran again",
        )
        tally.check(
            attempt not in recorded_attempts,
            f"{point}: attempt {line['attempt']} of {line['name']} of {line['workflow']} "
            f"was recorded as failed, yet ran again",
        )


def check_final_state(
    tally: Tally, point: str, final: State, bodies: tuple[tuple[str, str], ...]
) -> None:
    """Exactly one approval signal, consumed exactly once; every body recorded."""
    approvals = [
        row for row in final["signals"].values() if row["dedup_key"] == program.APPROVAL_DEDUP_KEY
    ]
    tally.check(len(approvals) == 1, f"{point}: {len(approvals)} approval signals stored")
    tally.check(
        all(row["consumed_seq"] is not None for row in approvals),
        f"{point}: the approval was never consumed",
    )
    recorded = {
        (row["workflow_id"], row["name"])
        for row in final["operations"].values()
        if row["status"] in FINISHED
    }
    for body in bodies:
        tally.check(body in recorded, f"{point}: {body} has no recorded outcome")


def started_children(state: State) -> dict[str, list[tuple[str, int]]]:
    """Every child id recorded as started, with the (parent, seq) of each operation
    that recorded it."""
    starts: dict[str, list[tuple[str, int]]] = {}
    for (workflow_id, seq), row in sorted(state["operations"].items()):
        if row["kind"] == "CHILD" and row["status"] == "COMPLETED":
            starts.setdefault(json.loads(row["result"]), []).append((workflow_id, seq))
    return starts


def check_children(tally: Tally, point: str, final: State) -> None:
    """Each child was started by exactly one operation of one parent, is linked to that
    parent at most once, and told it of its end at most once.

    (A link or an end signal may be missing: a child that ended before its parent
    linked to it, or a process killed between a child's end and the signal; the parent
    reads the child's record before it waits, and looks again while it waits.)
    """
    for child_id, starts in started_children(final).items():
        tally.check(
            len(starts) == 1 and (child_id,) in final["workflows"],
            f"{point}: child {child_id} was started by {starts}, recorded as "
            f"{final['workflows'].get((child_id,))}",
        )
        parent = starts[0][0]
        links = [
            json.loads(row["payload"])
            for row in final["signals"].values()
            if row["workflow_id"] == child_id and row["name"] == PARENT_SIGNAL
        ]
        tally.check(links in ([], [parent]), f"{point}: child {child_id} linked to {links}")
        ends = [
            row["workflow_id"]
            for row in final["signals"].values()
            if row["name"] == child_signal(child_id)
        ]
        tally.check(ends in ([], [parent]), f"{point}: the end of {child_id} was sent to {ends}")


def outcomes(state: State) -> dict[str, tuple[object, ...]]:
    """How each workflow ended: its name, input, status, result and whether it has a
    deadline (the deadline itself is a time of the run)."""
    return {
        row["workflow_id"]: (
            row["workflow_name"],
            row["input"],
            row["status"],
            row["result"],
            row["deadline_at"] is not None,
        )
        for row in state["workflows"].values()
    }


def histories(state: State) -> dict[str, list[tuple[object, ...]]]:
    """Each workflow's operations (number, kind, name, status) and failed attempts;
    with their results for composition operations (the others record times and random
    values)."""
    shapes: dict[str, list[tuple[object, ...]]] = {}
    for (workflow_id, seq), row in sorted(state["operations"].items()):
        result = row["result"] if row["kind"] in COMPOSITION else None
        shapes.setdefault(workflow_id, []).append(
            (seq, row["kind"], row["name"], row["status"], result)
        )
    for workflow_id, seq, attempt in sorted(state["attempts"]):
        shapes.setdefault(workflow_id, []).append((seq, "failed attempt", attempt))
    return shapes


def check_same_as_crash_free(tally: Tally, point: str, final: State, expected: State) -> None:
    """The recovered run recorded what the crash-free run did: the same workflows (no
    child created twice, none under another id), each ending the same, with the same
    history (the same children started and the same results awaited)."""
    ended, wanted = outcomes(final), outcomes(expected)
    tally.check(
        ended.keys() == wanted.keys(),
        f"{point}: workflows {sorted(ended)} instead of the crash-free {sorted(wanted)}",
    )
    for workflow_id, outcome in wanted.items():
        tally.check(
            ended.get(workflow_id) == outcome,
            f"{point}: {workflow_id} ended {ended.get(workflow_id)} instead of {outcome}",
        )
    recorded, wanted_histories = histories(final), histories(expected)
    for workflow_id, history in wanted_histories.items():
        tally.check(
            recorded.get(workflow_id) == history,
            f"{point}: {workflow_id} recorded {recorded.get(workflow_id)} instead of {history}",
        )
