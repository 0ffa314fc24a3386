//! The schema of the PostgreSQL store and its upgrades.
//!
//! This file must only describe tables and how they are upgraded; queries
//! live with the code that uses them.
//!
//! Upgrades run at start in one transaction that first takes an advisory
//! lock keyed by the schema's name, so that several nodes starting at once
//! against one database migrate once: the first applies what is missing,
//! the others wait for it and then find nothing to do. The applied versions
//! are rows of `stephost_schema`.

use sqlx::{PgPool, Postgres, Transaction};

use crate::store::{Error, Result};

/// The schema version this build writes.
pub(super) const SCHEMA_VERSION: i64 = 12;

/// The first schema: the same tables as SQLite's third version. Every
/// record is JSON text in `doc` (text, not `jsonb`, so that numbers and key
/// order survive exactly as written); the other columns exist for lookups,
/// listing and the work. Times are nanoseconds since the epoch.
///
/// `executions.wake_ns` is the queue: when an execution nobody holds is
/// next due, when a held one's lease lapses, and NULL once it is terminal.
/// The partial index on it is the claim path, so finished executions (the
/// bulk of the table) are not in it. Component bytes live in their own
/// table, never in the rows the work touches; documents over about 2 kB
/// are kept out of line by PostgreSQL (TOAST), so claims and renewals,
/// which do not change `doc`, do not rewrite it.
const SCHEMA_1: &str = "
CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE tokens (
    hash BYTEA PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    created_at TEXT NOT NULL
);
CREATE TABLE components (
    digest TEXT PRIMARY KEY,
    bytes BYTEA NOT NULL
);
CREATE TABLE step_versions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    imports TEXT NOT NULL,
    compile_ms BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (tenant_id, name, digest)
);
CREATE TABLE workflows (
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted_ns BIGINT,
    PRIMARY KEY (tenant_id, workflow_id, version)
);
CREATE TABLE executions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    version BIGINT NOT NULL,
    wake_ns BIGINT,
    lease_owner TEXT,
    lease_until_ns BIGINT,
    schedule_id TEXT,
    tick_ns BIGINT,
    doc TEXT NOT NULL
);
CREATE INDEX executions_by_tenant ON executions (tenant_id, seq);
CREATE INDEX executions_by_status ON executions (tenant_id, status, seq);
CREATE INDEX executions_by_workflow ON executions (tenant_id, workflow_id, seq);
CREATE INDEX executions_due ON executions (wake_ns, seq) WHERE wake_ns IS NOT NULL;
CREATE INDEX executions_by_owner ON executions (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX executions_by_schedule ON executions (tenant_id, schedule_id, seq)
    WHERE schedule_id IS NOT NULL;
CREATE UNIQUE INDEX executions_by_tick ON executions (tenant_id, schedule_id, tick_ns)
    WHERE tick_ns IS NOT NULL;
CREATE TABLE inbox (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    payload TEXT,
    created_ns BIGINT NOT NULL
);
CREATE INDEX inbox_by_execution ON inbox (execution_id, seq);
CREATE TABLE event_keys (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE TABLE idempotency (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
);
CREATE TABLE schedules (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    state TEXT NOT NULL,
    version BIGINT NOT NULL,
    wake_ns BIGINT,
    buffered BOOLEAN NOT NULL DEFAULT FALSE,
    doc TEXT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX schedules_due ON schedules (wake_ns, seq) WHERE wake_ns IS NOT NULL;
CREATE INDEX schedules_by_workflow ON schedules (tenant_id, workflow_id, seq);
CREATE TABLE secrets (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
";

/// Version 2: the nodes that use the database, each with its last
/// heartbeat (see `store::Heartbeat`).
const SCHEMA_2: &str = "
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_ns BIGINT NOT NULL,
    heartbeat_ns BIGINT NOT NULL,
    claim_work BOOLEAN NOT NULL
);
";

/// Version 3: a driver's commit as one function, so that it is one round
/// trip whatever it does (see `work::commit`). Each statement of a
/// `VOLATILE` function takes a fresh snapshot at READ COMMITTED, as the
/// statements of a transaction do: once the fenced `UPDATE` holds the row,
/// the statements after it see every event committed before the lock was
/// granted. Returns the new version, or NULL when the fence refused it.
const SCHEMA_3: &str = "
CREATE FUNCTION stephost_commit(
    p_id TEXT, p_version BIGINT, p_fence_owner TEXT,
    p_status TEXT, p_doc TEXT,
    p_lease_owner TEXT, p_lease_until_ns BIGINT, p_wake_ns BIGINT,
    p_consumed BIGINT, p_park BOOLEAN,
    p_tenant_id TEXT, p_schedule_id TEXT, p_schedule_at_ns BIGINT
) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_version BIGINT;
BEGIN
    UPDATE executions
    SET status = p_status, doc = p_doc, version = executions.version + 1,
        lease_owner = p_lease_owner, lease_until_ns = p_lease_until_ns, wake_ns = p_wake_ns
    WHERE id = p_id AND executions.version = p_version AND lease_owner = p_fence_owner
    RETURNING executions.version INTO new_version;
    IF new_version IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_park THEN
        -- An event the commit did not consume makes it due at once.
        UPDATE executions SET wake_ns = LEAST(wake_ns, pending.at)
        FROM (SELECT MIN(created_ns) AS at FROM inbox
              WHERE execution_id = p_id AND seq > p_consumed) AS pending
        WHERE id = p_id AND pending.at IS NOT NULL;
    END IF;
    IF p_consumed > 0 THEN
        DELETE FROM inbox WHERE execution_id = p_id AND seq <= p_consumed;
    END IF;
    IF p_schedule_id IS NOT NULL THEN
        -- A buffered tick waits for this execution to end.
        UPDATE schedules SET wake_ns = LEAST(wake_ns, p_schedule_at_ns)
        WHERE tenant_id = p_tenant_id AND id = p_schedule_id AND buffered;
    END IF;
    RETURN new_version;
END
$$;
";

/// Version 4: tokens have ids, names, scopes (a JSON array of names),
/// expiry and revocation times; a token without a tenant is an admin token.
/// Tokens from before get a random id and full scope.
const SCHEMA_4: &str = "
ALTER TABLE tokens ALTER COLUMN tenant_id DROP NOT NULL;
ALTER TABLE tokens ADD COLUMN token_id TEXT;
UPDATE tokens SET token_id = 'tok_' || md5(random()::text || encode(hash, 'hex'));
ALTER TABLE tokens ALTER COLUMN token_id SET NOT NULL;
ALTER TABLE tokens ADD CONSTRAINT tokens_token_id_key UNIQUE (token_id);
ALTER TABLE tokens ADD COLUMN name TEXT;
ALTER TABLE tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '[\"full\"]';
ALTER TABLE tokens ALTER COLUMN scopes DROP DEFAULT;
ALTER TABLE tokens ADD COLUMN expires_ns BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_ns BIGINT;
CREATE INDEX tokens_by_tenant ON tokens (tenant_id);
";

/// Version 5: tenants can be suspended. A suspended tenant's unfinished
/// executions keep when they were due in `suspended_wake_ns`, with
/// `wake_ns` NULL, which takes them out of the queue until the tenant is
/// unsuspended (see `tenants`).
const SCHEMA_5: &str = "
ALTER TABLE tenants ADD COLUMN suspended_ns BIGINT;
ALTER TABLE executions ADD COLUMN suspended_wake_ns BIGINT;
CREATE INDEX executions_suspended ON executions (tenant_id)
    WHERE suspended_wake_ns IS NOT NULL;
";

/// Version 6: the quotas the admin set for a tenant, as a JSON object of
/// the limits it has of its own.
const SCHEMA_6: &str = "
ALTER TABLE tenants ADD COLUMN quotas TEXT NOT NULL DEFAULT '{}';
";

/// Version 7: fair claims. A tenant's `weight` and `max_running` (its
/// `max_concurrent_executions`) are columns the claim reads, NULL for the
/// default; the due rows are indexed per tenant, and the held ones too (a
/// tenant's running count), which also finds the tenants with unfinished
/// work one seek each. `stephost_claim` is the claim round (see
/// `work::claim_round`): when any tenant has a running limit it first
/// takes a transaction lock that claims of this schema share, and only
/// then reads, so that two nodes never both see room for the same slot.
const SCHEMA_7: &str = "
ALTER TABLE tenants ADD COLUMN weight BIGINT;
ALTER TABLE tenants ADD COLUMN max_running BIGINT;
CREATE INDEX executions_due_by_tenant ON executions (tenant_id, wake_ns, seq)
    WHERE wake_ns IS NOT NULL;
CREATE INDEX executions_held ON executions (tenant_id) WHERE lease_owner IS NOT NULL;
CREATE FUNCTION stephost_claim(
    p_owner TEXT, p_now BIGINT, p_limit BIGINT, p_until BIGINT, p_cap BIGINT
) RETURNS TABLE (
    o_next_ns BIGINT, o_rank BIGINT, o_seq BIGINT, o_tenant_id TEXT, o_doc TEXT,
    o_version BIGINT, o_has_events BOOLEAN
) LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF p_cap IS NOT NULL OR EXISTS (SELECT 1 FROM tenants WHERE max_running IS NOT NULL) THEN
        PERFORM pg_advisory_xact_lock(hashtextextended('stephost claims in ' || current_schema(), 0));
    END IF;
    RETURN QUERY
    WITH RECURSIVE busy(id) AS (
        SELECT MIN(b.tenant_id) FROM executions AS b WHERE b.wake_ns IS NOT NULL
        UNION ALL
        SELECT (SELECT MIN(x.tenant_id) FROM executions AS x
                WHERE x.wake_ns IS NOT NULL AND x.tenant_id > busy.id)
        FROM busy WHERE busy.id IS NOT NULL),
    held AS (
        SELECT h.tenant_id, COUNT(*) AS n FROM executions AS h
        WHERE h.lease_owner IS NOT NULL GROUP BY h.tenant_id),
    cand AS (
        SELECT d.seq, d.tenant_id, d.wake_ns, true AS free,
               COALESCE(t.weight, 1) AS weight, COALESCE(t.max_running, p_cap) AS cap
        FROM busy LEFT JOIN tenants AS t ON t.id = busy.id CROSS JOIN LATERAL (
            SELECT x.seq, x.tenant_id, x.wake_ns FROM executions AS x
            WHERE x.tenant_id = busy.id AND x.wake_ns IS NOT NULL AND x.wake_ns <= p_now
              AND x.lease_owner IS NULL
            ORDER BY x.wake_ns, x.seq LIMIT p_limit) AS d
        WHERE busy.id IS NOT NULL
        UNION ALL
        SELECT l.seq, l.tenant_id, l.wake_ns, false, 1, NULL
        FROM (SELECT x.seq, x.tenant_id, x.wake_ns FROM executions AS x
              WHERE x.lease_owner IS NOT NULL AND x.lease_owner <> p_owner
                AND x.lease_until_ns < p_now AND x.wake_ns IS NOT NULL
              ORDER BY x.wake_ns, x.seq LIMIT p_limit) AS l),
    ranked AS (
        SELECT c.seq, c.wake_ns, c.weight, c.cap,
               CASE WHEN c.free THEN COALESCE(h.n, 0)
                   + ROW_NUMBER() OVER (PARTITION BY c.tenant_id, c.free ORDER BY c.wake_ns, c.seq)
               ELSE 0 END AS load
        FROM cand AS c LEFT JOIN held AS h ON h.tenant_id = c.tenant_id),
    pick AS (
        SELECT r.seq, ROW_NUMBER() OVER (ORDER BY r.load::float8 / r.weight, r.wake_ns, r.seq) AS pos
        FROM ranked AS r WHERE r.cap IS NULL OR r.load <= r.cap
        ORDER BY pos LIMIT p_limit),
    due AS (
        SELECT e.seq, p.pos FROM executions AS e JOIN pick AS p ON p.seq = e.seq
        WHERE e.wake_ns IS NOT NULL AND e.wake_ns <= p_now
          AND (e.lease_owner IS NULL OR (e.lease_owner <> p_owner AND e.lease_until_ns < p_now))
        FOR UPDATE OF e SKIP LOCKED),
    claimed AS (
        UPDATE executions AS e
        SET lease_owner = p_owner, lease_until_ns = p_until, wake_ns = p_until, version = e.version + 1
        FROM due WHERE e.seq = due.seq
        RETURNING due.pos, e.seq, e.tenant_id, e.doc, e.version,
                  EXISTS (SELECT 1 FROM inbox WHERE inbox.execution_id = e.id) AS has_events),
    next AS (
        SELECT n.wake_ns FROM executions AS n
        WHERE n.wake_ns IS NOT NULL AND (n.lease_owner IS NULL OR n.lease_owner <> p_owner)
          AND n.seq NOT IN (SELECT due.seq FROM due)
        ORDER BY n.wake_ns LIMIT 1)
    SELECT (SELECT next.wake_ns FROM next), c.pos, c.seq, c.tenant_id, c.doc, c.version, c.has_events
    FROM (SELECT 1) AS one LEFT JOIN claimed AS c ON true;
END $$;
";

/// Version 8: the audit log, one row per change of a resource, read
/// newest first per tenant or for everyone.
const SCHEMA_8: &str = "
CREATE TABLE audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ns BIGINT NOT NULL,
    tenant_id TEXT,
    token_id TEXT NOT NULL,
    action TEXT NOT NULL,
    request TEXT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit (tenant_id, seq);
";

/// Version 9: retention, as in SQLite's version 10. `finished_ns` is when
/// a finished execution finished (NULL while unfinished and once a resume
/// reopens it), indexed for the retention sweep; idempotency keys are found
/// by their execution. `stephost_commit` keeps its arguments and now also
/// records `finished_ns` when it finishes one (no wake time: only a
/// finishing commit has none), from its last argument, which has always
/// carried when the execution finished. Executions that had finished
/// before the upgrade count as finished at the upgrade.
const SCHEMA_9: &str = "
ALTER TABLE executions ADD COLUMN finished_ns BIGINT;
UPDATE executions SET finished_ns = (extract(epoch FROM now()) * 1000000000)::BIGINT
    WHERE wake_ns IS NULL AND lease_owner IS NULL AND suspended_wake_ns IS NULL
      AND status IN ('succeeded', 'partially_succeeded', 'failed', 'cancelled', 'timed_out');
CREATE INDEX executions_finished ON executions (finished_ns, seq) WHERE finished_ns IS NOT NULL;
CREATE INDEX idempotency_by_execution ON idempotency (execution_id);
CREATE OR REPLACE FUNCTION stephost_commit(
    p_id TEXT, p_version BIGINT, p_fence_owner TEXT,
    p_status TEXT, p_doc TEXT,
    p_lease_owner TEXT, p_lease_until_ns BIGINT, p_wake_ns BIGINT,
    p_consumed BIGINT, p_park BOOLEAN,
    p_tenant_id TEXT, p_schedule_id TEXT, p_schedule_at_ns BIGINT
) RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    new_version BIGINT;
BEGIN
    UPDATE executions
    SET status = p_status, doc = p_doc, version = executions.version + 1,
        lease_owner = p_lease_owner, lease_until_ns = p_lease_until_ns, wake_ns = p_wake_ns,
        finished_ns = CASE WHEN p_wake_ns IS NULL THEN p_schedule_at_ns END
    WHERE id = p_id AND executions.version = p_version AND lease_owner = p_fence_owner
    RETURNING executions.version INTO new_version;
    IF new_version IS NULL THEN
        RETURN NULL;
    END IF;
    IF p_park THEN
        -- An event the commit did not consume makes it due at once.
        UPDATE executions SET wake_ns = LEAST(wake_ns, pending.at)
        FROM (SELECT MIN(created_ns) AS at FROM inbox
              WHERE execution_id = p_id AND seq > p_consumed) AS pending
        WHERE id = p_id AND pending.at IS NOT NULL;
    END IF;
    IF p_consumed > 0 THEN
        DELETE FROM inbox WHERE execution_id = p_id AND seq <= p_consumed;
    END IF;
    IF p_schedule_id IS NOT NULL THEN
        -- A buffered tick waits for this execution to end.
        UPDATE schedules SET wake_ns = LEAST(wake_ns, p_schedule_at_ns)
        WHERE tenant_id = p_tenant_id AND id = p_schedule_id AND buffered;
    END IF;
    RETURN new_version;
END
$$;
";

/// Version 10: callbacks, as in SQLite's version 11: `deliveries` is the
/// outbox (pending while `due_ns` is set, claimed under `lease_owner`
/// until `lease_until_ns`, in `seq` order per execution) and
/// `webhook_secrets` the tenants' sealed signing secrets.
const SCHEMA_10: &str = "
CREATE TABLE deliveries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    event TEXT NOT NULL,
    step TEXT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    due_ns BIGINT,
    lease_owner TEXT,
    lease_until_ns BIGINT,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    attempts TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX deliveries_due ON deliveries (due_ns, seq) WHERE due_ns IS NOT NULL;
CREATE INDEX deliveries_by_execution ON deliveries (execution_id, seq);
CREATE INDEX deliveries_by_tenant ON deliveries (tenant_id);
CREATE TABLE webhook_secrets (
    tenant_id TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    created_ns BIGINT NOT NULL,
    previous_sealed BYTEA,
    previous_until_ns BIGINT
);
";

/// Version 11: batch runs. `batch_id` names the batch an execution was
/// created in; the partial index lists a batch in creation order.
const SCHEMA_11: &str = "
ALTER TABLE executions ADD COLUMN batch_id TEXT;
CREATE INDEX executions_by_batch ON executions (tenant_id, batch_id, seq)
    WHERE batch_id IS NOT NULL;
";

/// Version 12: the hosts a tenant's steps may call over HTTP (its egress
/// allowlist), as a JSON array of host patterns.
const SCHEMA_12: &str = "
ALTER TABLE tenants ADD COLUMN egress TEXT NOT NULL DEFAULT '[]';
";

/// The upgrades in order: entry `i` brings version `i` to `i + 1`.
pub(super) const MIGRATIONS: [&str; 12] = [
    SCHEMA_1, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5, SCHEMA_6, SCHEMA_7, SCHEMA_8, SCHEMA_9,
    SCHEMA_10, SCHEMA_11, SCHEMA_12,
];

/// Applies the upgrades the database lacks and records them, under the
/// advisory lock; refuses a database written by a newer build.
/// Returns the schema the tables are in.
pub(super) async fn migrate(pool: &PgPool) -> Result<String> {
    let mut tx = pool.begin().await?;
    let result = upgrade(&mut tx).await;
    super::rows::finish(tx, result).await
}

async fn upgrade(tx: &mut Transaction<'static, Postgres>) -> Result<String> {
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut **tx)
        .await?;
    let Some(schema) = schema else {
        return Err(Error::Backend(
            "the database has no schema to create tables in: the search_path names no \
             existing schema (create it, or use one that exists)"
                .into(),
        ));
    };
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("stephost migrations in {schema}"))
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS stephost_schema (
             version BIGINT PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut **tx)
    .await?;
    let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM stephost_schema")
        .fetch_one(&mut **tx)
        .await?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "the database has schema version {current}, newer than this build's \
             {SCHEMA_VERSION}"
        )));
    }
    for (from, upgrade) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        sqlx::raw_sql(*upgrade).execute(&mut **tx).await?;
        sqlx::query("INSERT INTO stephost_schema (version) VALUES ($1)")
            .bind(i64::try_from(from).unwrap_or(i64::MAX) + 1)
            .execute(&mut **tx)
            .await?;
    }
    Ok(schema)
}
