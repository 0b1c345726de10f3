-- name: insert_workflow
-- Insert a new workflow unless its id is taken (the caller then reads the existing one).
INSERT INTO workflows (
    workflow_id, workflow_name, status, version, input, result, error, serializer, owner,
    fence, lease_until, wake_at, deadline_at, wait_reason, cancel_requested,
    compensate_on_cancel, recovery_attempts, created_at, updated_at, finished_at)
VALUES (
    :workflow_id, :workflow_name, :status, :version, :input, :result, :error, :serializer,
    :owner, :fence, :lease_until, :wake_at, :deadline_at, :wait_reason, :cancel_requested,
    :compensate_on_cancel, :recovery_attempts, :created_at, :updated_at, :finished_at)
ON CONFLICT (workflow_id) DO NOTHING;

-- name: get_workflow
-- One workflow by id.
SELECT * FROM workflows WHERE workflow_id = :workflow_id;

-- name: list_workflows_oldest_first
-- Filtered workflows; NULL filters match everything, JSON arrays list accepted values.
SELECT * FROM workflows
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:names IS NULL OR workflow_name IN (SELECT value FROM json_each(:names)))
  AND (:created_after IS NULL OR created_at > :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
ORDER BY created_at, workflow_id
LIMIT :limit OFFSET :offset;

-- name: list_workflows_newest_first
-- Same as list_workflows_oldest_first, newest first.
SELECT * FROM workflows
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:names IS NULL OR workflow_name IN (SELECT value FROM json_each(:names)))
  AND (:created_after IS NULL OR created_at > :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
ORDER BY created_at DESC, workflow_id DESC
LIMIT :limit OFFSET :offset;

-- name: count_workflows
-- How many workflows are in each status.
SELECT status, count(*) AS total FROM workflows GROUP BY status;

-- name: delete_workflow
-- Delete a workflow; operations, attempts and signals go with it (ON DELETE CASCADE).
DELETE FROM workflows WHERE workflow_id = :workflow_id;

-- name: purge_workflows
-- Delete finished workflows older than the cutoff whose status is listed.
DELETE FROM workflows
WHERE finished_at IS NOT NULL AND finished_at < :finished_before
  AND status IN (SELECT value FROM json_each(:statuses));

-- name: claim_workflow
-- Claim one workflow if it is claimable (see store/base.py for the rule).
UPDATE workflows SET
    owner = :owner,
    fence = fence + 1,
    lease_until = :lease_until,
    wake_at = NULL,
    status = CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN status IN ('RUNNING', 'COMPENSATING')
                             THEN recovery_attempts + 1 ELSE 0 END
WHERE workflow_id = :workflow_id
  AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
        AND (owner IS NULL OR lease_until < :now))
       OR (status = 'SUSPENDED' AND wake_at IS NOT NULL AND wake_at <= :now))
RETURNING *;

-- name: claim_due_workflows
-- Claim up to :limit claimable workflows of the given names, earliest due first.
UPDATE workflows SET
    owner = :owner,
    fence = fence + 1,
    lease_until = :lease_until,
    wake_at = NULL,
    status = CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN status IN ('RUNNING', 'COMPENSATING')
                             THEN recovery_attempts + 1 ELSE 0 END
WHERE workflow_id IN (
    SELECT workflow_id FROM workflows
    WHERE workflow_name IN (SELECT value FROM json_each(:names))
      AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
            AND (owner IS NULL OR lease_until < :now))
           OR (status = 'SUSPENDED' AND wake_at IS NOT NULL AND wake_at <= :now))
    ORDER BY CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
             created_at, workflow_id
    LIMIT :limit)
RETURNING *;

-- name: next_wake_time
-- The earliest timer among suspended workflows of the given names.
SELECT min(wake_at) AS wake_at FROM workflows
WHERE status = 'SUSPENDED' AND wake_at IS NOT NULL
  AND workflow_name IN (SELECT value FROM json_each(:names));

-- name: renew_leases
-- Extend every lease held by an executor (one statement per heartbeat).
UPDATE workflows SET lease_until = :lease_until
WHERE owner = :owner AND status IN ('PENDING', 'RUNNING', 'COMPENSATING');

-- name: cancelled_workflows_of_owner
-- Workflows held by an executor whose cancellation was requested.
SELECT workflow_id FROM workflows
WHERE owner = :owner AND cancel_requested = 1
  AND status IN ('PENDING', 'RUNNING', 'COMPENSATING');

-- name: touch_executor
-- Record an executor's heartbeat.
UPDATE executors SET heartbeat_at = :now WHERE executor_id = :owner;

-- name: release_workflows
-- Give up every lease an executor holds so others can claim them at once.
UPDATE workflows SET owner = NULL, lease_until = NULL
WHERE owner = :owner AND status IN ('PENDING', 'RUNNING', 'COMPENSATING');

-- name: register_executor
-- Record a live executor.
INSERT INTO executors (executor_id, hostname, pid, heartbeat_at)
VALUES (:executor_id, :hostname, :pid, :now)
ON CONFLICT (executor_id) DO UPDATE SET
    hostname = excluded.hostname, pid = excluded.pid, heartbeat_at = excluded.heartbeat_at;

-- name: list_executors
-- Every registered executor.
SELECT executor_id, hostname, pid, heartbeat_at FROM executors ORDER BY executor_id;

-- name: remove_executor
-- Forget an executor.
DELETE FROM executors WHERE executor_id = :executor_id;

-- name: load_operations
-- Every recorded operation of a workflow.
SELECT * FROM operations WHERE workflow_id = :workflow_id ORDER BY seq;

-- name: load_attempts
-- Every failed attempt of a workflow.
SELECT * FROM attempts WHERE workflow_id = :workflow_id ORDER BY seq, attempt;

-- name: fence_and_touch
-- The fence check of every checkpoint write: refresh updated_at only while still owned.
UPDATE workflows SET updated_at = max(updated_at, :moment)
WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence;

-- name: upsert_operation
-- Record an operation's outcome (after fence_and_touch succeeded in the same transaction).
INSERT INTO operations (
    workflow_id, seq, kind, name, status, result, error, serializer, attempts, started_at,
    finished_at, wake_at)
VALUES (
    :workflow_id, :seq, :kind, :name, :status, :result, :error, :serializer, :attempts,
    :started_at, :finished_at, :wake_at)
ON CONFLICT (workflow_id, seq) DO UPDATE SET
    kind = excluded.kind, name = excluded.name, status = excluded.status,
    result = excluded.result, error = excluded.error, serializer = excluded.serializer,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at;

-- name: upsert_attempt
-- Record a failed attempt (after fence_and_touch succeeded in the same transaction).
INSERT INTO attempts (
    workflow_id, seq, attempt, error, started_at, finished_at, next_attempt_at)
VALUES (
    :workflow_id, :seq, :attempt, :error, :started_at, :finished_at, :next_attempt_at)
ON CONFLICT (workflow_id, seq, attempt) DO UPDATE SET
    error = excluded.error, started_at = excluded.started_at,
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at;

-- name: set_workflow_status
-- Compare-and-set a status change, fenced; :releases gives up ownership.
UPDATE workflows SET
    status = :status,
    updated_at = :now,
    result = coalesce(:result, result),
    error = coalesce(:error, error),
    owner = CASE WHEN :releases THEN NULL ELSE owner END,
    lease_until = CASE WHEN :releases THEN NULL ELSE lease_until END,
    wake_at = CASE WHEN :releases THEN NULL ELSE wake_at END,
    wait_reason = CASE WHEN :releases THEN NULL ELSE wait_reason END,
    finished_at = CASE WHEN :is_terminal THEN :now ELSE finished_at END
WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence
  AND status IN (SELECT value FROM json_each(:sources))
RETURNING *;

-- name: suspend_workflow
-- RUNNING -> SUSPENDED, releasing ownership; a waiting signal or a cancellation wakes it now.
UPDATE workflows SET
    status = 'SUSPENDED',
    owner = NULL,
    lease_until = NULL,
    wait_reason = :wait_reason,
    updated_at = :now,
    recovery_attempts = 0,
    wake_at = CASE
        WHEN cancel_requested = 1 THEN :now
        WHEN :signal IS NOT NULL AND EXISTS (
            SELECT 1 FROM signals
            WHERE signals.workflow_id = :workflow_id AND signals.name = :signal
              AND signals.consumed_seq IS NULL) THEN :now
        ELSE :wake_at END
WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence AND status = 'RUNNING'
RETURNING *;

-- name: request_cancel
-- Record a cancellation request on a live workflow.
UPDATE workflows SET cancel_requested = 1, compensate_on_cancel = :compensate, updated_at = :now
WHERE workflow_id = :workflow_id
RETURNING *;

-- name: cancel_unowned
-- Cancel at once a workflow nobody runs.
UPDATE workflows SET
    status = 'CANCELLED', finished_at = :now, updated_at = :now, owner = NULL,
    lease_until = NULL, wake_at = NULL, wait_reason = NULL
WHERE workflow_id = :workflow_id
RETURNING *;

-- name: wake_for_compensation
-- Make an unowned suspended or parked workflow claimable now, to run its compensations.
UPDATE workflows SET status = 'SUSPENDED', wake_at = :now, owner = NULL, lease_until = NULL
WHERE workflow_id = :workflow_id
RETURNING *;

-- name: find_signal_by_dedup_key
-- A signal already sent to the workflow with this dedup key.
SELECT * FROM signals WHERE workflow_id = :workflow_id AND dedup_key = :dedup_key;

-- name: insert_signal
-- Append a signal to a workflow's inbox.
INSERT INTO signals (workflow_id, name, payload, serializer, dedup_key, created_at)
VALUES (:workflow_id, :name, :payload, :serializer, :dedup_key, :now)
RETURNING *;

-- name: wake_suspended
-- Wake a suspended workflow now (a signal arrived).
UPDATE workflows SET wake_at = :now
WHERE workflow_id = :workflow_id AND status = 'SUSPENDED';

-- name: oldest_unconsumed_signal
-- The oldest signal of a name that no operation has consumed yet.
SELECT * FROM signals
WHERE workflow_id = :workflow_id AND name = :name AND consumed_seq IS NULL
ORDER BY signal_id LIMIT 1;

-- name: mark_signal_consumed
-- Mark a signal as consumed by the operation at :seq.
UPDATE signals SET consumed_seq = :seq, consumed_at = :now WHERE signal_id = :signal_id
RETURNING *;

-- name: list_signals
-- A workflow's inbox, oldest first.
SELECT * FROM signals WHERE workflow_id = :workflow_id ORDER BY signal_id;
