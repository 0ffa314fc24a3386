//! Tenants and tokens in the SQLite store: creation, lookup, listing,
//! suspension and deletion of tenants; storing, authenticating, listing and
//! revoking tokens.
//!
//! Suspension takes a tenant's unfinished executions off the queue: their
//! `wake_ns` moves to `suspended_wake_ns` (a held one's becomes the
//! suspension time, and its lease is released with its version bumped, so
//! its driver's next commit or renewal fails). Unsuspending moves it back.
//! Executions created while the tenant is suspended are stored the same
//! way (see `ExecutionRow::insert`), and the schedules' due scans skip
//! suspended tenants. Writes run on the writer thread, so none of this can
//! interleave with a claim or a creation.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{from_nanos, nanos, to_json};
use crate::model::{Quotas, TenantId, Timestamp, Usage};
use crate::store::{Credential, Error, Result, Tenant, TenantPage, Token, TokenHash};

/// Reads an optional nanosecond column.
fn time(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Timestamp>> {
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
}

fn text<T>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let text: String = row.get(idx)?;
    text.parse().map_err(|e: T::Err| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

const TENANT_COLUMNS: &str = "id, name, created_at, suspended_ns, quotas, egress";

/// Reads column `idx` as JSON text.
fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e.into())
    })
}

fn tenant_row(row: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: TenantId::new_unchecked(row.get::<_, String>(0)?),
        name: row.get(1)?,
        created_at: text(row, 2)?,
        suspended_at: time(row, 3)?,
        quotas: json(row, 4)?,
        egress: json(row, 5)?,
    })
}

/// The tenant whose `column` (`id` or `name`) is `value`.
pub(super) fn load_tenant(
    conn: &Connection,
    column: &'static str,
    value: &str,
) -> Result<Option<Tenant>> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE {column} = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([value], tenant_row)
        .optional()?)
}

/// Stores a tenant with its first token.
pub(super) fn create_tenant(
    conn: &Connection,
    tenant: &Tenant,
    token: &Token,
    hash: &TokenHash,
) -> Result<()> {
    // Checked first rather than matched on the constraint error: the writer
    // is alone, so nothing can slip in between.
    if load_tenant(conn, "name", &tenant.name)?.is_some() {
        return Err(Error::AlreadyExists(format!("tenant `{}`", tenant.name)));
    }
    conn.prepare_cached(
        "INSERT INTO tenants (id, name, created_at, suspended_ns, quotas, egress)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        tenant.id.as_str(),
        tenant.name,
        tenant.created_at.to_string(),
        tenant.suspended_at.map(nanos),
        to_json(&tenant.quotas)?,
        to_json(&tenant.egress)?,
    ])?;
    insert_token(conn, token, hash)
}

/// A page of tenants by id after `cursor` (the last id of the page before).
pub(super) fn tenants(conn: &Connection, limit: u32, cursor: Option<&str>) -> Result<TenantPage> {
    let after = crate::store::codec::tenant_cursor(cursor)?;
    let items = conn
        .prepare_cached(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))?
        .query_map(params![after, i64::from(limit) + 1], tenant_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(crate::store::codec::tenant_page(items, limit))
}

/// Suspends (`Some(at)`) or unsuspends a tenant; see `Store::suspend_tenant`.
pub(super) fn suspend_tenant(
    conn: &Connection,
    id: &str,
    at: Option<Timestamp>,
) -> Result<Option<Tenant>> {
    let Some(tenant) = load_tenant(conn, "id", id)? else {
        return Ok(None);
    };
    match (at, tenant.suspended_at) {
        (Some(at), None) => {
            let at = nanos(at);
            conn.prepare_cached("UPDATE tenants SET suspended_ns = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            conn.prepare_cached(
                "UPDATE executions
                 SET suspended_wake_ns = CASE WHEN lease_owner IS NULL THEN wake_ns ELSE ?2 END,
                     wake_ns = NULL, lease_owner = NULL, lease_until_ns = NULL,
                     version = version + 1
                 WHERE tenant_id = ?1 AND wake_ns IS NOT NULL",
            )?
            .execute(params![id, at])?;
        }
        (None, Some(_)) => {
            conn.prepare_cached("UPDATE tenants SET suspended_ns = NULL WHERE id = ?1")?
                .execute([id])?;
            conn.prepare_cached(
                "UPDATE executions SET wake_ns = suspended_wake_ns, suspended_wake_ns = NULL
                 WHERE tenant_id = ?1 AND suspended_wake_ns IS NOT NULL",
            )?
            .execute([id])?;
        }
        // Already as asked.
        _ => return Ok(Some(tenant)),
    }
    load_tenant(conn, "id", id)
}

/// Replaces a tenant's own quotas.
pub(super) fn set_quotas(conn: &Connection, id: &str, quotas: &Quotas) -> Result<Option<Tenant>> {
    conn.prepare_cached(
        "UPDATE tenants SET quotas = ?2, weight = ?3, max_running = ?4 WHERE id = ?1",
    )?
    .execute(params![
        id,
        to_json(quotas)?,
        quotas.weight,
        quotas
            .max_concurrent_executions
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    ])?;
    load_tenant(conn, "id", id)
}

/// Replaces a tenant's egress allowlist.
pub(super) fn set_egress(
    conn: &Connection,
    id: &str,
    egress: &[crate::model::HostPattern],
) -> Result<Option<Tenant>> {
    conn.prepare_cached("UPDATE tenants SET egress = ?2 WHERE id = ?1")?
        .execute(params![id, to_json(&egress)?])?;
    load_tenant(conn, "id", id)
}

/// How many of a tenant's executions are held; see `Store::running_count`.
pub(super) fn running_count(conn: &Connection, id: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM executions WHERE tenant_id = ?1 AND lease_owner IS NOT NULL",
        )?
        .query_row([id], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How many of a tenant's executions are queued; see `Store::queued_count`.
pub(super) fn queued_count(conn: &Connection, id: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM executions WHERE tenant_id = ?1 AND status = 'queued'",
        )?
        .query_row([id], |row| row.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// What a tenant holds; see `Store::usage`.
pub(super) fn usage(conn: &Connection, id: &str) -> Result<Usage> {
    let count = |row: &Row<'_>, idx| -> rusqlite::Result<u64> {
        Ok(u64::try_from(row.get::<_, i64>(idx)?).unwrap_or(0))
    };
    Ok(conn
        .prepare_cached(
            "SELECT
                 (SELECT COUNT(DISTINCT name) FROM step_versions WHERE tenant_id = ?1),
                 (SELECT COUNT(DISTINCT workflow_id) FROM workflows
                  WHERE tenant_id = ?1 AND deleted_ns IS NULL),
                 (SELECT COALESCE(SUM(size), 0) FROM
                     (SELECT MAX(size_bytes) AS size FROM step_versions
                      WHERE tenant_id = ?1 GROUP BY digest)),
                 (SELECT COUNT(*) FROM secrets WHERE tenant_id = ?1),
                 (SELECT COUNT(*) FROM executions WHERE tenant_id = ?1 AND status = 'queued'),
                 (SELECT COUNT(*) FROM executions WHERE tenant_id = ?1 AND status = 'running')",
        )?
        .query_row([id], |row| {
            Ok(Usage {
                steps: count(row, 0)?,
                workflows: count(row, 1)?,
                component_bytes: count(row, 2)?,
                secrets: count(row, 3)?,
                queued_executions: count(row, 4)?,
                running_executions: count(row, 5)?,
            })
        })?)
}

/// Deletes a tenant and everything it owns; see `Store::delete_tenant`.
pub(super) fn delete_tenant(conn: &Connection, id: &str) -> Result<bool> {
    if load_tenant(conn, "id", id)?.is_none() {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM inbox WHERE execution_id IN (SELECT id FROM executions WHERE tenant_id = ?1)",
        "DELETE FROM event_keys
         WHERE execution_id IN (SELECT id FROM executions WHERE tenant_id = ?1)",
        "DELETE FROM idempotency WHERE tenant_id = ?1",
        "DELETE FROM deliveries WHERE tenant_id = ?1",
        "DELETE FROM webhook_secrets WHERE tenant_id = ?1",
        "DELETE FROM executions WHERE tenant_id = ?1",
        "DELETE FROM schedules WHERE tenant_id = ?1",
        "DELETE FROM secrets WHERE tenant_id = ?1",
        "DELETE FROM workflows WHERE tenant_id = ?1",
        // Bytes no other tenant's step uses go with the tenant's steps.
        "DELETE FROM components WHERE digest IN (
             SELECT digest FROM step_versions WHERE tenant_id = ?1
             EXCEPT SELECT digest FROM step_versions WHERE tenant_id != ?1)",
        "DELETE FROM step_versions WHERE tenant_id = ?1",
        "DELETE FROM tokens WHERE tenant_id = ?1",
        "DELETE FROM tenants WHERE id = ?1",
    ] {
        conn.prepare_cached(sql)?.execute([id])?;
    }
    Ok(true)
}

/// Stores a token; a tenant's token needs its tenant.
pub(super) fn insert_token(conn: &Connection, token: &Token, hash: &TokenHash) -> Result<()> {
    if let Some(tenant) = &token.tenant
        && load_tenant(conn, "id", tenant.as_str())?.is_none()
    {
        return Err(Error::NoTenant(tenant.clone()));
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

/// The columns `token_row` reads, in order (of `tokens k`).
const TOKEN_COLUMNS: &str =
    "k.token_id, k.tenant_id, k.name, k.scopes, k.created_at, k.expires_ns, k.revoked_ns";

fn token_row(row: &Row<'_>) -> rusqlite::Result<Token> {
    let scopes: String = row.get(3)?;
    Ok(Token {
        id: row.get(0)?,
        tenant: row
            .get::<_, Option<String>>(1)?
            .map(TenantId::new_unchecked),
        name: row.get(2)?,
        scopes: serde_json::from_str(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        created_at: text(row, 4)?,
        expires_at: time(row, 5)?,
        revoked_at: time(row, 6)?,
    })
}

/// The token with this hash and its tenant's suspension.
pub(super) fn authenticate(conn: &Connection, hash: &TokenHash) -> Result<Option<Credential>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS}, t.suspended_ns, COALESCE(t.quotas, '{{}}') FROM tokens k
             LEFT JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = ?1"
        ))?
        .query_row([hash.0], |row| {
            Ok(Credential {
                token: token_row(row)?,
                suspended_at: time(row, 7)?,
                quotas: json(row, 8)?,
            })
        })
        .optional()?)
}

/// The unrevoked tokens of a tenant (or the admin's), oldest first.
pub(super) fn tokens(conn: &Connection, tenant: Option<&str>) -> Result<Vec<Token>> {
    let mut tokens = conn
        .prepare_cached(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens k
             WHERE k.tenant_id IS ?1 AND k.revoked_ns IS NULL"
        ))?
        .query_map([tenant], token_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    crate::store::codec::sort_tokens(&mut tokens);
    Ok(tokens)
}

/// Revokes a token at `at`; false when there is no such unrevoked token.
pub(super) fn revoke_token(
    conn: &Connection,
    tenant: Option<&str>,
    id: &str,
    at: Timestamp,
) -> Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE tokens SET revoked_ns = ?3
             WHERE token_id = ?1 AND tenant_id IS ?2 AND revoked_ns IS NULL",
        )?
        .execute(params![id, tenant, nanos(at)])?;
    Ok(changed == 1)
}
