//! The nodes that use the database and their heartbeats.

use rusqlite::{Connection, params};

use crate::store::codec::{decode_node, nanos};
use crate::store::{Heartbeat, NodeRecord, Result};

/// Registers the node or records its heartbeat.
pub(super) fn heartbeat(conn: &Connection, beat: &Heartbeat<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO nodes (node_id, started_ns, heartbeat_ns, claim_work)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (node_id) DO UPDATE SET started_ns = excluded.started_ns,
             heartbeat_ns = excluded.heartbeat_ns, claim_work = excluded.claim_work",
    )?
    .execute(params![
        beat.node.as_str(),
        nanos(beat.started_at),
        nanos(beat.at),
        beat.claim_work
    ])?;
    Ok(())
}

/// Every node, with the leases it holds at `now_ns`.
pub(super) fn nodes(conn: &Connection, now_ns: i64) -> Result<Vec<NodeRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT n.node_id, n.started_ns, n.heartbeat_ns, n.claim_work,
                (SELECT COUNT(*) FROM executions e
                 WHERE e.lease_owner = n.node_id AND e.lease_until_ns >= ?1)
         FROM nodes n ORDER BY n.node_id",
    )?;
    let rows = stmt
        .query_map(params![now_ns], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, bool>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode_node).collect()
}

/// Forgets the nodes silent since before `before_ns`.
pub(super) fn forget(conn: &Connection, before_ns: i64) -> Result<u64> {
    let gone = conn
        .prepare_cached("DELETE FROM nodes WHERE heartbeat_ns < ?1")?
        .execute(params![before_ns])?;
    Ok(u64::try_from(gone).unwrap_or(0))
}
