//! Rows of the SQLite store: how values become columns and back, and the
//! queries that both reads and writes need.
//!
//! Functions here take a plain `&Connection` and must not care whether it is
//! the writer's (inside a savepoint) or a reader's.

use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::model::{Execution, TenantId, Timestamp, WorkflowId};
use crate::store::{
    Error, Idempotency, Lease, Result, StepRecord, StepVersion, Tenant, Token, TokenHash,
    WorkflowRecord,
};

/// Reads column `idx` as text and parses it.
fn parsed<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: FromStr,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

/// Reads column `idx` as JSON text.
fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

use crate::store::codec::group_steps;
pub(super) use crate::store::codec::{
    decode_cursor, decode_execution, encode_cursor, from_nanos, nanos, to_json,
};

/// An execution as its columns, encoded on the caller's thread so that the
/// writer thread only runs SQL.
pub(super) struct ExecutionRow {
    pub(super) id: String,
    pub(super) tenant: String,
    workflow: String,
    pub(super) status: &'static str,
    created_ns: i64,
    due_ns: i64,
    schedule: Option<String>,
    /// The schedule tick it runs for (set by a schedule's write).
    pub(super) tick_ns: Option<i64>,
    pub(super) doc: String,
}

impl ExecutionRow {
    pub(super) fn of(execution: &Execution) -> Result<Self> {
        Ok(Self {
            id: execution.execution_id.as_str().to_owned(),
            tenant: execution.tenant_id.as_str().to_owned(),
            workflow: execution.workflow_id.as_str().to_owned(),
            status: execution.status.as_str(),
            created_ns: nanos(execution.created_at),
            due_ns: nanos(execution.scheduled_for.unwrap_or(execution.created_at)),
            schedule: execution
                .schedule_id
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            tick_ns: None,
            doc: to_json(execution)?,
        })
    }

    /// Inserts the execution at version 1: due at its creation (a postponed
    /// one at its `scheduled_for`), or held by `lease` (and then due again
    /// when the lease lapses).
    pub(super) fn insert(&self, conn: &Connection, lease: Option<&Lease>) -> Result<()> {
        let (owner, until) = match lease {
            Some(l) => (Some(l.owner.as_str()), Some(nanos(l.until))),
            None => (None, None),
        };
        conn.prepare_cached(
            "INSERT INTO executions
                 (id, tenant_id, workflow_id, status, created_ns, doc, version, wake_ns,
                  lease_owner, lease_until_ns, schedule_id, tick_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, COALESCE(?8, ?9), ?7, ?8, ?10, ?11)",
        )?
        .execute(params![
            self.id,
            self.tenant,
            self.workflow,
            self.status,
            self.created_ns,
            self.doc,
            owner,
            until,
            self.due_ns,
            self.schedule,
            self.tick_ns
        ])?;
        Ok(())
    }

    /// Points the tenant's idempotency key at this execution.
    pub(super) fn claim_key(&self, conn: &Connection, idempotency: &Idempotency) -> Result<()> {
        conn.prepare_cached(
            "INSERT INTO idempotency (tenant_id, key, request_hash, execution_id)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, key) DO UPDATE SET
                 request_hash = excluded.request_hash, execution_id = excluded.execution_id",
        )?
        .execute(params![
            self.tenant,
            idempotency.key,
            idempotency.request_hash,
            self.id
        ])?;
        Ok(())
    }
}

pub(super) fn load_execution(
    conn: &Connection,
    tenant: &str,
    id: &str,
) -> Result<Option<Execution>> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT doc, version FROM executions WHERE id = ?1 AND tenant_id = ?2")?
        .query_row(params![id, tenant], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(doc, version)| decode_execution(tenant, &doc, version))
        .transpose()
}

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new_unchecked(row.get::<_, String>(0)?),
        name: row.get(1)?,
        created_at: parsed(row, 2)?,
    })
}

pub(super) fn load_tenant(
    conn: &Connection,
    column: &'static str,
    value: &str,
) -> Result<Option<Tenant>> {
    let sql = format!("SELECT id, name, created_at FROM tenants WHERE {column} = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([value], tenant_row)
        .optional()?)
}

pub(super) fn insert_token(conn: &Connection, token: &Token, hash: &TokenHash) -> Result<()> {
    if let Some(tenant) = &token.tenant
        && load_tenant(conn, "id", tenant.as_str())?.is_none()
    {
        return Err(Error::Backend(format!("no tenant {tenant}")));
    }
    conn.prepare_cached(
        "INSERT INTO tokens (hash, token_id, tenant_id, name, scopes, created_at, expires_ns,
                             revoked_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        hash.0,
        token.id,
        token.tenant.as_ref().map(TenantId::as_str),
        token.name,
        to_json(&token.scopes)?,
        token.created_at.to_string(),
        token.expires_at.map(nanos),
        token.revoked_at.map(nanos),
    ])?;
    Ok(())
}

/// The columns `token_row` reads, in order.
pub(super) const TOKEN_COLUMNS: &str =
    "token_id, tenant_id, name, scopes, created_at, expires_ns, revoked_ns";

pub(super) fn token_row(row: &Row<'_>) -> rusqlite::Result<Token> {
    let time = |idx: usize| -> rusqlite::Result<Option<Timestamp>> {
        row.get::<_, Option<i64>>(idx)?
            .map(|ns| {
                from_nanos(ns).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        idx,
                        rusqlite::types::Type::Integer,
                        e.into(),
                    )
                })
            })
            .transpose()
    };
    Ok(Token {
        id: row.get(0)?,
        tenant: row
            .get::<_, Option<String>>(1)?
            .map(TenantId::new_unchecked),
        name: row.get(2)?,
        scopes: json(row, 3)?,
        created_at: parsed(row, 4)?,
        expires_at: time(5)?,
        revoked_at: time(6)?,
    })
}

pub(super) fn workflow_row(row: &Row<'_>) -> rusqlite::Result<WorkflowRecord> {
    Ok(WorkflowRecord {
        workflow_id: WorkflowId::new_unchecked(row.get::<_, String>(0)?),
        version: row.get(1)?,
        definition: json(row, 2)?,
        created_at: parsed(row, 3)?,
        deleted_at: row
            .get::<_, Option<i64>>(4)?
            .map(|ns| {
                from_nanos(ns).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Integer,
                        e.into(),
                    )
                })
            })
            .transpose()?,
    })
}

pub(super) fn load_workflow(
    conn: &Connection,
    tenant: &str,
    id: &str,
    version: Option<u32>,
) -> Result<Option<WorkflowRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT workflow_id, version, definition, created_at, deleted_ns FROM workflows
             WHERE tenant_id = ?1 AND workflow_id = ?2 AND (?3 IS NULL OR version = ?3)
             ORDER BY version DESC LIMIT 1",
        )?
        .query_row(params![tenant, id, version], workflow_row)
        .optional()?)
}

/// A tenant's step versions, optionally of one step, grouped by step name.
pub(super) fn load_steps(
    conn: &Connection,
    tenant: &str,
    name: Option<&str>,
) -> Result<Vec<StepRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, digest, size_bytes, imports, compile_ms, created_at FROM step_versions
         WHERE tenant_id = ?1 AND (?2 IS NULL OR name = ?2)
         ORDER BY name, seq",
    )?;
    let rows = stmt.query_map(params![tenant, name], |row| {
        let version = StepVersion {
            digest: parsed(row, 1)?,
            size_bytes: row.get(2)?,
            imports: json(row, 3)?,
            compile_ms: row.get(4)?,
            created_at: parsed(row, 5)?,
        };
        Ok((row.get::<_, String>(0)?, version))
    })?;
    group_steps(rows.map(|row| row.map_err(Error::from)))
}
