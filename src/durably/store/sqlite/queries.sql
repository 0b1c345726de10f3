-- Every statement of the SQLite store, by name (loaded by durably.store._queries).
-- Parameters are always bound (:name), never formatted in. A collection parameter is
-- bound as a JSON array and read with json_each. "Claimable" is the rule written in
-- durably/store/base.py; it appears in claim_workflow and claim_due_workflows.

-- name: insert_workflow
-- Insert a workflow as given unless its id is taken (then no row changes). No
-- RETURNING: the row is the record given, and RETURNING * costs more than the insert
-- (measured on a 2-core VM: about 9 µs of the 25 µs it took, on a hot path).
INSERT INTO workflows (
    workflow_id, workflow_name, status, version, input, result, error, serializer, owner,
    fence, lease_until, wake_at, deadline_at, wait_reason, cancel_requested,
    compensate_on_cancel, recovery_attempts, created_at, updated_at, finished_at,
    queue_name, priority, started_at)
VALUES (
    :workflow_id, :workflow_name, :status, :version, :input, :result, :error, :serializer,
    :owner, :fence, :lease_until, :wake_at, :deadline_at, :wait_reason, :cancel_requested,
    :compensate_on_cancel, :recovery_attempts, :created_at, :updated_at, :finished_at,
    :queue_name, :priority, :started_at)
ON CONFLICT (workflow_id) DO NOTHING;

-- name: get_workflow
-- One workflow by id (updated_at includes its last recorded operation).
SELECT * FROM workflows_with_progress WHERE workflow_id = :workflow_id;

-- name: get_workflow_row
-- One workflows row as stored, read right after a statement changed it (what a
-- RETURNING * would give, for less: see insert_workflow).
SELECT * FROM workflows WHERE workflow_id = :workflow_id;

-- name: list_workflows_oldest_first
-- Workflows passing every filter (a NULL filter passes all), by (created_at, workflow_id).
SELECT * FROM workflows_with_progress
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:names IS NULL OR workflow_name IN (SELECT value FROM json_each(:names)))
  AND (:created_after IS NULL OR created_at > :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
ORDER BY created_at, workflow_id
LIMIT :limit OFFSET :offset;

-- name: list_workflows_newest_first
-- The same as list_workflows_oldest_first, in the opposite order.
SELECT * FROM workflows_with_progress
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:names IS NULL OR workflow_name IN (SELECT value FROM json_each(:names)))
  AND (:created_after IS NULL OR created_at > :created_after)
  AND (:created_before IS NULL OR created_at < :created_before)
ORDER BY created_at DESC, workflow_id DESC
LIMIT :limit OFFSET :offset;

-- name: count_workflows
-- The number of workflows in each status that has any.
SELECT status, count(*) AS total FROM workflows GROUP BY status;

-- name: delete_workflow
-- Delete a workflow; its operations, attempts and signals follow (ON DELETE CASCADE).
DELETE FROM workflows WHERE workflow_id = :workflow_id;

-- name: purge_workflows
-- Delete workflows in the given statuses that finished before the cutoff.
DELETE FROM workflows
WHERE finished_at < :finished_before
  AND status IN (SELECT value FROM json_each(:statuses));

-- name: claim_workflow
-- Claim one workflow if it is claimable: owner, fence + 1, lease, status, recovery count.
UPDATE workflows SET
    owner = :owner,
    fence = fence + 1,
    lease_until = :lease_until,
    wake_at = NULL,
    started_at = COALESCE(started_at, :now),
    status = CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN status IN ('RUNNING', 'COMPENSATING')
                             THEN recovery_attempts + 1 ELSE 0 END
WHERE workflow_id = :workflow_id
  AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
        AND (owner IS NULL OR lease_until IS NULL OR lease_until < :now))
       OR (status = 'SUSPENDED' AND wake_at <= :now))
RETURNING *;

-- name: claim_due_workflows
-- Claim up to :limit claimable unqueued workflows of the given names, earliest due first, in one
-- statement; claim_position gives that order back (RETURNING rows come in any order).
-- :versions (a JSON array of [name, version] pairs, or NULL for every version) leaves
-- the workflows of versions this executor does not run, except unversioned ones ('') and
-- those that never ran, which take the claimer's version (:current_versions pairs).
WITH due (workflow_id, claim_position) AS MATERIALIZED (
    SELECT workflow_id,
           row_number() OVER (
               ORDER BY CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
                        created_at, workflow_id)
    FROM workflows
    WHERE workflow_name IN (SELECT value FROM json_each(:names))
      AND (:versions IS NULL OR version = '' OR (status = 'PENDING' AND started_at IS NULL)
           OR (workflow_name, version) IN (
               SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
               FROM json_each(:versions)))
      AND queue_name IS NULL
      AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
            AND (owner IS NULL OR lease_until IS NULL OR lease_until < :now))
           OR (status = 'SUSPENDED' AND wake_at <= :now))
    ORDER BY CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
             created_at, workflow_id
    LIMIT :limit)
UPDATE workflows SET
    owner = :owner,
    fence = fence + 1,
    lease_until = :lease_until,
    wake_at = NULL,
    started_at = COALESCE(started_at, :now),
    status = CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN status IN ('RUNNING', 'COMPENSATING')
                             THEN recovery_attempts + 1 ELSE 0 END,
    version = CASE WHEN status = 'PENDING' AND started_at IS NULL
                   THEN COALESCE((SELECT json_extract(value, '$[1]')
                                  FROM json_each(:current_versions)
                                  WHERE json_extract(value, '$[0]') = workflow_name), version)
                   ELSE version END
WHERE workflow_id IN (SELECT workflow_id FROM due)
RETURNING *,
    (SELECT claim_position FROM due WHERE due.workflow_id = workflows.workflow_id)
        AS claim_position;

-- name: queue_usage
-- How much of a queue's limits is taken at :now: its workflows running under a live
-- lease (all of them, and the claiming worker's), and those first claimed after
-- :window_start (the rate window).
SELECT
    count(*) FILTER (WHERE status IN ('RUNNING', 'COMPENSATING') AND owner IS NOT NULL
                     AND lease_until >= :now) AS running,
    count(*) FILTER (WHERE status IN ('RUNNING', 'COMPENSATING') AND owner = :owner
                     AND lease_until >= :now) AS running_here,
    count(*) FILTER (WHERE started_at > :window_start) AS started
FROM workflows WHERE queue_name = :queue;

-- name: claim_queued_workflows
-- Claim up to :limit claimable workflows of one queue (the caller computed :limit from
-- queue_usage in the same transaction), highest priority first, then earliest due.
WITH due (workflow_id, claim_position) AS MATERIALIZED (
    SELECT workflow_id,
           row_number() OVER (
               ORDER BY priority DESC,
                        CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
                        created_at, workflow_id)
    FROM workflows
    WHERE workflow_name IN (SELECT value FROM json_each(:names))
      AND (:versions IS NULL OR version = '' OR (status = 'PENDING' AND started_at IS NULL)
           OR (workflow_name, version) IN (
               SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
               FROM json_each(:versions)))
      AND queue_name = :queue
      AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
            AND (owner IS NULL OR lease_until IS NULL OR lease_until < :now))
           OR (status = 'SUSPENDED' AND wake_at <= :now))
    ORDER BY priority DESC, CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
             created_at, workflow_id
    LIMIT :limit)
UPDATE workflows SET
    owner = :owner,
    fence = fence + 1,
    lease_until = :lease_until,
    wake_at = NULL,
    started_at = COALESCE(started_at, :now),
    status = CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN status IN ('RUNNING', 'COMPENSATING')
                             THEN recovery_attempts + 1 ELSE 0 END,
    version = CASE WHEN status = 'PENDING' AND started_at IS NULL
                   THEN COALESCE((SELECT json_extract(value, '$[1]')
                                  FROM json_each(:current_versions)
                                  WHERE json_extract(value, '$[0]') = workflow_name), version)
                   ELSE version END
WHERE workflow_id IN (SELECT workflow_id FROM due)
RETURNING *,
    (SELECT claim_position FROM due WHERE due.workflow_id = workflows.workflow_id)
        AS claim_position;

-- name: next_wake_time
-- The earliest timer among suspended workflows of the given names (and of the given
-- [name, version] pairs, or unversioned, unless :versions is NULL).
SELECT min(wake_at) AS wake_at FROM workflows
WHERE status = 'SUSPENDED' AND wake_at IS NOT NULL
  AND workflow_name IN (SELECT value FROM json_each(:names))
  AND (:versions IS NULL OR version = ''
       OR (workflow_name, version) IN (
           SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
           FROM json_each(:versions)));

-- name: renew_leases
-- Extend every lease of an executor in one statement; report cancellation requests.
UPDATE workflows SET lease_until = :lease_until
WHERE owner = :owner
RETURNING workflow_id, cancel_requested;

-- name: record_heartbeat
-- Record that a registered executor is alive.
UPDATE executors SET heartbeat_at = :now WHERE executor_id = :owner;

-- name: release_workflows
-- Give up every lease of an executor that stops cleanly, so that others can claim its
-- workflows now; a run given up is not a crash: the recovery attempt its claim
-- counted is given back.
UPDATE workflows SET
    owner = NULL,
    lease_until = NULL,
    recovery_attempts = max(recovery_attempts - 1, 0)
WHERE owner = :owner;

-- name: expire_leases
-- Free every workflow of an executor known to be dead (its runs crashed: their
-- recovery attempts count).
UPDATE workflows SET owner = NULL, lease_until = NULL WHERE owner = :owner;

-- name: register_executor
-- Record a live executor (insert or replace).
INSERT INTO executors (executor_id, hostname, pid, heartbeat_at)
VALUES (:executor_id, :hostname, :pid, :now)
ON CONFLICT (executor_id) DO UPDATE SET
    hostname = excluded.hostname, pid = excluded.pid, heartbeat_at = excluded.heartbeat_at;

-- name: list_executors
-- Every registered executor, by id.
SELECT executor_id, hostname, pid, heartbeat_at FROM executors ORDER BY executor_id;

-- name: remove_executor
-- Forget an executor.
DELETE FROM executors WHERE executor_id = :executor_id;

-- name: load_operations
-- Every recorded operation of a workflow.
SELECT * FROM operations WHERE workflow_id = :workflow_id ORDER BY seq;

-- name: list_operations
-- A workflow's operations of some kinds (and one name, unless NULL) after a seq, by seq:
-- what readers of events and streams poll.
SELECT * FROM operations
WHERE workflow_id = :workflow_id
  AND seq > :after_seq
  AND kind IN (SELECT value FROM json_each(:kinds))
  AND (:name IS NULL OR name = :name)
ORDER BY seq;

-- name: load_attempts
-- Every failed attempt of a workflow.
SELECT * FROM attempts WHERE workflow_id = :workflow_id ORDER BY seq, attempt;

-- name: record_operation
-- The hot path: insert or replace an operation only while the fence owns the workflow;
-- no row changed means the fence is stale.
INSERT INTO operations (
    workflow_id, seq, kind, name, status, result, error, serializer, attempts, started_at,
    finished_at, wake_at)
SELECT
    :workflow_id, :seq, :kind, :name, :status, :result, :error, :serializer, :attempts,
    :started_at, :finished_at, :wake_at
WHERE EXISTS (
    SELECT 1 FROM workflows
    WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence)
ON CONFLICT (workflow_id, seq) DO UPDATE SET
    kind = excluded.kind, name = excluded.name, status = excluded.status,
    result = excluded.result, error = excluded.error, serializer = excluded.serializer,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at;

-- name: record_attempt
-- Insert (or replace) a failed attempt only while the fence owns the workflow.
INSERT INTO attempts (
    workflow_id, seq, attempt, error, started_at, finished_at, next_attempt_at)
SELECT
    :workflow_id, :seq, :attempt, :error, :started_at, :finished_at, :next_attempt_at
WHERE EXISTS (
    SELECT 1 FROM workflows
    WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence)
ON CONFLICT (workflow_id, seq, attempt) DO UPDATE SET
    error = excluded.error, started_at = excluded.started_at,
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at;

-- name: is_owned
-- Whether the fence still owns the workflow (asked only when a write found nothing to do).
SELECT 1 FROM workflows WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence;

-- name: set_workflow_status
-- Compare-and-set: change the status only from an allowed source, while fenced (the
-- row is then read with get_workflow_row: cheaper than RETURNING *). The sources are
-- five parameters (a shorter list repeats a value): compared one by one, they cost
-- about 28,000 fewer instructions per update than `IN (SELECT value FROM json_each)`
-- (callgrind), and SQLite would build a temporary table for an IN list of three or
-- more values.
UPDATE workflows SET
    status = :status,
    updated_at = max(updated_at, :now),
    result = coalesce(:result, result),
    error = coalesce(:error, error),
    owner = CASE WHEN :releases THEN NULL ELSE owner END,
    lease_until = CASE WHEN :releases THEN NULL ELSE lease_until END,
    finished_at = CASE WHEN :finishes THEN :now ELSE finished_at END
WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence
  AND (status = :source_1 OR status = :source_2 OR status = :source_3
       OR status = :source_4 OR status = :source_5);

-- name: suspend_workflow
-- RUNNING to SUSPENDED, releasing ownership, fenced; due at once when the awaited signal
-- is already in the inbox or a cancellation was requested (the row is then read with
-- get_workflow_row).
UPDATE workflows SET
    status = 'SUSPENDED',
    owner = NULL,
    lease_until = NULL,
    wait_reason = :wait_reason,
    updated_at = max(updated_at, :now),
    wake_at = CASE
        WHEN cancel_requested = 1 OR EXISTS (
                 SELECT 1 FROM signals
                 WHERE signals.workflow_id = :workflow_id AND signals.name = :signal
                   AND signals.consumed_seq IS NULL)
        THEN min(coalesce(:wake_at, :now), :now)
        ELSE :wake_at END
WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence
  AND status = 'RUNNING';

-- name: flag_cancel
-- Record a cancellation request for the workflow's owner to act on.
UPDATE workflows SET
    cancel_requested = 1,
    compensate_on_cancel = max(compensate_on_cancel, :compensate),
    updated_at = max(updated_at, :now)
WHERE workflow_id = :workflow_id
RETURNING *;

-- name: cancel_idle_workflow
-- Cancel at once a workflow that nobody runs.
UPDATE workflows SET
    status = 'CANCELLED',
    cancel_requested = 1,
    owner = NULL,
    lease_until = NULL,
    updated_at = max(updated_at, :now),
    finished_at = :now
WHERE workflow_id = :workflow_id
RETURNING *;

-- name: wake_to_compensate
-- Make an idle workflow due now so that an executor claims it and compensates; PARKED
-- is never claimed, so it becomes SUSPENDED.
UPDATE workflows SET
    status = CASE WHEN status = 'PARKED' THEN 'SUSPENDED' ELSE status END,
    cancel_requested = 1,
    compensate_on_cancel = 1,
    wake_at = min(coalesce(wake_at, :now), :now),
    updated_at = max(updated_at, :now)
WHERE workflow_id = :workflow_id
RETURNING *;

-- name: find_signal_by_dedup_key
-- The signal already sent to a workflow with this dedup key.
SELECT * FROM signals WHERE workflow_id = :workflow_id AND dedup_key = :dedup_key;

-- name: insert_signal
-- Append a signal to a workflow's inbox.
INSERT INTO signals (workflow_id, name, payload, serializer, dedup_key, created_at)
VALUES (:workflow_id, :name, :payload, :serializer, :dedup_key, :now)
RETURNING *;

-- name: wake_suspended
-- A signal arrived: a suspended workflow is due now (an earlier timer is kept).
UPDATE workflows SET wake_at = min(coalesce(wake_at, :now), :now)
WHERE workflow_id = :workflow_id AND status = 'SUSPENDED';

-- name: consume_signal
-- Mark the oldest unconsumed signal of a name as consumed at :seq, while fenced.
UPDATE signals SET consumed_seq = :seq, consumed_at = :consumed_at
WHERE signal_id = (
        SELECT signal_id FROM signals
        WHERE workflow_id = :workflow_id AND name = :name AND consumed_seq IS NULL
        ORDER BY signal_id
        LIMIT 1)
  AND EXISTS (
        SELECT 1 FROM workflows
        WHERE workflow_id = :workflow_id AND owner = :owner AND fence = :fence)
RETURNING *;

-- name: list_signals
-- A workflow's inbox, consumed or not, oldest first.
SELECT * FROM signals WHERE workflow_id = :workflow_id ORDER BY signal_id;

-- name: delete_failed_attempts
-- Forget the attempts of the failed operations a resume runs again: body operations
-- (seq >= 0) or compensations (seq < 0), as :compensations says.
DELETE FROM attempts
WHERE workflow_id = :workflow_id
  AND seq IN (SELECT seq FROM operations
              WHERE workflow_id = :workflow_id AND status = 'FAILED'
                AND (seq < 0) = :compensations);

-- name: delete_failed_operations
-- Forget the failed operations a resume runs again (as in delete_failed_attempts).
DELETE FROM operations
WHERE workflow_id = :workflow_id AND status = 'FAILED' AND (seq < 0) = :compensations;

-- name: resume_workflow
-- The operator's resume: the new status, unowned, not due before :now, no recovery
-- attempt, not finished; the error kept only while compensating.
UPDATE workflows SET
    status = :status,
    owner = NULL,
    lease_until = NULL,
    wake_at = NULL,
    wait_reason = NULL,
    error = CASE WHEN :keeps_error THEN error ELSE NULL END,
    recovery_attempts = 0,
    finished_at = NULL,
    updated_at = max(updated_at, :now)
WHERE workflow_id = :workflow_id AND status = :from_status
RETURNING *;
