"""Desktop / batch job: migrate a real SQLite database in batches, without asyncio.

A backup comes first (restored if anything fails later); then the schema change; then
one durable step per batch of rows, with progress shown as batches finish; then a
check and the new schema version. Kill the program at any moment and start it again:
it continues with the first batch not yet recorded.

    python examples/migration.py [--target FILE] [--rows 5000] [--batch-size 1000]
        [--state DIR] [--db FILE]

Without --target, a sample customer database with --rows rows is created in STATE.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from fake_services.desktop import ProgressWindow

import durably

SCHEMA_VERSION = 2  # customers.name split into first_name and last_name


@dataclass(frozen=True)
class Plan:
    target: str
    backup: str
    batch_size: int


def connect(path: str) -> closing[sqlite3.Connection]:
    """A connection to ``path`` that is closed when the ``with`` block ends."""
    return closing(sqlite3.connect(path, isolation_level=None))


def build_app(database: Path, progress: ProgressWindow) -> durably.SyncDurably:
    """The migration workflow and its steps, as plain (blocking) functions."""
    app = durably.SyncDurably(f"sqlite:///{database}")

    def restore(backup_path: str, target: str) -> None:
        with connect(backup_path) as source, connect(target) as destination:
            source.backup(destination)
        print(f"restored {target} from {backup_path}")

    @app.step()
    def back_up(plan: Plan) -> tuple[str, str]:
        with connect(plan.target) as source, connect(plan.backup) as destination:
            source.backup(destination)
        print(f"backed up {plan.target} to {plan.backup}")
        return plan.backup, plan.target

    @app.step()
    def add_columns(plan: Plan) -> None:
        # Steps run at least once: a step interrupted by a crash runs again, so this
        # one checks what is already there instead of failing on a second ALTER.
        with connect(plan.target) as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(customers)")}
            for column in ("first_name", "last_name"):
                if column not in columns:
                    db.execute(f"ALTER TABLE customers ADD COLUMN {column} TEXT")
                    print(f"added column customers.{column}")

    @app.step()
    def count_batches(plan: Plan) -> int:
        with connect(plan.target) as db:
            (highest,) = db.execute("SELECT coalesce(max(id), 0) FROM customers").fetchone()
        return math.ceil(int(highest) / plan.batch_size)

    @app.step(retry=durably.RetryPolicy.exponential(3, retry_on=(sqlite3.OperationalError,)))
    def migrate_batch(plan: Plan, batch: int, batches: int) -> int:
        first, last = batch * plan.batch_size + 1, (batch + 1) * plan.batch_size
        with connect(plan.target) as db:
            rows = db.execute(
                "SELECT id, name FROM customers WHERE id BETWEEN ? AND ?", (first, last)
            )
            updates = []
            for row_id, name in rows.fetchall():
                if not name.strip():
                    raise ValueError(
                        f"customer {row_id} has an empty name; fix it, then migrate anew"
                    )
                given, _, family = name.strip().rpartition(" ")
                updates.append((given or family, family if given else "", row_id))
            db.execute("BEGIN")
            db.executemany(
                "UPDATE customers SET first_name = ?, last_name = ? WHERE id = ?", updates
            )
            db.execute("COMMIT")
        key = durably.current_step().idempotency_key
        progress.batch_done(
            Path(plan.target).name, batch, batches, len(updates), idempotency_key=key
        )
        return len(updates)

    @app.step()
    def finish(plan: Plan) -> int:
        with connect(plan.target) as db:
            (missing,) = db.execute(
                "SELECT count(*) FROM customers WHERE first_name IS NULL"
            ).fetchone()
            if missing:
                raise RuntimeError(f"{missing} customers were not migrated")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            (total,) = db.execute("SELECT count(*) FROM customers").fetchone()
        return int(total)

    @app.workflow(name="migrate_customers")
    def migrate(ctx: durably.SyncContext, plan: Plan) -> int:
        backup_path, target = back_up(plan)
        ctx.on_failure(restore, backup_path, target)  # undo everything with the backup
        add_columns(plan)
        batches = count_batches(plan)  # recorded: the loop is the same on every replay
        migrated = sum(migrate_batch(plan, batch, batches) for batch in range(batches))
        if finish(plan) != migrated:
            raise RuntimeError("row count changed during the migration")
        return migrated

    return app


def create_sample(path: Path, rows: int) -> None:
    """A version-1 customer database with ``rows`` customers."""
    given = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
    family = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
    with connect(str(path)) as db:
        db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO customers (id, name) VALUES (?, ?)",
            ((i, f"{given[i % 8]} {family[i * 7 % 8]}") for i in range(1, rows + 1)),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA user_version = 1")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and migrate the database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, help="database to migrate (default: a sample)")
    parser.add_argument("--rows", type=int, default=5000, help="rows of the sample database")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--state", type=Path, default=Path(tempfile.gettempdir()) / "durably-examples" / "migration"
    )
    parser.add_argument("--db", type=Path, help="workflow database (default: STATE/workflows.db)")
    args = parser.parse_args(argv)
    args.state.mkdir(parents=True, exist_ok=True)
    target: Path = args.target or args.state / "customers.db"
    if args.target is None and not target.exists():
        create_sample(target, args.rows)
        print(f"created {target} with {args.rows} customers (schema version 1)")
    plan = Plan(
        str(target.resolve()), str(args.state.resolve() / f"{target.stem}.v1.bak"), args.batch_size
    )
    app = build_app(args.db or args.state / "workflows.db", ProgressWindow(args.state))
    workflow_id = f"migrate-{target.stem}-v{SCHEMA_VERSION}"
    with app:
        try:
            status = app.get_workflow(workflow_id).status
            print(f"{workflow_id}: found {status} in the workflow database")
        except durably.WorkflowNotFoundError:
            print(f"{workflow_id}: new")
        try:
            migrated = app.start("migrate_customers", plan, workflow_id=workflow_id).result()
        except durably.WorkflowFailedError as error:
            print(f"{workflow_id} {error.status}: {error.error_type}: {error.error_message}")
            return 1
    print(f"{workflow_id} COMPLETED: {migrated} customers now at schema version {SCHEMA_VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
