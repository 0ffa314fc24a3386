//! Tenants and tokens in the PostgreSQL store: creation, lookup, listing,
//! suspension and deletion of tenants; storing, authenticating, listing and
//! revoking tokens.
//!
//! Suspension works as in the SQLite store (`suspended_wake_ns` holds when
//! each unfinished execution was due, off the queue). Here writers run
//! concurrently, so the tenant row is the lock: creating an execution or a
//! token reads the tenant `FOR KEY SHARE` (the lock a foreign key check
//! takes; see `rows::insert_execution`), and suspension and deletion lock
//! the row `FOR UPDATE`, which conflicts with it, before they sweep. A
//! creation either commits before the sweep can start (and is swept) or
//! waits for the suspension or deletion and then sees it.

use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use super::rows::{TOKEN_COLUMNS, TokenColumns, finish, parse_time, token_of};
use crate::model::{Quotas, TenantId, Timestamp, Usage};
use crate::store::codec::{from_nanos, nanos, sort_tokens, tenant_cursor, to_json};
use crate::store::{Credential, Error, Result, Tenant, TenantPage, Token, TokenHash};

const TENANT_COLUMNS: &str = "id, name, created_at, suspended_ns, quotas, egress";

type TenantColumns = (String, String, String, Option<i64>, String, String);

fn quotas_of(text: &str) -> Result<Quotas> {
    serde_json::from_str(text)
        .map_err(|e| Error::Backend(format!("a tenant's quotas are not readable: {e}")))
}

fn tenant_of((id, name, created_at, suspended, quotas, egress): TenantColumns) -> Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new_unchecked(id),
        name,
        created_at: parse_time(&created_at)?,
        suspended_at: suspended.map(from_nanos).transpose()?,
        quotas: quotas_of(&quotas)?,
        egress: serde_json::from_str(&egress).map_err(|e| {
            Error::Backend(format!("a tenant's egress allowlist is not readable: {e}"))
        })?,
    })
}

/// The tenant whose `column` (`id` or `name`) is `value`.
pub(super) async fn load_tenant<'e, E>(
    conn: E,
    column: &'static str,
    value: &str,
) -> Result<Option<Tenant>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let row: Option<TenantColumns> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE {column} = $1"
    )))
    .bind(value)
    .fetch_optional(conn)
    .await?;
    row.map(tenant_of).transpose()
}

/// Stores a tenant with its first token.
pub(super) async fn create_tenant(
    pool: &PgPool,
    tenant: &Tenant,
    token: &Token,
    hash: &TokenHash,
) -> Result<()> {
    let mut tx = pool.begin().await?;
    let result: Result<()> = async {
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, name, created_at, suspended_ns, quotas, egress)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(tenant.id.as_str())
        .bind(&tenant.name)
        .bind(tenant.created_at.to_string())
        .bind(tenant.suspended_at.map(nanos))
        .bind(to_json(&tenant.quotas)?)
        .bind(to_json(&tenant.egress)?)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::AlreadyExists(format!("tenant `{}`", tenant.name)));
        }
        insert_token(&mut tx, token, hash).await
    }
    .await;
    finish(tx, result).await
}

/// A page of tenants by id after `cursor`.
pub(super) async fn tenants(pool: &PgPool, limit: u32, cursor: Option<&str>) -> Result<TenantPage> {
    let after = tenant_cursor(cursor)?;
    let rows: Vec<TenantColumns> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let items = rows
        .into_iter()
        .map(tenant_of)
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::store::codec::tenant_page(items, limit))
}

/// Suspends (`Some(at)`) or unsuspends a tenant; see `Store::suspend_tenant`.
pub(super) async fn suspend_tenant(
    pool: &PgPool,
    id: &str,
    at: Option<Timestamp>,
) -> Result<Option<Tenant>> {
    let mut tx = pool.begin().await?;
    let result: Result<Option<Tenant>> = async {
        // The row lock orders this against every creation for the tenant.
        let row: Option<TenantColumns> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1 FOR UPDATE"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant) = row.map(tenant_of).transpose()? else {
            return Ok(None);
        };
        match (at, tenant.suspended_at) {
            (Some(at), None) => {
                let at = nanos(at);
                sqlx::query("UPDATE tenants SET suspended_ns = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE executions
                     SET suspended_wake_ns = CASE WHEN lease_owner IS NULL THEN wake_ns ELSE $2 END,
                         wake_ns = NULL, lease_owner = NULL, lease_until_ns = NULL,
                         version = version + 1
                     WHERE tenant_id = $1 AND wake_ns IS NOT NULL",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            (None, Some(_)) => {
                sqlx::query("UPDATE tenants SET suspended_ns = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE executions SET wake_ns = suspended_wake_ns, suspended_wake_ns = NULL
                     WHERE tenant_id = $1 AND suspended_wake_ns IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            _ => return Ok(Some(tenant)),
        }
        load_tenant(&mut *tx, "id", id).await
    }
    .await;
    finish(tx, result).await
}

/// Replaces a tenant's own quotas.
pub(super) async fn set_quotas(pool: &PgPool, id: &str, quotas: &Quotas) -> Result<Option<Tenant>> {
    let row: Option<TenantColumns> = sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE tenants SET quotas = $2, weight = $3, max_running = $4
         WHERE id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(id)
    .bind(to_json(quotas)?)
    .bind(quotas.weight.map(i64::from))
    .bind(
        quotas
            .max_concurrent_executions
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    )
    .fetch_optional(pool)
    .await?;
    row.map(tenant_of).transpose()
}

/// Replaces a tenant's egress allowlist.
pub(super) async fn set_egress(
    pool: &PgPool,
    id: &str,
    egress: &[crate::model::HostPattern],
) -> Result<Option<Tenant>> {
    let row: Option<TenantColumns> = sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE tenants SET egress = $2 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
    )))
    .bind(id)
    .bind(to_json(&egress)?)
    .fetch_optional(pool)
    .await?;
    row.map(tenant_of).transpose()
}

/// How many of a tenant's executions are held; see `Store::running_count`.
pub(super) async fn running_count(pool: &PgPool, id: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND lease_owner IS NOT NULL",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How many of a tenant's executions are queued; see `Store::queued_count`.
pub(super) async fn queued_count(pool: &PgPool, id: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND status = 'queued'",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// What a tenant holds; see `Store::usage`.
pub(super) async fn usage(pool: &PgPool, id: &str) -> Result<Usage> {
    let (steps, workflows, bytes, secrets, queued, running): (i64, i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT
                 (SELECT COUNT(DISTINCT name) FROM step_versions WHERE tenant_id = $1),
                 (SELECT COUNT(DISTINCT workflow_id) FROM workflows
                  WHERE tenant_id = $1 AND deleted_ns IS NULL),
                 (SELECT COALESCE(SUM(size), 0)::BIGINT FROM
                     (SELECT MAX(size_bytes) AS size FROM step_versions
                      WHERE tenant_id = $1 GROUP BY digest) AS sizes),
                 (SELECT COUNT(*) FROM secrets WHERE tenant_id = $1),
                 (SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND status = 'queued'),
                 (SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND status = 'running')",
        )
        .bind(id)
        .fetch_one(pool)
        .await?;
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(Usage {
        steps: n(steps),
        workflows: n(workflows),
        component_bytes: n(bytes),
        secrets: n(secrets),
        queued_executions: n(queued),
        running_executions: n(running),
    })
}

/// Deletes a tenant and everything it owns; see `Store::delete_tenant`.
pub(super) async fn delete_tenant(pool: &PgPool, id: &str) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let result: Result<bool> = async {
        let locked: Option<String> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM inbox
             WHERE execution_id IN (SELECT id FROM executions WHERE tenant_id = $1)",
            "DELETE FROM event_keys
             WHERE execution_id IN (SELECT id FROM executions WHERE tenant_id = $1)",
            "DELETE FROM idempotency WHERE tenant_id = $1",
            "DELETE FROM deliveries WHERE tenant_id = $1",
            "DELETE FROM webhook_secrets WHERE tenant_id = $1",
            "DELETE FROM executions WHERE tenant_id = $1",
            "DELETE FROM schedules WHERE tenant_id = $1",
            "DELETE FROM secrets WHERE tenant_id = $1",
            "DELETE FROM workflows WHERE tenant_id = $1",
            "DELETE FROM components WHERE digest IN (
                 SELECT digest FROM step_versions WHERE tenant_id = $1
                 EXCEPT SELECT digest FROM step_versions WHERE tenant_id != $1)",
            "DELETE FROM step_versions WHERE tenant_id = $1",
            "DELETE FROM tokens WHERE tenant_id = $1",
            "DELETE FROM tenants WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        Ok(true)
    }
    .await;
    finish(tx, result).await
}

/// Stores a token in `tx`; a tenant's token needs its tenant.
pub(super) async fn insert_token(
    tx: &mut Transaction<'static, Postgres>,
    token: &Token,
    hash: &TokenHash,
) -> Result<()> {
    let inserted = sqlx::query(
        "INSERT INTO tokens (hash, token_id, tenant_id, name, scopes, created_at, expires_ns,
                             revoked_ns)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8
         WHERE $3::text IS NULL OR EXISTS (SELECT 1 FROM tenants WHERE id = $3 FOR KEY SHARE)",
    )
    .bind(&hash.0[..])
    .bind(&token.id)
    .bind(token.tenant.as_ref().map(TenantId::as_str))
    .bind(&token.name)
    .bind(to_json(&token.scopes)?)
    .bind(token.created_at.to_string())
    .bind(token.expires_at.map(nanos))
    .bind(token.revoked_at.map(nanos))
    .execute(&mut **tx)
    .await?;
    match &token.tenant {
        Some(tenant) if inserted.rows_affected() == 0 => Err(Error::NoTenant(tenant.clone())),
        _ => Ok(()),
    }
}

/// A token's columns and its tenant's `suspended_ns`.
type CredentialColumns = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// The token with this hash and its tenant's suspension.
pub(super) async fn authenticate(pool: &PgPool, hash: &TokenHash) -> Result<Option<Credential>> {
    let row: Option<CredentialColumns> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS}, t.suspended_ns, t.quotas FROM tokens k
             LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = $1"
    )))
    .bind(&hash.0[..])
    .fetch_optional(pool)
    .await?;
    row.map(|(a, b, c, d, e, f, g, suspended, quotas)| {
        Ok(Credential {
            token: token_of((a, b, c, d, e, f, g))?,
            suspended_at: suspended.map(from_nanos).transpose()?,
            quotas: quotas
                .as_deref()
                .map(quotas_of)
                .transpose()?
                .unwrap_or_default(),
        })
    })
    .transpose()
}

/// The unrevoked tokens of a tenant (or the admin's), oldest first.
pub(super) async fn tokens(pool: &PgPool, tenant: Option<&TenantId>) -> Result<Vec<Token>> {
    // `IS NOT DISTINCT FROM` would not use the index.
    let owner = match tenant {
        Some(_) => "k.tenant_id = $1",
        None => "k.tenant_id IS NULL AND $1::text IS NULL",
    };
    let rows: Vec<TokenColumns> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens k WHERE {owner} AND k.revoked_ns IS NULL"
    )))
    .bind(tenant.map(TenantId::as_str))
    .fetch_all(pool)
    .await?;
    let mut tokens = rows.into_iter().map(token_of).collect::<Result<Vec<_>>>()?;
    sort_tokens(&mut tokens);
    Ok(tokens)
}

/// Revokes a token at `at`; false when there is no such unrevoked token.
pub(super) async fn revoke_token(
    pool: &PgPool,
    tenant: Option<&TenantId>,
    id: &str,
    at: Timestamp,
) -> Result<bool> {
    // By its unique id, so the owner check needs no index.
    let changed = sqlx::query(
        "UPDATE tokens SET revoked_ns = $3
         WHERE token_id = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND revoked_ns IS NULL",
    )
    .bind(id)
    .bind(tenant.map(TenantId::as_str))
    .bind(nanos(at))
    .execute(pool)
    .await?;
    Ok(changed.rows_affected() == 1)
}
