-- Every statement of the PostgreSQL store, by name (loaded by durably.store._queries).
-- Parameters are always bound (%(name)s), never formatted in; collections are bound as
-- text arrays. Tables are found through the connection's search_path (the store's
-- schema). Every fenced write locks the workflow row, so a claim (FOR UPDATE SKIP
-- LOCKED) and a write by the previous owner are strictly ordered: the write lands
-- before the claim, or is refused after it.

-- name: insert_workflow
-- Insert a workflow as given unless its id is taken (then no row is returned); tell
-- the workers that there is new work.
WITH inserted AS (
    INSERT INTO workflows (
        workflow_id, workflow_name, status, version, input, result, error, serializer,
        owner, fence, lease_until, wake_at, deadline_at, wait_reason, cancel_requested,
        compensate_on_cancel, recovery_attempts, created_at, updated_at, finished_at,
        queue_name, priority, started_at)
    VALUES (
        %(workflow_id)s, %(workflow_name)s, %(status)s, %(version)s, %(input)s, %(result)s,
        %(error)s, %(serializer)s, %(owner)s, %(fence)s, %(lease_until)s, %(wake_at)s,
        %(deadline_at)s, %(wait_reason)s, %(cancel_requested)s, %(compensate_on_cancel)s,
        %(recovery_attempts)s, %(created_at)s, %(updated_at)s, %(finished_at)s,
        %(queue_name)s, %(priority)s, %(started_at)s)
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING *)
SELECT inserted.*, pg_notify(%(channel)s, 'work') AS notified FROM inserted;

-- name: insert_workflows
-- insert_workflow for a batch (group commit), as ONE statement. Each id appears at most
-- once in a batch; rows are inserted in workflow_id order, so that two batches that
-- share ids wait for each other instead of deadlocking. The rows returned are those
-- inserted (an id already taken returns nothing: its caller reads the existing one).
WITH batch AS (
    SELECT * FROM unnest(
        %(workflow_id)s::text[], %(workflow_name)s::text[], %(status)s::text[],
        %(version)s::text[], %(input)s::text[], %(result)s::text[], %(error)s::text[],
        %(serializer)s::text[], %(owner)s::text[], %(fence)s::bigint[],
        %(lease_until)s::bigint[], %(wake_at)s::bigint[], %(deadline_at)s::bigint[],
        %(wait_reason)s::text[], %(cancel_requested)s::integer[],
        %(compensate_on_cancel)s::integer[], %(recovery_attempts)s::integer[],
        %(created_at)s::bigint[], %(updated_at)s::bigint[], %(finished_at)s::bigint[],
        %(queue_name)s::text[], %(priority)s::integer[], %(started_at)s::bigint[])
    AS b(workflow_id, workflow_name, status, version, input, result, error,
         serializer, owner, fence, lease_until, wake_at, deadline_at, wait_reason,
         cancel_requested, compensate_on_cancel, recovery_attempts, created_at,
         updated_at, finished_at, queue_name, priority, started_at)),
inserted AS (
    INSERT INTO workflows (
        workflow_id, workflow_name, status, version, input, result, error, serializer,
        owner, fence, lease_until, wake_at, deadline_at, wait_reason,
        cancel_requested, compensate_on_cancel, recovery_attempts, created_at,
        updated_at, finished_at, queue_name, priority, started_at)
    SELECT
        workflow_id, workflow_name, status, version, input, result, error, serializer,
        owner, fence, lease_until, wake_at, deadline_at, wait_reason,
        cancel_requested, compensate_on_cancel, recovery_attempts, created_at,
        updated_at, finished_at, queue_name, priority, started_at
    FROM batch ORDER BY workflow_id
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING *)
SELECT inserted.*, pg_notify(%(channel)s, 'work') AS notified FROM inserted;

-- name: get_workflow
-- One workflow by id.
SELECT * FROM workflows WHERE workflow_id = %(workflow_id)s;

-- name: lock_workflow
-- One workflow by id, locked until the end of the transaction.
SELECT * FROM workflows WHERE workflow_id = %(workflow_id)s FOR UPDATE;

-- name: list_workflows_oldest_first
-- Workflows passing every filter (a NULL filter passes all), by (created_at, workflow_id).
SELECT * FROM workflows
WHERE (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
  AND (%(names)s::text[] IS NULL OR workflow_name = ANY (%(names)s::text[]))
  AND (%(created_after)s::bigint IS NULL OR created_at > %(created_after)s::bigint)
  AND (%(created_before)s::bigint IS NULL OR created_at < %(created_before)s::bigint)
ORDER BY created_at, workflow_id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: list_workflows_newest_first
-- The same as list_workflows_oldest_first, in the opposite order.
SELECT * FROM workflows
WHERE (%(statuses)s::text[] IS NULL OR status = ANY (%(statuses)s::text[]))
  AND (%(names)s::text[] IS NULL OR workflow_name = ANY (%(names)s::text[]))
  AND (%(created_after)s::bigint IS NULL OR created_at > %(created_after)s::bigint)
  AND (%(created_before)s::bigint IS NULL OR created_at < %(created_before)s::bigint)
ORDER BY created_at DESC, workflow_id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: count_workflows
-- The number of workflows in each status that has any.
SELECT status, count(*) AS total FROM workflows GROUP BY status;

-- name: delete_workflow
-- Delete a workflow; its operations, attempts and signals follow (ON DELETE CASCADE).
DELETE FROM workflows WHERE workflow_id = %(workflow_id)s;

-- name: purge_workflows
-- Delete workflows in the given statuses that finished before the cutoff.
DELETE FROM workflows
WHERE finished_at < %(finished_before)s AND status = ANY (%(statuses)s::text[]);

-- name: claim_workflow
-- Claim one workflow if it is claimable: owner, fence + 1, lease, status, recovery count.
UPDATE workflows SET
    owner = %(owner)s,
    fence = fence + 1,
    lease_until = %(lease_until)s,
    wake_at = NULL,
    started_at = COALESCE(started_at, %(now)s),
    status = CASE WHEN status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN status IN ('RUNNING', 'COMPENSATING')
                             THEN recovery_attempts + 1 ELSE 0 END
WHERE workflow_id = %(workflow_id)s
  AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
        AND (owner IS NULL OR lease_until IS NULL OR lease_until < %(now)s))
       OR (status = 'SUSPENDED' AND wake_at <= %(now)s))
RETURNING *;

-- name: claim_due_workflows
-- Claim up to %(limit)s claimable unqueued workflows of the given names, earliest due first,
-- skipping rows another transaction holds (FOR UPDATE SKIP LOCKED): concurrent workers
-- never wait for each other and never claim the same workflow. due_at gives the order
-- back (RETURNING rows come in any order). The versions this executor runs come as two
-- parallel arrays (names, versions; NULL for every version): it leaves the workflows of
-- other versions, except unversioned ones ('') and those that never ran, which take the
-- version it records (current_names, current_values).
WITH due AS (
    SELECT workflow_id,
           CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END AS due_at
    FROM workflows
    WHERE workflow_name = ANY (%(names)s::text[])
      AND (%(version_names)s::text[] IS NULL OR version = ''
           OR (status = 'PENDING' AND started_at IS NULL)
           OR (workflow_name, version) IN (
               SELECT * FROM unnest(%(version_names)s::text[], %(version_values)s::text[])))
      AND queue_name IS NULL
      AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
            AND (owner IS NULL OR lease_until IS NULL OR lease_until < %(now)s))
           OR (status = 'SUSPENDED' AND wake_at <= %(now)s))
    ORDER BY CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
             created_at, workflow_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE workflows SET
    owner = %(owner)s,
    fence = workflows.fence + 1,
    lease_until = %(lease_until)s,
    wake_at = NULL,
    started_at = COALESCE(workflows.started_at, %(now)s),
    status = CASE WHEN workflows.status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN workflows.status IN ('RUNNING', 'COMPENSATING')
                             THEN workflows.recovery_attempts + 1 ELSE 0 END,
    version = CASE WHEN workflows.status = 'PENDING' AND workflows.started_at IS NULL
                   THEN COALESCE((SELECT current.version
                                  FROM unnest(%(current_names)s::text[],
                                              %(current_values)s::text[])
                                       AS current (workflow_name, version)
                                  WHERE current.workflow_name = workflows.workflow_name),
                                 workflows.version)
                   ELSE workflows.version END
FROM due
WHERE workflows.workflow_id = due.workflow_id
RETURNING workflows.*, due.due_at;

-- name: bound_lock_waits
-- Wait at most this long for a lock in the rest of the transaction (QUEUE_LOCK_WAIT).
SET LOCAL lock_timeout = '500ms';

-- name: lock_queue
-- Serialise the claims of one queue across workers until the end of the transaction.
SELECT pg_advisory_xact_lock(hashtext(%(lock_name)s));

-- name: queue_usage
-- How much of a queue's limits is taken at %(now)s: its workflows running under a live
-- lease (all of them, and the claiming worker's), and those first claimed after
-- %(window_start)s (the rate window).
SELECT
    count(*) FILTER (WHERE status IN ('RUNNING', 'COMPENSATING') AND owner IS NOT NULL
                     AND lease_until >= %(now)s) AS running,
    count(*) FILTER (WHERE status IN ('RUNNING', 'COMPENSATING') AND owner = %(owner)s
                     AND lease_until >= %(now)s) AS running_here,
    count(*) FILTER (WHERE started_at > %(window_start)s) AS started
FROM workflows WHERE queue_name = %(queue)s;

-- name: claim_queued_workflows
-- Claim up to %(limit)s claimable workflows of one queue (the caller computed the limit
-- from queue_usage under the queue's advisory lock), highest priority first.
WITH due AS (
    SELECT workflow_id, priority,
           CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END AS due_at
    FROM workflows
    WHERE workflow_name = ANY (%(names)s::text[])
      AND (%(version_names)s::text[] IS NULL OR version = ''
           OR (status = 'PENDING' AND started_at IS NULL)
           OR (workflow_name, version) IN (
               SELECT * FROM unnest(%(version_names)s::text[], %(version_values)s::text[])))
      AND queue_name = %(queue)s
      AND ((status IN ('PENDING', 'RUNNING', 'COMPENSATING')
            AND (owner IS NULL OR lease_until IS NULL OR lease_until < %(now)s))
           OR (status = 'SUSPENDED' AND wake_at <= %(now)s))
    ORDER BY priority DESC, CASE WHEN status = 'SUSPENDED' THEN wake_at ELSE created_at END,
             created_at, workflow_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
UPDATE workflows SET
    owner = %(owner)s,
    fence = workflows.fence + 1,
    lease_until = %(lease_until)s,
    wake_at = NULL,
    started_at = COALESCE(workflows.started_at, %(now)s),
    status = CASE WHEN workflows.status = 'COMPENSATING' THEN 'COMPENSATING' ELSE 'RUNNING' END,
    recovery_attempts = CASE WHEN workflows.status IN ('RUNNING', 'COMPENSATING')
                             THEN workflows.recovery_attempts + 1 ELSE 0 END,
    version = CASE WHEN workflows.status = 'PENDING' AND workflows.started_at IS NULL
                   THEN COALESCE((SELECT current.version
                                  FROM unnest(%(current_names)s::text[],
                                              %(current_values)s::text[])
                                       AS current (workflow_name, version)
                                  WHERE current.workflow_name = workflows.workflow_name),
                                 workflows.version)
                   ELSE workflows.version END
FROM due
WHERE workflows.workflow_id = due.workflow_id
RETURNING workflows.*, due.due_at;

-- name: next_wake_time
-- The earliest timer among suspended workflows of the given names (and versions, as
-- in claim_due_workflows).
SELECT min(wake_at) AS wake_at FROM workflows
WHERE status = 'SUSPENDED' AND wake_at IS NOT NULL
  AND workflow_name = ANY (%(names)s::text[])
  AND (%(version_names)s::text[] IS NULL OR version = ''
       OR (workflow_name, version) IN (
           SELECT * FROM unnest(%(version_names)s::text[], %(version_values)s::text[])));

-- name: renew_leases
-- Extend every lease of an executor and record its heartbeat, in one statement;
-- report cancellation requests. A row another transaction holds (a client sending the
-- workflow a signal, say, possibly paused in the middle) is skipped until the next
-- heartbeat rather than waited for: waiting would hold back every other lease.
WITH heartbeat AS (
    UPDATE executors SET heartbeat_at = %(now)s WHERE executor_id = %(owner)s),
mine AS (
    SELECT workflow_id FROM workflows WHERE owner = %(owner)s
    FOR NO KEY UPDATE SKIP LOCKED)
UPDATE workflows SET lease_until = %(lease_until)s
FROM mine
WHERE workflows.workflow_id = mine.workflow_id AND workflows.owner = %(owner)s
RETURNING workflows.workflow_id, workflows.cancel_requested;

-- name: release_workflows
-- Give up every lease of an executor that stops cleanly, so that others can claim its
-- workflows now; a run given up is not a crash: the recovery attempt its claim
-- counted is given back.
WITH released AS (
    UPDATE workflows SET
        owner = NULL,
        lease_until = NULL,
        recovery_attempts = greatest(recovery_attempts - 1, 0)
    WHERE owner = %(owner)s
    RETURNING workflow_id)
SELECT count(*) AS released, pg_notify(%(channel)s, 'work') AS notified FROM released;

-- name: expire_leases
-- Free every workflow of an executor known to be dead (its runs crashed: their
-- recovery attempts count).
WITH released AS (
    UPDATE workflows SET owner = NULL, lease_until = NULL WHERE owner = %(owner)s
    RETURNING workflow_id)
SELECT count(*) AS released, pg_notify(%(channel)s, 'work') AS notified FROM released;

-- name: register_executor
-- Record a live executor (insert or replace).
INSERT INTO executors (executor_id, hostname, pid, heartbeat_at)
VALUES (%(executor_id)s, %(hostname)s, %(pid)s, %(now)s)
ON CONFLICT (executor_id) DO UPDATE SET
    hostname = excluded.hostname, pid = excluded.pid, heartbeat_at = excluded.heartbeat_at;

-- name: list_executors
-- Every registered executor, by id.
SELECT executor_id, hostname, pid, heartbeat_at FROM executors ORDER BY executor_id;

-- name: remove_executor
-- Forget an executor.
DELETE FROM executors WHERE executor_id = %(executor_id)s;

-- name: load_history
-- Every recorded operation (by seq) and failed attempt (by seq, attempt) of a
-- workflow, each a JSON array of rows: one statement, so one snapshot and one round
-- trip (a transaction of two reads took five).
SELECT
    (SELECT coalesce(json_agg(o ORDER BY o.seq), '[]') FROM operations o
     WHERE o.workflow_id = %(workflow_id)s) AS operations,
    (SELECT coalesce(json_agg(a ORDER BY a.seq, a.attempt), '[]') FROM attempts a
     WHERE a.workflow_id = %(workflow_id)s) AS attempts;

-- name: list_operations
-- A workflow's operations of some kinds (and one name, unless NULL) after a seq, by seq:
-- what readers of events and streams poll.
SELECT * FROM operations
WHERE workflow_id = %(workflow_id)s
  AND seq > %(after_seq)s
  AND kind = ANY (%(kinds)s::text[])
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
ORDER BY seq;

-- name: record_operation
-- The hot path, one statement: move updated_at forward while the fence owns the
-- workflow (which locks its row), and insert or replace the operation only if it
-- does; no row returned means the fence is stale. An event or a stream entry
-- (announce) also tells the readers in other processes.
WITH owned AS (
    UPDATE workflows SET updated_at = GREATEST(updated_at, %(moment)s)
    WHERE workflow_id = %(workflow_id)s AND owner = %(owner)s AND fence = %(fence)s
    RETURNING workflow_id),
written AS (
INSERT INTO operations (
    workflow_id, seq, kind, name, status, result, error, serializer, attempts, started_at,
    finished_at, wake_at)
SELECT
    owned.workflow_id, %(seq)s, %(kind)s, %(name)s, %(status)s, %(result)s, %(error)s,
    %(serializer)s, %(attempts)s, %(started_at)s, %(finished_at)s, %(wake_at)s
FROM owned
ON CONFLICT (workflow_id, seq) DO UPDATE SET
    kind = excluded.kind, name = excluded.name, status = excluded.status,
    result = excluded.result, error = excluded.error, serializer = excluded.serializer,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at
RETURNING seq, workflow_id)
SELECT
    seq,
    CASE WHEN %(announce)s::boolean
         THEN pg_notify(%(channel)s, 'progress:' || workflow_id) END AS notified
FROM written;

-- name: record_operations
-- record_operation for a batch of checkpoints (group commit), as ONE statement: the
-- batch commits or fails whole, and no transaction stays open between round trips
-- (a worker stopped mid-batch must not keep rows locked against the claims of
-- others). Each (workflow_id, seq) appears at most once in a batch. The rows
-- returned are the checkpoints whose fence held.
WITH batch AS (
    SELECT * FROM unnest(
        %(workflow_id)s::text[], %(owner)s::text[], %(fence)s::bigint[],
        %(moment)s::bigint[], %(seq)s::integer[], %(kind)s::text[], %(name)s::text[],
        %(status)s::text[], %(result)s::text[], %(error)s::text[], %(serializer)s::text[],
        %(attempts)s::integer[], %(started_at)s::bigint[], %(finished_at)s::bigint[],
        %(wake_at)s::bigint[], %(announce)s::boolean[])
    AS b(workflow_id, owner, fence, moment, seq, kind, name, status, result, error,
         serializer, attempts, started_at, finished_at, wake_at, announce)),
owned AS (
    UPDATE workflows SET updated_at = GREATEST(workflows.updated_at, latest.moment)
    FROM (SELECT workflow_id, owner, fence, max(moment) AS moment
          FROM batch GROUP BY workflow_id, owner, fence ORDER BY workflow_id) AS latest
    WHERE workflows.workflow_id = latest.workflow_id
      AND workflows.owner = latest.owner AND workflows.fence = latest.fence
    RETURNING workflows.workflow_id, workflows.owner, workflows.fence),
written AS (
INSERT INTO operations (
    workflow_id, seq, kind, name, status, result, error, serializer, attempts, started_at,
    finished_at, wake_at)
SELECT
    batch.workflow_id, batch.seq, batch.kind, batch.name, batch.status, batch.result,
    batch.error, batch.serializer, batch.attempts, batch.started_at, batch.finished_at,
    batch.wake_at
FROM batch JOIN owned USING (workflow_id, owner, fence)
ON CONFLICT (workflow_id, seq) DO UPDATE SET
    kind = excluded.kind, name = excluded.name, status = excluded.status,
    result = excluded.result, error = excluded.error, serializer = excluded.serializer,
    attempts = excluded.attempts, started_at = excluded.started_at,
    finished_at = excluded.finished_at, wake_at = excluded.wake_at
RETURNING workflow_id, seq)
SELECT
    written.workflow_id, written.seq,
    CASE WHEN batch.announce
         THEN pg_notify(%(channel)s, 'progress:' || written.workflow_id) END AS notified
FROM written JOIN batch USING (workflow_id, seq);

-- name: record_attempt
-- Insert (or replace) a failed attempt only while the fence owns the workflow (its
-- row locked for the rest of the statement).
WITH owned AS (
    SELECT workflow_id FROM workflows
    WHERE workflow_id = %(workflow_id)s AND owner = %(owner)s AND fence = %(fence)s
    FOR SHARE)
INSERT INTO attempts (
    workflow_id, seq, attempt, error, started_at, finished_at, next_attempt_at)
SELECT
    owned.workflow_id, %(seq)s, %(attempt)s, %(error)s, %(started_at)s, %(finished_at)s,
    %(next_attempt_at)s
FROM owned
ON CONFLICT (workflow_id, seq, attempt) DO UPDATE SET
    error = excluded.error, started_at = excluded.started_at,
    finished_at = excluded.finished_at, next_attempt_at = excluded.next_attempt_at
RETURNING seq;

-- name: set_workflow_status
-- Compare-and-set: change the status only from an allowed source, while fenced; a
-- finished workflow is announced to whoever waits for its result.
WITH changed AS (
    UPDATE workflows SET
        status = %(status)s,
        updated_at = GREATEST(updated_at, %(now)s),
        result = COALESCE(%(result)s, result),
        error = COALESCE(%(error)s, error),
        owner = CASE WHEN %(releases)s THEN NULL ELSE owner END,
        lease_until = CASE WHEN %(releases)s THEN NULL ELSE lease_until END,
        finished_at = CASE WHEN %(finishes)s THEN %(now)s::bigint ELSE finished_at END
    WHERE workflow_id = %(workflow_id)s AND owner = %(owner)s AND fence = %(fence)s
      AND status = ANY (string_to_array(%(sources)s, ','))
    RETURNING *)
SELECT changed.*,
       CASE WHEN %(finishes)s THEN pg_notify(%(channel)s, 'workflow:' || workflow_id) END
           AS notified
FROM changed;

-- name: set_workflow_statuses
-- set_workflow_status for a batch (group commit), as ONE statement (no transaction
-- stays open between round trips). Each workflow appears at most once in a batch; its
-- allowed sources are one comma-separated text (arrays of arrays must be rectangular).
-- Rows are locked in workflow_id order. The rows returned are the changes made.
WITH batch AS (
    SELECT * FROM unnest(
        %(workflow_id)s::text[], %(owner)s::text[], %(fence)s::bigint[],
        %(status)s::text[], %(sources)s::text[], %(now)s::bigint[], %(result)s::text[],
        %(error)s::text[], %(releases)s::boolean[], %(finishes)s::boolean[])
    AS b(workflow_id, owner, fence, status, sources, now, result, error, releases,
         finishes)),
changed AS (
    UPDATE workflows SET
        status = batch.status,
        updated_at = GREATEST(workflows.updated_at, batch.now),
        result = COALESCE(batch.result, workflows.result),
        error = COALESCE(batch.error, workflows.error),
        owner = CASE WHEN batch.releases THEN NULL ELSE workflows.owner END,
        lease_until = CASE WHEN batch.releases THEN NULL ELSE workflows.lease_until END,
        finished_at = CASE WHEN batch.finishes THEN batch.now ELSE workflows.finished_at END
    FROM (SELECT * FROM batch ORDER BY workflow_id) AS batch
    WHERE workflows.workflow_id = batch.workflow_id
      AND workflows.owner = batch.owner AND workflows.fence = batch.fence
      AND workflows.status = ANY (string_to_array(batch.sources, ','))
    RETURNING workflows.*, batch.finishes AS finishes)
SELECT changed.*,
       CASE WHEN changed.finishes THEN pg_notify(%(channel)s, 'workflow:' || workflow_id) END
           AS notified
FROM changed;

-- name: suspend_workflow
-- RUNNING to SUSPENDED, releasing ownership, fenced; due at once when the awaited signal
-- is already in the inbox or a cancellation was requested.
UPDATE workflows SET
    status = 'SUSPENDED',
    owner = NULL,
    lease_until = NULL,
    wait_reason = %(wait_reason)s,
    updated_at = GREATEST(updated_at, %(now)s),
    wake_at = CASE
        WHEN cancel_requested = 1 OR EXISTS (
                 SELECT 1 FROM signals
                 WHERE signals.workflow_id = %(workflow_id)s
                   AND signals.name = %(signal)s::text
                   AND signals.consumed_seq IS NULL)
        THEN LEAST(COALESCE(%(wake_at)s::bigint, %(now)s), %(now)s)
        ELSE %(wake_at)s::bigint END
WHERE workflow_id = %(workflow_id)s AND owner = %(owner)s AND fence = %(fence)s
  AND status = 'RUNNING'
RETURNING *;

-- name: wake_for_waiting_signal
-- Right after suspend_workflow committed a wait for a signal that it did not find:
-- make the workflow due now if that signal is in the inbox after all (appended while
-- the suspension waited for the row's lock: its snapshot could not see it). The fence
-- is unchanged unless the workflow was claimed since, and then its new run sees the
-- signal anyway. One row when it was woken.
UPDATE workflows SET wake_at = LEAST(COALESCE(wake_at, %(now)s), %(now)s)
WHERE workflow_id = %(workflow_id)s AND fence = %(fence)s AND status = 'SUSPENDED'
  AND EXISTS (
      SELECT 1 FROM signals
      WHERE signals.workflow_id = %(workflow_id)s
        AND signals.name = %(signal)s::text
        AND signals.consumed_seq IS NULL)
RETURNING *;

-- name: flag_cancel
-- Record a cancellation request for the workflow's owner to act on (it is told at once).
WITH flagged AS (
    UPDATE workflows SET
        cancel_requested = 1,
        compensate_on_cancel = GREATEST(compensate_on_cancel, %(compensate)s),
        updated_at = GREATEST(updated_at, %(now)s)
    WHERE workflow_id = %(workflow_id)s
    RETURNING *)
SELECT flagged.*, pg_notify(%(channel)s, 'cancel:' || workflow_id) AS notified FROM flagged;

-- name: cancel_idle_workflow
-- Cancel at once a workflow that nobody runs.
WITH cancelled AS (
    UPDATE workflows SET
        status = 'CANCELLED',
        cancel_requested = 1,
        owner = NULL,
        lease_until = NULL,
        updated_at = GREATEST(updated_at, %(now)s),
        finished_at = %(now)s
    WHERE workflow_id = %(workflow_id)s
    RETURNING *)
SELECT cancelled.*, pg_notify(%(channel)s, 'workflow:' || workflow_id) AS notified
FROM cancelled;

-- name: wake_to_compensate
-- Make an idle workflow due now so that an executor claims it and compensates; PARKED
-- is never claimed, so it becomes SUSPENDED.
WITH woken AS (
    UPDATE workflows SET
        status = CASE WHEN status = 'PARKED' THEN 'SUSPENDED' ELSE status END,
        cancel_requested = 1,
        compensate_on_cancel = 1,
        wake_at = LEAST(COALESCE(wake_at, %(now)s), %(now)s),
        updated_at = GREATEST(updated_at, %(now)s)
    WHERE workflow_id = %(workflow_id)s
    RETURNING *)
SELECT woken.*, pg_notify(%(channel)s, 'work') AS notified FROM woken;

-- name: find_signal_by_dedup_key
-- The signal already sent to a workflow with this dedup key.
SELECT * FROM signals WHERE workflow_id = %(workflow_id)s AND dedup_key = %(dedup_key)s;

-- name: append_signal
-- Append a signal to a workflow's inbox in one statement: lock the workflow first (its
-- status cannot change meanwhile, and appends to one workflow queue here before
-- touching the signals: FOR SHARE let two appends of one dedup key deadlock, each
-- waiting for the other's insert, then its own wake-up UPDATE, for the other's share
-- lock; NO KEY UPDATE, the lock UPDATE itself takes, still lets rows referencing the
-- workflow be inserted), insert unless the workflow has ended or the dedup key was
-- used already, and make a suspended workflow due now (an earlier timer is kept),
-- telling the workers and whoever watches it. One row unless the workflow does not
-- exist: its status, and the appended signal's columns (NULL when nothing was appended).
WITH target AS (
    SELECT workflow_id, status FROM workflows WHERE workflow_id = %(workflow_id)s
    FOR NO KEY UPDATE),
appended AS (
    INSERT INTO signals (workflow_id, name, payload, serializer, dedup_key, created_at)
    SELECT workflow_id, %(name)s, %(payload)s, %(serializer)s, %(dedup_key)s, %(now)s
    FROM target WHERE status <> ALL (%(terminal)s)
    ON CONFLICT (workflow_id, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
    RETURNING *),
woken AS (
    -- the status as locked by target (the latest row), not as this statement's
    -- snapshot saw it: a suspension committed while target waited for the lock counts
    UPDATE workflows SET wake_at = LEAST(COALESCE(workflows.wake_at, %(now)s), %(now)s)
    FROM target
    WHERE workflows.workflow_id = (SELECT workflow_id FROM appended)
      AND target.status = 'SUSPENDED'
    RETURNING workflows.workflow_id)
SELECT target.status AS workflow_status, appended.*,
    (SELECT pg_notify(%(channel)s, 'signal:' || workflow_id) FROM appended) AS notified
FROM target LEFT JOIN appended ON true;

-- name: consume_signal
-- Consume the oldest unconsumed signal of a name and record the wait's operation
-- with its payload, while fenced, in one statement (both commit or neither): the
-- fenced workflow's row is locked first (a takeover committed meanwhile is seen, and
-- refuses it), the signal marked consumed at %(seq)s, the operation inserted or
-- replaced, and updated_at moved forward as record_operation does; nothing is written
-- when there is no signal. A signal consumed at %(seq)s already (the statement is
-- retried when its connection is lost, perhaps after it committed) is returned again
-- and no other is consumed. One row: owned (false: the fence is stale) and the
-- consumed signal's columns (NULL when there was none). Signals are not published
-- kinds: no NOTIFY.
WITH owned AS (
    SELECT workflow_id FROM workflows
    WHERE workflow_id = %(workflow_id)s AND owner = %(owner)s AND fence = %(fence)s
    FOR NO KEY UPDATE),
earlier AS (
    SELECT * FROM signals WHERE workflow_id = %(workflow_id)s AND consumed_seq = %(seq)s),
consumed AS (
    UPDATE signals SET consumed_seq = %(seq)s, consumed_at = %(consumed_at)s
    WHERE signal_id = (
            SELECT signal_id FROM signals
            WHERE workflow_id = %(workflow_id)s AND name = %(name)s AND consumed_seq IS NULL
            ORDER BY signal_id
            LIMIT 1
            FOR UPDATE)
      AND EXISTS (SELECT 1 FROM owned)
      AND NOT EXISTS (SELECT 1 FROM earlier)
    RETURNING *),
touched AS (
    UPDATE workflows SET updated_at = GREATEST(updated_at, %(moment)s)
    WHERE workflow_id = (SELECT workflow_id FROM consumed)),
written AS (
    INSERT INTO operations (
        workflow_id, seq, kind, name, status, result, error, serializer, attempts,
        started_at, finished_at, wake_at)
    SELECT
        consumed.workflow_id, %(seq)s, %(kind)s, %(name)s, 'COMPLETED', consumed.payload,
        NULL, consumed.serializer, %(attempts)s, %(started_at)s, %(finished_at)s, %(wake_at)s
    FROM consumed
    -- The only row there can be is this wait's WAITING record (a wait with a timeout):
    -- same kind, name, start and timer; it becomes the consumed one.
    ON CONFLICT (workflow_id, seq) DO UPDATE SET
        status = excluded.status, result = excluded.result, error = excluded.error,
        serializer = excluded.serializer, finished_at = excluded.finished_at)
SELECT EXISTS (SELECT 1 FROM owned) AS owned, taken.*
FROM (SELECT 1) AS one
LEFT JOIN (SELECT * FROM consumed UNION ALL SELECT * FROM earlier) AS taken ON true;

-- name: list_signals
-- A workflow's inbox, consumed or not, oldest first.
SELECT * FROM signals WHERE workflow_id = %(workflow_id)s ORDER BY signal_id;

-- name: delete_failed_attempts
-- Forget the attempts of the failed operations a resume runs again: body operations
-- (seq >= 0) or compensations (seq < 0), as %(compensations)s says.
DELETE FROM attempts
WHERE workflow_id = %(workflow_id)s
  AND seq IN (SELECT seq FROM operations
              WHERE workflow_id = %(workflow_id)s AND status = 'FAILED'
                AND (seq < 0) = %(compensations)s);

-- name: delete_failed_operations
-- Forget the failed operations a resume runs again (as in delete_failed_attempts).
DELETE FROM operations
WHERE workflow_id = %(workflow_id)s AND status = 'FAILED' AND (seq < 0) = %(compensations)s;

-- name: resume_workflow
-- The operator's resume: the new status, unowned, not due before now, no recovery
-- attempt, not finished; the error kept only while compensating. Workers are told.
WITH resumed AS (
    UPDATE workflows SET
        status = %(status)s,
        owner = NULL,
        lease_until = NULL,
        wake_at = NULL,
        wait_reason = NULL,
        error = CASE WHEN %(keeps_error)s THEN error ELSE NULL END,
        recovery_attempts = 0,
        finished_at = NULL,
        updated_at = GREATEST(updated_at, %(now)s)
    WHERE workflow_id = %(workflow_id)s AND status = %(from_status)s
    RETURNING *)
SELECT resumed.*, pg_notify(%(channel)s, 'work') AS notified FROM resumed;
