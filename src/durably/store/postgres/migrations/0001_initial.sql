-- durably schema version 1 on PostgreSQL (the same tables as on SQLite).
-- Timestamps are integer UTC epoch microseconds; payloads are TEXT in the serializer
-- named beside them. Flags are 0/1 smallints, as on SQLite, so that both stores share
-- one conversion between rows and records.

CREATE TABLE workflows (
    workflow_id          TEXT PRIMARY KEY,
    workflow_name        TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN (
                             'PENDING', 'RUNNING', 'SUSPENDED', 'COMPLETED', 'FAILED',
                             'COMPENSATING', 'COMPENSATED', 'COMPENSATION_FAILED',
                             'CANCELLED', 'PARKED')),
    version              TEXT NOT NULL DEFAULT '',
    input                TEXT,
    result               TEXT,
    error                TEXT,
    serializer           TEXT NOT NULL DEFAULT 'json',
    owner                TEXT,
    fence                BIGINT NOT NULL DEFAULT 0 CHECK (fence >= 0),
    lease_until          BIGINT,
    wake_at              BIGINT,
    deadline_at          BIGINT,
    wait_reason          TEXT,
    cancel_requested     SMALLINT NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    compensate_on_cancel SMALLINT NOT NULL DEFAULT 0 CHECK (compensate_on_cancel IN (0, 1)),
    recovery_attempts    INTEGER NOT NULL DEFAULT 0 CHECK (recovery_attempts >= 0),
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    finished_at          BIGINT
);

-- Claims: live statuses whose lease ended, and suspended workflows whose timer is due.
CREATE INDEX workflows_claim_by_lease ON workflows (status, lease_until)
    WHERE status IN ('PENDING', 'RUNNING', 'COMPENSATING');
CREATE INDEX workflows_claim_by_wake ON workflows (wake_at) WHERE status = 'SUSPENDED';
-- Listing, oldest or newest first, all or by name.
CREATE INDEX workflows_by_created ON workflows (created_at, workflow_id);
CREATE INDEX workflows_by_name ON workflows (workflow_name, created_at, workflow_id);
CREATE INDEX workflows_by_status ON workflows (status, created_at, workflow_id);
-- Heartbeats and releases touch every workflow of one owner.
CREATE INDEX workflows_by_owner ON workflows (owner) WHERE owner IS NOT NULL;
-- Purging finished workflows.
CREATE INDEX workflows_by_finished ON workflows (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE operations (
    workflow_id TEXT NOT NULL REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('COMPLETED', 'FAILED', 'WAITING')),
    result      TEXT,
    error       TEXT,
    serializer  TEXT NOT NULL DEFAULT 'json',
    attempts    INTEGER NOT NULL DEFAULT 1,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    wake_at     BIGINT,
    PRIMARY KEY (workflow_id, seq)
);

CREATE TABLE attempts (
    workflow_id     TEXT NOT NULL REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    error           TEXT NOT NULL,
    started_at      BIGINT NOT NULL,
    finished_at     BIGINT NOT NULL,
    next_attempt_at BIGINT,
    PRIMARY KEY (workflow_id, seq, attempt)
);

-- Identity: signal ids only grow, so "oldest first" is "smallest id".
CREATE TABLE signals (
    signal_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id  TEXT NOT NULL REFERENCES workflows (workflow_id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    payload      TEXT,
    serializer   TEXT NOT NULL DEFAULT 'json',
    dedup_key    TEXT,
    created_at   BIGINT NOT NULL,
    consumed_seq INTEGER,
    consumed_at  BIGINT
);

CREATE INDEX signals_inbox ON signals (workflow_id, name, signal_id) WHERE consumed_seq IS NULL;
CREATE INDEX signals_by_workflow ON signals (workflow_id, signal_id);
CREATE UNIQUE INDEX signals_dedup ON signals (workflow_id, dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE executors (
    executor_id  TEXT PRIMARY KEY,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
