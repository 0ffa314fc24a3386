//! Callbacks in the PostgreSQL store: the outbox rows a commit inserts in
//! its transaction, their claims (`FOR UPDATE SKIP LOCKED`, so nodes
//! claiming at once take different rows) and attempts, and tenants'
//! signing secrets.

use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use super::rows::finish;
use crate::model::{
    Delivery, DeliveryAttempt, DueDelivery, ExecutionId, NewDelivery, TenantId, WebhookSecret,
};
use crate::store::codec::{
    DELIVERY_COLUMNS, DeliveryRow, after_attempt, append_attempt, decode_delivery, from_nanos,
    nanos,
};
use crate::store::{DeliveryNext, Error, Lease, Result};

/// Inserts the deliveries a commit reports, pending and due at their
/// `created_at`, in the order given (their `seq`).
pub(super) async fn insert(
    tx: &mut Transaction<'static, Postgres>,
    deliveries: &[NewDelivery],
) -> Result<()> {
    for d in deliveries {
        sqlx::query(
            "INSERT INTO deliveries (id, tenant_id, execution_id, event, step, url, body, status,
                                     created_ns, due_ns)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
        )
        .bind(&d.delivery_id)
        .bind(d.tenant_id.as_str())
        .bind(d.execution_id.as_str())
        .bind(d.event.as_str())
        .bind(&d.step)
        .bind(&d.url)
        .bind(&d.body)
        .bind(nanos(d.created_at))
        .bind(nanos(d.due_at))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// See `Store::claim_deliveries`.
pub(super) async fn claim(
    pool: &PgPool,
    lease: &Lease,
    now: i64,
    limit: i64,
) -> Result<Vec<DueDelivery>> {
    type Columns = (String, String, String, String, String, i32);
    let rows: Vec<Columns> = sqlx::query_as(
        "WITH due AS (
             SELECT d.seq FROM deliveries AS d
             WHERE d.due_ns IS NOT NULL AND d.due_ns <= $3
               AND (d.lease_until_ns IS NULL OR d.lease_until_ns < $3)
               AND NOT EXISTS (
                   SELECT 1 FROM deliveries AS e
                   WHERE e.execution_id = d.execution_id AND e.seq < d.seq
                     AND e.due_ns IS NOT NULL)
             ORDER BY d.due_ns, d.seq LIMIT $4
             FOR UPDATE SKIP LOCKED)
         UPDATE deliveries SET lease_owner = $1, lease_until_ns = $2
         FROM due WHERE deliveries.seq = due.seq
         RETURNING id, tenant_id, execution_id, url, body, attempt_count",
    )
    .bind(lease.owner.as_str())
    .bind(nanos(lease.until))
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, tenant, execution, url, body, attempts)| DueDelivery {
            delivery_id: id,
            tenant_id: TenantId::new_unchecked(tenant),
            execution_id: ExecutionId::new_unchecked(execution),
            url,
            body,
            attempts: u32::try_from(attempts).unwrap_or(0),
        })
        .collect())
}

/// See `Store::record_delivery`.
pub(super) async fn record(
    pool: &PgPool,
    owner: &str,
    id: &str,
    attempt: &DeliveryAttempt,
    next: DeliveryNext,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let result = async {
        let attempts: Option<String> = sqlx::query_scalar(
            "SELECT attempts FROM deliveries WHERE id = $1 AND lease_owner = $2 FOR UPDATE",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(attempts) = attempts else {
            return Ok(false);
        };
        let attempts = append_attempt(&attempts, attempt)?;
        let (status, due) = after_attempt(next);
        sqlx::query(
            "UPDATE deliveries
             SET status = $1, due_ns = $2, attempts = $3, attempt_count = attempt_count + 1,
                 lease_owner = NULL, lease_until_ns = NULL
             WHERE id = $4",
        )
        .bind(status)
        .bind(due)
        .bind(attempts)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        Ok(true)
    }
    .await;
    finish(tx, result).await
}

/// An execution's deliveries, oldest first.
pub(super) async fn list(pool: &PgPool, id: &str) -> Result<Vec<Delivery>> {
    let rows: Vec<DeliveryRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE execution_id = $1 ORDER BY seq"
    )))
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(decode_delivery).collect()
}

/// See `Store::retry_delivery`.
pub(super) async fn retry(
    pool: &PgPool,
    tenant: &str,
    execution: &str,
    id: &str,
    now: i64,
) -> Result<Option<Delivery>> {
    sqlx::query(
        "UPDATE deliveries SET status = 'pending', due_ns = $4
         WHERE tenant_id = $1 AND execution_id = $2 AND id = $3 AND due_ns IS NULL",
    )
    .bind(tenant)
    .bind(execution)
    .bind(id)
    .bind(now)
    .execute(pool)
    .await?;
    let row: Option<DeliveryRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries
         WHERE tenant_id = $1 AND execution_id = $2 AND id = $3"
    )))
    .bind(tenant)
    .bind(execution)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(decode_delivery).transpose()
}

/// See `Store::next_delivery_at`.
pub(super) async fn next_due(pool: &PgPool) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(GREATEST(d.due_ns, COALESCE(d.lease_until_ns, d.due_ns))) FROM deliveries AS d
         WHERE d.due_ns IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM deliveries AS e
               WHERE e.execution_id = d.execution_id AND e.seq < d.seq
                 AND e.due_ns IS NOT NULL)",
    )
    .fetch_one(pool)
    .await?)
}

type SecretColumns = (Vec<u8>, i64, Option<Vec<u8>>, Option<i64>);

fn decode_secret((sealed, created, prev, until): SecretColumns) -> Result<WebhookSecret> {
    Ok(WebhookSecret {
        sealed,
        created_at: from_nanos(created)?,
        previous: match (prev, until) {
            (Some(p), Some(u)) => Some((p, from_nanos(u)?)),
            _ => None,
        },
    })
}

/// A tenant's signing secret.
pub(super) async fn secret(pool: &PgPool, tenant: &str) -> Result<Option<WebhookSecret>> {
    let row: Option<SecretColumns> = sqlx::query_as(
        "SELECT sealed, created_ns, previous_sealed, previous_until_ns
         FROM webhook_secrets WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    row.map(decode_secret).transpose()
}

/// See `Store::put_webhook_secret`.
pub(super) async fn put_secret(
    pool: &PgPool,
    tenant: &str,
    secret: &WebhookSecret,
    expected: Option<i64>,
) -> Result<WebhookSecret> {
    let (prev, until) = match &secret.previous {
        Some((p, u)) => (Some(p.as_slice()), Some(nanos(*u))),
        None => (None, None),
    };
    let created = nanos(secret.created_at);
    let query = sqlx::query(match expected {
        None => {
            "INSERT INTO webhook_secrets
                 (tenant_id, sealed, created_ns, previous_sealed, previous_until_ns)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO NOTHING"
        }
        Some(_) => {
            "UPDATE webhook_secrets
             SET sealed = $2, created_ns = $3, previous_sealed = $4, previous_until_ns = $5
             WHERE tenant_id = $1 AND created_ns = $6"
        }
    })
    .bind(tenant)
    .bind(&secret.sealed)
    .bind(created)
    .bind(prev)
    .bind(until);
    match expected {
        None => query.execute(pool).await?,
        Some(expected) => query.bind(expected).execute(pool).await?,
    };
    self::secret(pool, tenant)
        .await?
        .ok_or_else(|| Error::Backend(format!("tenant {tenant} has no webhook secret")))
}
