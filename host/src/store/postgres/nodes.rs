//! The nodes that use the database and their heartbeats.

use sqlx::PgPool;

use crate::store::codec::{NodeColumns, decode_node, nanos};
use crate::store::{Heartbeat, NodeRecord, Result};

/// Registers the node or records its heartbeat.
pub(super) async fn heartbeat(pool: &PgPool, beat: &Heartbeat<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO nodes (node_id, started_ns, heartbeat_ns, claim_work)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (node_id) DO UPDATE SET started_ns = excluded.started_ns,
             heartbeat_ns = excluded.heartbeat_ns, claim_work = excluded.claim_work",
    )
    .bind(beat.node.as_str())
    .bind(nanos(beat.started_at))
    .bind(nanos(beat.at))
    .bind(beat.claim_work)
    .execute(pool)
    .await?;
    Ok(())
}

/// Every node, with the leases it holds at `now`.
pub(super) async fn nodes(pool: &PgPool, now: crate::model::Timestamp) -> Result<Vec<NodeRecord>> {
    let rows: Vec<NodeColumns> = sqlx::query_as(
        "SELECT n.node_id, n.started_ns, n.heartbeat_ns, n.claim_work,
                (SELECT COUNT(*) FROM executions e
                 WHERE e.lease_owner = n.node_id AND e.lease_until_ns >= $1)
         FROM nodes n ORDER BY n.node_id",
    )
    .bind(nanos(now))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(decode_node).collect()
}

/// Forgets the nodes silent since before `before`.
pub(super) async fn forget(pool: &PgPool, before: crate::model::Timestamp) -> Result<u64> {
    let gone = sqlx::query("DELETE FROM nodes WHERE heartbeat_ns < $1")
        .bind(nanos(before))
        .execute(pool)
        .await?;
    Ok(gone.rows_affected())
}
