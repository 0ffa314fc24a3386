//! The schema of the SQLite store and its upgrades.
//!
//! This file must only describe tables; queries live with the code that
//! uses them.

use rusqlite::Connection;

use crate::store::{Error, Result};

/// The schema version this build writes, kept in `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 13;

/// The first schema. Executions keep their whole record in `doc`; the other
/// columns exist for lookups and listing. An index on `executions` ends with
/// the rowid `seq` implicitly, so `(tenant_id)` serves "by tenant, by seq".
pub(super) const SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash BLOB PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id),
    created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS components (
    digest TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS step_versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    imports TEXT NOT NULL,
    compile_ms INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (tenant_id, name, digest)
);
CREATE TABLE IF NOT EXISTS workflows (
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, workflow_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS executions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_tenant ON executions (tenant_id);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (tenant_id, status);
CREATE INDEX IF NOT EXISTS executions_by_workflow ON executions (tenant_id, workflow_id);
CREATE INDEX IF NOT EXISTS executions_unfinished ON executions (seq)
    WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS secrets (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (tenant_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    tenant_id TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash BLOB NOT NULL,
    execution_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
";

/// Version 2: the store owns the work. Every execution has a `version`
/// (bumped by each commit and claim), a lease (`lease_owner`,
/// `lease_until_ns`) and `wake_ns`: when it is next due if nobody holds it,
/// when its lease lapses if somebody does, and NULL once it is terminal. The
/// partial index on `wake_ns` is the queue; terminal executions are not in
/// it. The inbox holds events not yet consumed; `event_keys` remembers the
/// idempotency keys of every event ever stored, consumed or not.
const SCHEMA_2: &str = "
ALTER TABLE executions ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE executions ADD COLUMN wake_ns INTEGER;
ALTER TABLE executions ADD COLUMN lease_owner TEXT;
ALTER TABLE executions ADD COLUMN lease_until_ns INTEGER;
UPDATE executions SET wake_ns = created_ns WHERE status IN ('queued', 'running');
DROP INDEX IF EXISTS executions_unfinished;
CREATE INDEX executions_due ON executions (wake_ns, seq) WHERE wake_ns IS NOT NULL;
CREATE INDEX executions_by_owner ON executions (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    payload TEXT,
    created_ns INTEGER NOT NULL
);
CREATE INDEX inbox_by_execution ON inbox (execution_id, seq);
CREATE TABLE event_keys (
    execution_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (execution_id, key)
) WITHOUT ROWID;
";

/// Version 3: cron schedules. A schedule keeps its whole record in `doc`;
/// `wake_ns` is when it is next due (its next tick while it is active, NULL
/// otherwise) and the partial index on it is the schedules' queue;
/// `buffered` says a `buffer_one` tick waits for a running execution, so
/// that the execution's end makes the schedule due. Executions carry the
/// schedule that started them, and `tick_ns`, the tick they ran for, is
/// unique per schedule: a tick can start at most one execution, whatever
/// the engines do. Workflows get a deletion time instead of being removed,
/// so that executions already running keep their definition.
const SCHEMA_3: &str = "
CREATE TABLE schedules (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    state TEXT NOT NULL,
    version INTEGER NOT NULL,
    wake_ns INTEGER,
    buffered INTEGER NOT NULL DEFAULT 0,
    doc TEXT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX schedules_due ON schedules (wake_ns, seq) WHERE wake_ns IS NOT NULL;
CREATE INDEX schedules_by_workflow ON schedules (tenant_id, workflow_id);
ALTER TABLE executions ADD COLUMN schedule_id TEXT;
ALTER TABLE executions ADD COLUMN tick_ns INTEGER;
CREATE INDEX executions_by_schedule ON executions (tenant_id, schedule_id)
    WHERE schedule_id IS NOT NULL;
CREATE UNIQUE INDEX executions_by_tick ON executions (tenant_id, schedule_id, tick_ns)
    WHERE tick_ns IS NOT NULL;
ALTER TABLE workflows ADD COLUMN deleted_ns INTEGER;
";

/// Version 4: the nodes that use the database, each with its last
/// heartbeat (see `store::Heartbeat`).
const SCHEMA_4: &str = "
CREATE TABLE nodes (
    node_id TEXT PRIMARY KEY,
    started_ns INTEGER NOT NULL,
    heartbeat_ns INTEGER NOT NULL,
    claim_work INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 5: tokens have ids, names, scopes (a JSON array of names),
/// expiry and revocation times; a token without a tenant is an admin token.
/// SQLite cannot drop `NOT NULL` from a column, so the table is rebuilt;
/// tokens from before get a random id and full scope.
const SCHEMA_5: &str = "
CREATE TABLE tokens_v5 (
    hash BLOB PRIMARY KEY,
    token_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT REFERENCES tenants(id),
    name TEXT,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_ns INTEGER,
    revoked_ns INTEGER
) WITHOUT ROWID;
INSERT INTO tokens_v5 (hash, token_id, tenant_id, scopes, created_at)
    SELECT hash, 'tok_' || lower(hex(randomblob(16))), tenant_id, '[\"full\"]', created_at
    FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v5 RENAME TO tokens;
CREATE INDEX tokens_by_tenant ON tokens (tenant_id);
";

/// Version 6: tenants can be suspended. A suspended tenant's unfinished
/// executions keep when they were due in `suspended_wake_ns`, with
/// `wake_ns` NULL, which takes them out of the queue until the tenant is
/// unsuspended (see `tenants`).
const SCHEMA_6: &str = "
ALTER TABLE tenants ADD COLUMN suspended_ns INTEGER;
ALTER TABLE executions ADD COLUMN suspended_wake_ns INTEGER;
CREATE INDEX executions_suspended ON executions (tenant_id)
    WHERE suspended_wake_ns IS NOT NULL;
";

/// Version 7: the quotas the admin set for a tenant, as a JSON object of
/// the limits it has of its own.
const SCHEMA_7: &str = "
ALTER TABLE tenants ADD COLUMN quotas TEXT NOT NULL DEFAULT '{}';
";

/// Version 8: fair claims. A tenant's `weight` and `max_running` (its
/// `max_concurrent_executions`) are columns the claim reads, NULL for the
/// default; the due rows are indexed per tenant, and the held ones too (a
/// tenant's running count).
const SCHEMA_8: &str = "
ALTER TABLE tenants ADD COLUMN weight INTEGER;
ALTER TABLE tenants ADD COLUMN max_running INTEGER;
CREATE INDEX executions_due_by_tenant ON executions (tenant_id, wake_ns, seq)
    WHERE wake_ns IS NOT NULL;
CREATE INDEX executions_held ON executions (tenant_id) WHERE lease_owner IS NOT NULL;
";

/// Version 9: the audit log, one row per change of a resource, read
/// newest first per tenant or for everyone.
const SCHEMA_9: &str = "
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ns INTEGER NOT NULL,
    tenant_id TEXT,
    token_id TEXT NOT NULL,
    action TEXT NOT NULL,
    request TEXT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit (tenant_id, seq);
";

/// Version 10: retention. `finished_ns` is when a finished execution
/// finished (NULL while it is unfinished, and again once a resume reopens
/// it); the partial index on it is the order the retention sweep deletes
/// in, and idempotency keys are found by the execution they point at, to
/// go with it. Executions that had finished before the upgrade count as
/// finished at the upgrade, so that none is deleted sooner than the
/// retention after it.
const SCHEMA_10: &str = "
ALTER TABLE executions ADD COLUMN finished_ns INTEGER;
UPDATE executions SET finished_ns = CAST(strftime('%s', 'now') AS INTEGER) * 1000000000
    WHERE wake_ns IS NULL AND lease_owner IS NULL AND suspended_wake_ns IS NULL
      AND status IN ('succeeded', 'partially_succeeded', 'failed', 'cancelled', 'timed_out');
CREATE INDEX executions_finished ON executions (finished_ns, seq) WHERE finished_ns IS NOT NULL;
CREATE INDEX idempotency_by_execution ON idempotency (execution_id);
";

/// Version 11: callbacks. `deliveries` is the outbox: a row is inserted
/// in the commit of the state it reports, and is pending while `due_ns`
/// (its next attempt) is set; `lease_owner` and `lease_until_ns` are the
/// claim of a node attempting it, `attempts` the JSON list of attempts.
/// The partial index is the delivery queue; the order of one execution's
/// deliveries is `seq`. `webhook_secrets` holds each tenant's sealed
/// signing secret and, after a rotation, the one before it until
/// `previous_until_ns`.
const SCHEMA_11: &str = "
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    event TEXT NOT NULL,
    step TEXT,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    due_ns INTEGER,
    lease_owner TEXT,
    lease_until_ns INTEGER,
    attempt_count INTEGER NOT NULL DEFAULT 0,
    attempts TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX deliveries_due ON deliveries (due_ns, seq) WHERE due_ns IS NOT NULL;
CREATE INDEX deliveries_by_execution ON deliveries (execution_id, seq);
CREATE INDEX deliveries_by_tenant ON deliveries (tenant_id);
CREATE TABLE webhook_secrets (
    tenant_id TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    previous_sealed BLOB,
    previous_until_ns INTEGER
) WITHOUT ROWID;
";

/// Version 12: batch runs. `batch_id` names the batch an execution was
/// created in; the partial index lists a batch in creation order.
const SCHEMA_12: &str = "
ALTER TABLE executions ADD COLUMN batch_id TEXT;
CREATE INDEX executions_by_batch ON executions (tenant_id, batch_id, seq)
    WHERE batch_id IS NOT NULL;
";

/// Version 13: the hosts a tenant's steps may call over HTTP (its egress
/// allowlist), as a JSON array of host patterns.
const SCHEMA_13: &str = "
ALTER TABLE tenants ADD COLUMN egress TEXT NOT NULL DEFAULT '[]';
";

/// The upgrades in order: entry `i` brings version `i` to `i + 1`.
const MIGRATIONS: [&str; 13] = [
    SCHEMA_1, SCHEMA_2, SCHEMA_3, SCHEMA_4, SCHEMA_5, SCHEMA_6, SCHEMA_7, SCHEMA_8, SCHEMA_9,
    SCHEMA_10, SCHEMA_11, SCHEMA_12, SCHEMA_13,
];

/// Applies the upgrades the database lacks, in one transaction, and records
/// the version; refuses a database written by a newer build.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "the database has schema version {version}, newer than this build's \
             {SCHEMA_VERSION}"
        )));
    }
    let from = usize::try_from(version).unwrap_or(0);
    let upgrades: String = MIGRATIONS[from..].concat();
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {upgrades} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(())
}
