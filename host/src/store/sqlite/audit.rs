//! The audit log in the SQLite store.

use rusqlite::{Connection, params};

use super::rows::nanos;
use crate::model::TenantId;
use crate::store::Result;
use crate::store::audit::{AuditPage, NewAudit, audit_cursor, audit_page};

/// Appends an entry.
pub(super) fn add(conn: &Connection, entry: &NewAudit) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (at_ns, tenant_id, token_id, action, request)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        nanos(entry.at),
        entry.tenant_id.as_ref().map(TenantId::as_str),
        entry.token_id,
        entry.action,
        entry.request
    ])?;
    Ok(())
}

/// A page of the log, newest first: one tenant's or everyone's.
pub(super) fn page(
    conn: &Connection,
    tenant: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<AuditPage> {
    let before = audit_cursor(cursor)?;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at_ns, tenant_id, token_id, action, request FROM audit
         WHERE seq < ?1 AND (?2 IS NULL OR tenant_id = ?2)
         ORDER BY seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![before, tenant, i64::from(limit) + 1], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, String>(5)?,
        ))
    })?;
    audit_page(rows.collect::<rusqlite::Result<_>>()?, limit)
}
