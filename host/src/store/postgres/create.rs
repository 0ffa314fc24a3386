//! Creating executions: one (perhaps claimed by its creator at once) or a
//! batch, under the idempotency rules.

use sqlx::PgPool;

use super::rows::{finish, insert_execution, load_execution, lock_key};
use crate::model::{BatchId, BatchMember, Execution, TenantId};
use crate::store::codec::{from_nanos, nanos, on_key, to_json};
use crate::store::{Created, Error, Idempotency, Lease, Result};

/// Stores `executions` at version 1, all or none (see
/// [`crate::store::Store::create_execution`] and
/// [`crate::store::Store::create_batch`]); an idempotency key points at the
/// first. `lease` is for a single execution only.
pub(super) async fn create(
    pool: &PgPool,
    executions: &[Execution],
    idempotency: Option<&Idempotency>,
    lease: Option<&Lease>,
) -> Result<Created> {
    let Some(first) = executions.first() else {
        return Ok(Created::New);
    };
    let tenant = first.tenant_id.as_str();
    if let ([one], None) = (executions, idempotency) {
        // One statement needs no transaction of its own: one round trip
        // instead of three.
        let doc = to_json(one)?;
        let mut conn = pool.acquire().await?;
        insert_execution(&mut conn, one, &doc, lease, None).await?;
        return Ok(Created::New);
    }
    let mut tx = pool.begin().await?;
    let result: Result<Created> = async {
        if let Some(idempotency) = idempotency {
            // Concurrent requests with one key decide one after the other.
            lock_key(
                &mut tx,
                &format!("idempotency {tenant} {}", idempotency.key),
            )
            .await?;
            let earlier: Option<(Vec<u8>, String)> = sqlx::query_as(
                "SELECT request_hash, execution_id FROM idempotency
                 WHERE tenant_id = $1 AND key = $2",
            )
            .bind(tenant)
            .bind(&idempotency.key)
            .fetch_optional(&mut *tx)
            .await?;
            let existing = match earlier {
                Some((hash, _)) if hash != idempotency.request_hash => {
                    return Ok(Created::KeyReused);
                }
                // A key whose execution is gone is as good as unused.
                Some((_, id)) => load_execution(&mut *tx, tenant, &id).await?,
                None => None,
            };
            if let Some(earlier) = on_key(existing, idempotency.on_conflict) {
                return Ok(earlier);
            }
        }
        match executions {
            [one] => {
                let doc = to_json(one)?;
                insert_execution(&mut tx, one, &doc, lease, None).await?;
            }
            many => insert_many(&mut tx, many).await?,
        }
        if let Some(idempotency) = idempotency {
            sqlx::query(
                "INSERT INTO idempotency (tenant_id, key, request_hash, execution_id)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant_id, key) DO UPDATE SET
                     request_hash = excluded.request_hash,
                     execution_id = excluded.execution_id",
            )
            .bind(tenant)
            .bind(&idempotency.key)
            .bind(&idempotency.request_hash[..])
            .bind(first.execution_id.as_str())
            .execute(&mut *tx)
            .await?;
        }
        Ok(Created::New)
    }
    .await;
    finish(tx, result).await
}

/// Inserts the executions of one tenant in one statement, in the order
/// given (their `seq` follows it), none of them claimed; a suspended
/// tenant's are stored off the claim path, as `insert_execution` does.
async fn insert_many(conn: &mut sqlx::PgConnection, executions: &[Execution]) -> Result<()> {
    let tenant = &executions[0].tenant_id;
    let mut ids = Vec::with_capacity(executions.len());
    let mut workflows = Vec::with_capacity(executions.len());
    let mut statuses = Vec::with_capacity(executions.len());
    let mut created = Vec::with_capacity(executions.len());
    let mut due = Vec::with_capacity(executions.len());
    let mut batches = Vec::with_capacity(executions.len());
    let mut docs = Vec::with_capacity(executions.len());
    for e in executions {
        if e.tenant_id != *tenant {
            return Err(Error::Backend(
                "the executions of one batch belong to one tenant".into(),
            ));
        }
        ids.push(e.execution_id.as_str());
        workflows.push(e.workflow_id.as_str());
        statuses.push(e.status.as_str());
        created.push(nanos(e.created_at));
        due.push(nanos(e.scheduled_for.unwrap_or(e.created_at)));
        batches.push(e.batch_id.as_ref().map(BatchId::as_str));
        docs.push(to_json(e)?);
    }
    let done = sqlx::query(
        "INSERT INTO executions
             (id, tenant_id, workflow_id, status, created_ns, doc, version, wake_ns,
              batch_id, suspended_wake_ns)
         SELECT r.id, $1, r.workflow_id, r.status, r.created_ns, r.doc, 1,
                CASE WHEN t.suspended_ns IS NULL THEN r.due_ns END,
                r.batch_id,
                CASE WHEN t.suspended_ns IS NOT NULL THEN r.due_ns END
         FROM (SELECT suspended_ns FROM tenants WHERE id = $1 FOR KEY SHARE) t,
              UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
                     $7::text[], $8::text[])
                  WITH ORDINALITY AS r(id, workflow_id, status, created_ns, due_ns,
                                       batch_id, doc, n)
         ORDER BY r.n",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&workflows)
    .bind(&statuses)
    .bind(&created)
    .bind(&due)
    .bind(&batches)
    .bind(&docs)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::NoTenant(tenant.clone()));
    }
    Ok(())
}

/// The executions of a batch, in the order they were created.
pub(super) async fn batch(
    pool: &PgPool,
    tenant: &TenantId,
    batch: &BatchId,
) -> Result<Vec<BatchMember>> {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT id, workflow_id, status, created_ns FROM executions
         WHERE tenant_id = $1 AND batch_id = $2 ORDER BY seq",
    )
    .bind(tenant.as_str())
    .bind(batch.as_str())
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, workflow, status, created)| {
            Ok(BatchMember {
                execution_id: crate::model::ExecutionId::new_unchecked(id),
                workflow_id: crate::model::WorkflowId::new_unchecked(workflow),
                status: status.parse().map_err(Error::Backend)?,
                created_at: from_nanos(created)?,
            })
        })
        .collect()
}
