//! The audit log in the PostgreSQL store.

use sqlx::PgPool;

use crate::model::TenantId;
use crate::store::Result;
use crate::store::audit::{AuditEntry, AuditPage, NewAudit, audit_cursor, audit_id, audit_page};
use crate::store::codec::{from_nanos, nanos};

/// Appends an entry.
pub(super) async fn add(pool: &PgPool, entry: &NewAudit) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at_ns, tenant_id, token_id, action, request)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(nanos(entry.at))
    .bind(entry.tenant_id.as_ref().map(TenantId::as_str))
    .bind(&entry.token_id)
    .bind(&entry.action)
    .bind(&entry.request)
    .execute(pool)
    .await?;
    Ok(())
}

/// A page of the log, newest first: one tenant's or everyone's.
pub(super) async fn page(
    pool: &PgPool,
    tenant: Option<&str>,
    limit: u32,
    cursor: Option<&str>,
) -> Result<AuditPage> {
    let before = audit_cursor(cursor)?;
    let rows: Vec<(i64, i64, Option<String>, String, String, String)> = sqlx::query_as(
        "SELECT seq, at_ns, tenant_id, token_id, action, request FROM audit
         WHERE seq < $1 AND ($2::TEXT IS NULL OR tenant_id = $2)
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(before)
    .bind(tenant)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let mut items = Vec::with_capacity(rows.len());
    for (seq, at, tenant_id, token_id, action, request) in rows {
        items.push(AuditEntry {
            audit_id: audit_id(seq),
            at: from_nanos(at)?,
            tenant_id,
            token_id,
            action,
            request,
        });
    }
    Ok(audit_page(items, limit))
}
