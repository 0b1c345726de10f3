-- durably schema version 5: the same workflows table, with its status CHECK written
-- as comparisons instead of an IN list (as version 4 did for operations).
-- SQLite evaluates a CHECK `status IN (ten values)` by building a temporary table of
-- the ten values for every row it writes: measured with callgrind, about 40,000
-- instructions on every workflow insert and 37,000 on every status change.
-- SQLite changes a CHECK only by rebuilding the table. workflows is the parent of
-- operations, attempts and signals (ON DELETE CASCADE): the migration runner turns
-- foreign keys off around every migration, so dropping the old table deletes no child
-- row, and checks them all (PRAGMA foreign_key_check) before it commits. The new
-- table takes the old one's name, so the children's REFERENCES clauses name it.
-- Its indexes and the view that reads it are made again around the rebuild.
DROP VIEW workflows_with_progress;

CREATE TABLE workflows_v5 (
    workflow_id          TEXT PRIMARY KEY,
    workflow_name        TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (
                             status = 'PENDING' OR status = 'RUNNING'
                             OR status = 'SUSPENDED' OR status = 'COMPLETED'
                             OR status = 'FAILED' OR status = 'COMPENSATING'
                             OR status = 'COMPENSATED' OR status = 'COMPENSATION_FAILED'
                             OR status = 'CANCELLED' OR status = 'PARKED'),
    version              TEXT NOT NULL DEFAULT '',
    input                TEXT,
    result               TEXT,
    error                TEXT,
    serializer           TEXT NOT NULL DEFAULT 'json',
    owner                TEXT,
    fence                INTEGER NOT NULL DEFAULT 0 CHECK (fence >= 0),
    lease_until          INTEGER,
    wake_at              INTEGER,
    deadline_at          INTEGER,
    wait_reason          TEXT,
    -- Two values: SQLite compares them without a temporary table.
    cancel_requested     INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    compensate_on_cancel INTEGER NOT NULL DEFAULT 0 CHECK (compensate_on_cancel IN (0, 1)),
    recovery_attempts    INTEGER NOT NULL DEFAULT 0 CHECK (recovery_attempts >= 0),
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    finished_at          INTEGER,
    queue_name           TEXT,
    priority             INTEGER NOT NULL DEFAULT 0,
    started_at           INTEGER
);

INSERT INTO workflows_v5 (
    rowid, workflow_id, workflow_name, status, version, input, result, error, serializer,
    owner, fence, lease_until, wake_at, deadline_at, wait_reason, cancel_requested,
    compensate_on_cancel, recovery_attempts, created_at, updated_at, finished_at,
    queue_name, priority, started_at)
SELECT
    rowid, workflow_id, workflow_name, status, version, input, result, error, serializer,
    owner, fence, lease_until, wake_at, deadline_at, wait_reason, cancel_requested,
    compensate_on_cancel, recovery_attempts, created_at, updated_at, finished_at,
    queue_name, priority, started_at
FROM workflows;

DROP TABLE workflows;

ALTER TABLE workflows_v5 RENAME TO workflows;

CREATE INDEX workflows_claim_by_lease ON workflows (status, lease_until);
CREATE INDEX workflows_claim_by_wake ON workflows (status, wake_at);
CREATE INDEX workflows_by_created ON workflows (created_at, workflow_id);
CREATE INDEX workflows_by_name ON workflows (workflow_name, created_at, workflow_id);
CREATE INDEX workflows_by_owner ON workflows (owner) WHERE owner IS NOT NULL;
CREATE INDEX workflows_by_finished ON workflows (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX workflows_queued ON workflows (queue_name, priority DESC, created_at, workflow_id)
    WHERE queue_name IS NOT NULL;
CREATE INDEX workflows_queue_starts ON workflows (queue_name, started_at)
    WHERE queue_name IS NOT NULL;

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
