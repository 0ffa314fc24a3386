//! Callbacks in the SQLite store: the outbox rows a commit inserts, their
//! claims and attempts, and tenants' signing secrets.

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::{
    Delivery, DeliveryAttempt, DueDelivery, ExecutionId, NewDelivery, TenantId, WebhookSecret,
};
use crate::store::codec::{
    DELIVERY_COLUMNS, DeliveryRow, after_attempt, append_attempt, decode_delivery, from_nanos,
    nanos,
};
use crate::store::{DeliveryNext, Lease, Result};

/// Inserts the deliveries a commit reports, pending and due at their
/// `created_at`, in the order given (their `seq`).
pub(super) fn insert(conn: &Connection, deliveries: &[NewDelivery]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO deliveries (id, tenant_id, execution_id, event, step, url, body, status,
                                 created_ns, due_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
    )?;
    for d in deliveries {
        stmt.execute(params![
            d.delivery_id,
            d.tenant_id.as_str(),
            d.execution_id.as_str(),
            d.event.as_str(),
            d.step,
            d.url,
            d.body,
            nanos(d.created_at),
            nanos(d.due_at),
        ])?;
    }
    Ok(())
}

/// See `Store::claim_deliveries`.
pub(super) fn claim(
    conn: &Connection,
    lease: &Lease,
    now: i64,
    limit: i64,
) -> Result<Vec<DueDelivery>> {
    let mut stmt = conn.prepare_cached(
        "UPDATE deliveries SET lease_owner = ?1, lease_until_ns = ?2
         WHERE seq IN (
             SELECT d.seq FROM deliveries AS d
             WHERE d.due_ns IS NOT NULL AND d.due_ns <= ?3
               AND (d.lease_until_ns IS NULL OR d.lease_until_ns < ?3)
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries AS e
                   WHERE e.execution_id = d.execution_id AND e.seq < d.seq
                     AND e.due_ns IS NOT NULL)
             ORDER BY d.due_ns, d.seq LIMIT ?4)
         RETURNING id, tenant_id, execution_id, url, body, attempt_count",
    )?;
    let rows = stmt.query_map(
        params![lease.owner.as_str(), nanos(lease.until), now, limit],
        |row| {
            Ok(DueDelivery {
                delivery_id: row.get(0)?,
                tenant_id: TenantId::new_unchecked(row.get::<_, String>(1)?),
                execution_id: ExecutionId::new_unchecked(row.get::<_, String>(2)?),
                url: row.get(3)?,
                body: row.get(4)?,
                attempts: row.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// See `Store::record_delivery`.
pub(super) fn record(
    conn: &Connection,
    owner: &str,
    id: &str,
    attempt: &DeliveryAttempt,
    next: DeliveryNext,
) -> Result<bool> {
    let attempts: Option<String> = conn
        .prepare_cached("SELECT attempts FROM deliveries WHERE id = ?1 AND lease_owner = ?2")?
        .query_row(params![id, owner], |row| row.get(0))
        .optional()?;
    let Some(attempts) = attempts else {
        return Ok(false);
    };
    let attempts = append_attempt(&attempts, attempt)?;
    let (status, due) = after_attempt(next);
    conn.prepare_cached(
        "UPDATE deliveries
         SET status = ?1, due_ns = ?2, attempts = ?3, attempt_count = attempt_count + 1,
             lease_owner = NULL, lease_until_ns = NULL
         WHERE id = ?4",
    )?
    .execute(params![status, due, attempts, id])?;
    Ok(true)
}

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

/// An execution's deliveries, oldest first.
pub(super) fn list(conn: &Connection, id: &str) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE execution_id = ?1 ORDER BY seq"
    ))?;
    let rows = stmt
        .query_map(params![id], row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode_delivery).collect()
}

/// See `Store::retry_delivery`.
pub(super) fn retry(
    conn: &Connection,
    tenant: &str,
    execution: &str,
    id: &str,
    now: i64,
) -> Result<Option<Delivery>> {
    conn.prepare_cached(
        "UPDATE deliveries SET status = 'pending', due_ns = ?4
         WHERE tenant_id = ?1 AND execution_id = ?2 AND id = ?3 AND due_ns IS NULL",
    )?
    .execute(params![tenant, execution, id, now])?;
    let found = conn
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE tenant_id = ?1 AND execution_id = ?2 AND id = ?3"
        ))?
        .query_row(params![tenant, execution, id], row)
        .optional()?;
    found.map(decode_delivery).transpose()
}

/// See `Store::next_delivery_at`.
pub(super) fn next_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached(
            "SELECT MIN(MAX(d.due_ns, COALESCE(d.lease_until_ns, d.due_ns))) FROM deliveries AS d
             WHERE d.due_ns IS NOT NULL
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries AS e
                   WHERE e.execution_id = d.execution_id AND e.seq < d.seq
                     AND e.due_ns IS NOT NULL)",
        )?
        .query_row([], |row| row.get(0))?)
}

/// A tenant's signing secret.
pub(super) fn secret(conn: &Connection, tenant: &str) -> Result<Option<WebhookSecret>> {
    type Columns = (Vec<u8>, i64, Option<Vec<u8>>, Option<i64>);
    let found: Option<Columns> = conn
        .prepare_cached(
            "SELECT sealed, created_ns, previous_sealed, previous_until_ns
             FROM webhook_secrets WHERE tenant_id = ?1",
        )?
        .query_row(params![tenant], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    found
        .map(|(sealed, created, prev, until)| {
            Ok(WebhookSecret {
                sealed,
                created_at: from_nanos(created)?,
                previous: match (prev, until) {
                    (Some(p), Some(u)) => Some((p, from_nanos(u)?)),
                    _ => None,
                },
            })
        })
        .transpose()
}

/// See `Store::put_webhook_secret`.
pub(super) fn put_secret(
    conn: &Connection,
    tenant: &str,
    secret: &WebhookSecret,
    expected: Option<i64>,
) -> Result<WebhookSecret> {
    let (prev, until) = match &secret.previous {
        Some((p, u)) => (Some(p.as_slice()), Some(nanos(*u))),
        None => (None, None),
    };
    let created = nanos(secret.created_at);
    match expected {
        None => conn
            .prepare_cached(
                "INSERT INTO webhook_secrets
                     (tenant_id, sealed, created_ns, previous_sealed, previous_until_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id) DO NOTHING",
            )?
            .execute(params![tenant, secret.sealed, created, prev, until])?,
        Some(expected) => conn
            .prepare_cached(
                "UPDATE webhook_secrets
                 SET sealed = ?2, created_ns = ?3, previous_sealed = ?4, previous_until_ns = ?5
                 WHERE tenant_id = ?1 AND created_ns = ?6",
            )?
            .execute(params![
                tenant,
                secret.sealed,
                created,
                prev,
                until,
                expected
            ])?,
    };
    secret_or_missing(conn, tenant)
}

fn secret_or_missing(conn: &Connection, tenant: &str) -> Result<WebhookSecret> {
    secret(conn, tenant)?.ok_or_else(|| {
        crate::store::Error::Backend(format!("tenant {tenant} has no webhook secret"))
    })
}
