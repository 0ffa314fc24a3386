//! The audit log in the PostgreSQL store.

use sqlx::PgPool;

use crate::model::TenantId;
use crate::store::Result;
use crate::store::audit::{AuditPage, AuditRow, NewAudit, audit_cursor, audit_page};
use crate::store::codec::nanos;

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
    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, at_ns, tenant_id, token_id, action, request FROM audit
         WHERE seq < $1 AND ($2::TEXT IS NULL OR tenant_id = $2)
         ORDER BY seq DESC LIMIT $3",
    )
    .bind(before)
    .bind(tenant)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    audit_page(rows, limit)
}
