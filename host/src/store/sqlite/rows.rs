//! Rows of the SQLite store: how values become columns and back, and the
//! queries that both reads and writes need.
//!
//! Functions here take a plain `&Connection` and must not care whether it is
//! the writer's (inside a savepoint) or a reader's.

use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::model::{BatchMember, Execution, ExecutionId, Status, TenantId, WorkflowId};
use crate::store::{
    Created, Error, Idempotency, Lease, Result, StepRecord, StepVersion, WorkflowRecord,
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
    batch: Option<String>,
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
            batch: execution.batch_id.as_ref().map(|b| b.as_str().to_owned()),
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
        // A suspended tenant's execution is stored off the claim path (see
        // `tenants`); a tenant deleted meanwhile gets none.
        let stored = conn
            .prepare_cached(
                "INSERT INTO executions
                     (id, tenant_id, workflow_id, status, created_ns, doc, version, wake_ns,
                      lease_owner, lease_until_ns, schedule_id, tick_ns, suspended_wake_ns,
                      batch_id)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, 1,
                        CASE WHEN t.suspended_ns IS NULL THEN COALESCE(?8, ?9) END,
                        CASE WHEN t.suspended_ns IS NULL THEN ?7 END,
                        CASE WHEN t.suspended_ns IS NULL THEN ?8 END,
                        ?10, ?11,
                        CASE WHEN t.suspended_ns IS NOT NULL THEN ?9 END,
                        ?12
                 FROM tenants t WHERE t.id = ?2",
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
                self.tick_ns,
                self.batch
            ])?;
        if stored == 0 {
            return Err(Error::NoTenant(TenantId::new_unchecked(
                self.tenant.clone(),
            )));
        }
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

/// Stores `rows` at version 1, all or none (the caller's savepoint rolls
/// back a failure), applying the idempotency rules with the key pointing at
/// the first; `lease` holds each row for its holder (a single execution).
pub(super) fn create(
    conn: &Connection,
    rows: &[ExecutionRow],
    idempotency: Option<&Idempotency>,
    lease: Option<&Lease>,
) -> Result<Created> {
    let Some(first) = rows.first() else {
        return Ok(Created::New);
    };
    if let Some(idempotency) = idempotency {
        let earlier: Option<(Vec<u8>, String)> = conn
            .prepare_cached(
                "SELECT request_hash, execution_id FROM idempotency
                 WHERE tenant_id = ?1 AND key = ?2",
            )?
            .query_row(params![first.tenant, idempotency.key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let existing = match earlier {
            Some((hash, _)) if hash != idempotency.request_hash => {
                return Ok(Created::KeyReused);
            }
            // A key whose execution is gone is as good as unused.
            Some((_, id)) => load_execution(conn, &first.tenant, &id)?,
            None => None,
        };
        if let Some(earlier) = crate::store::codec::on_key(existing, idempotency.on_conflict) {
            return Ok(earlier);
        }
    }
    for row in rows {
        if row.tenant != first.tenant {
            return Err(Error::Backend(
                "the executions of one batch belong to one tenant".into(),
            ));
        }
        row.insert(conn, lease)?;
    }
    if let Some(idempotency) = idempotency {
        first.claim_key(conn, idempotency)?;
    }
    Ok(Created::New)
}

/// The executions of a batch, in the order they were created.
pub(super) fn batch(conn: &Connection, tenant: &str, batch: &str) -> Result<Vec<BatchMember>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, workflow_id, status, created_ns FROM executions
         WHERE tenant_id = ?1 AND batch_id = ?2 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![tenant, batch], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            parsed::<Status>(row, 2)?,
            row.get::<_, i64>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (id, workflow, status, created) = row?;
        Ok(BatchMember {
            execution_id: ExecutionId::new_unchecked(id),
            workflow_id: WorkflowId::new_unchecked(workflow),
            status,
            created_at: from_nanos(created)?,
        })
    })
    .collect()
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
