-- durably schema version 4: the same operations table, with its status CHECK written
-- as comparisons instead of an IN list.
-- SQLite evaluates `status IN ('COMPLETED', 'FAILED', 'WAITING')` in a CHECK by
-- building a temporary table of the three values for every row it writes: measured
-- with callgrind on the checkpoint statement, 77,600 instructions per step against
-- 47,100 with the comparisons (and 47,300 with no CHECK at all). SQLite changes a
-- CHECK only by rebuilding the table: this copies every operation once, in the
-- migration's transaction. No other table refers to operations; the view that reads
-- it is dropped and made again around the rebuild.
DROP VIEW workflows_with_progress;

CREATE TABLE operations_v4 (
    workflow_id TEXT NOT NULL REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL
                CHECK (status = 'COMPLETED' OR status = 'FAILED' OR status = 'WAITING'),
    result      TEXT,
    error       TEXT,
    serializer  TEXT NOT NULL DEFAULT 'json',
    attempts    INTEGER NOT NULL DEFAULT 1,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    wake_at     INTEGER,
    PRIMARY KEY (workflow_id, seq)
) WITHOUT ROWID;

INSERT INTO operations_v4 (
    workflow_id, seq, kind, name, status, result, error, serializer, attempts, started_at,
    finished_at, wake_at)
SELECT
    workflow_id, seq, kind, name, status, result, error, serializer, attempts, started_at,
    finished_at, wake_at
FROM operations;

DROP TABLE operations;

ALTER TABLE operations_v4 RENAME TO operations;

CREATE VIEW workflows_with_progress AS
SELECT
    w.workflow_id, w.workflow_name, w.status, w.version, w.input, w.result, w.error,
    w.serializer, w.owner, w.fence, w.lease_until, w.wake_at, w.deadline_at,
    w.wait_reason, w.cancel_requested, w.compensate_on_cancel, w.recovery_attempts,
    w.created_at,
    max(w.updated_at, coalesce((
        SELECT coalesce(o.finished_at, o.started_at) FROM operations AS o
        WHERE o.workflow_id = w.workflow_id
        ORDER BY o.seq DESC LIMIT 1), 0)) AS updated_at,
    w.finished_at, w.queue_name, w.priority, w.started_at
FROM workflows AS w;
