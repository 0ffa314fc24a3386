//! Tenants' sealed secrets in the SQLite store (the store never sees plain
//! values).

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::Result;

/// Stores a sealed value, replacing any earlier one.
pub(super) fn put(conn: &Connection, tenant: &str, name: &str, sealed: &[u8]) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO secrets (tenant_id, name, sealed) VALUES (?1, ?2, ?3) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed",
    )?
    .execute(params![tenant, name, sealed])?;
    Ok(())
}

/// The tenant's secret names, sorted.
pub(super) fn names(conn: &Connection, tenant: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT name FROM secrets WHERE tenant_id = ?1 ORDER BY name")?;
    let names = stmt
        .query_map(params![tenant], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names)
}

/// Deletes a secret; false if there was none.
pub(super) fn delete(conn: &Connection, tenant: &str, name: &str) -> Result<bool> {
    let deleted = conn
        .prepare_cached("DELETE FROM secrets WHERE tenant_id = ?1 AND name = ?2")?
        .execute(params![tenant, name])?;
    Ok(deleted > 0)
}

/// The sealed values of those of `names` that exist.
pub(super) fn sealed(
    conn: &Connection,
    tenant: &str,
    names: Vec<String>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut stmt =
        conn.prepare_cached("SELECT sealed FROM secrets WHERE tenant_id = ?1 AND name = ?2")?;
    let mut out = Vec::new();
    for name in names {
        let sealed: Option<Vec<u8>> = stmt
            .query_row(params![tenant, name], |row| row.get(0))
            .optional()?;
        if let Some(sealed) = sealed {
            out.push((name, sealed));
        }
    }
    Ok(out)
}
