//! The schema of the SQLite store and its upgrades.
//!
//! This file must only describe tables; queries live with the code that
//! uses them.

use rusqlite::Connection;

use crate::store::{Error, Result};

/// The schema version this build writes, kept in `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// The schema. Executions keep their whole record in `doc`; the other
/// columns exist for lookups and listing. An index on `executions` ends with
/// the rowid `seq` implicitly, so `(tenant_id)` serves "by tenant, by seq".
const SCHEMA: &str = "
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

/// Creates what is missing and records the version; refuses a database
/// written by a newer build.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "the database has schema version {version}, newer than this build's \
             {SCHEMA_VERSION}"
        )));
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(())
}
