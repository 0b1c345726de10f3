-- durably schema version 2: queues. A queued workflow is claimed only within its
-- queue's limits (concurrency, per-worker concurrency, rate), highest priority first.
ALTER TABLE workflows ADD COLUMN queue_name TEXT;
ALTER TABLE workflows ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- When the workflow was first claimed: rate limits count starts.
ALTER TABLE workflows ADD COLUMN started_at BIGINT;
CREATE INDEX workflows_queued ON workflows (queue_name, priority DESC, created_at, workflow_id)
    WHERE queue_name IS NOT NULL;
CREATE INDEX workflows_queue_starts ON workflows (queue_name, started_at)
    WHERE queue_name IS NOT NULL;
