//! The work the PostgreSQL store owns: claims, leases, fenced commits,
//! parking and the event inbox.
//!
//! `wake_ns` is the queue, as in SQLite (see `store::sqlite::work`). What
//! differs is that writes run concurrently, from many connections and many
//! nodes, at READ COMMITTED:
//!
//! - a claim locks the rows it takes with `FOR UPDATE SKIP LOCKED`, so
//!   concurrent claimers take disjoint batches without waiting;
//! - every write to one execution locks its row first (the fenced `UPDATE`
//!   of a commit, `FOR UPDATE` in `send_event`), so an event and a park
//!   never miss each other: whichever comes second sees the other's effect;
//! - an inbox event's `seq` is drawn while its execution's row is locked,
//!   so one execution's events commit in `seq` order and a driver that read
//!   up to `seq` never skips an earlier event committed later.

use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::model::{
    Event, EventKind, Execution, ExecutionId, NewEvent, NodeId, Status, TenantId, Timestamp,
};
use crate::store::codec::{column, decode_execution, from_nanos, nanos, to_json, version};
use crate::store::{ClaimRound, Claimed, Commit, Error, Fairness, Held, Lease, Next, Result, Sent};

/// Claims up to `limit` due executions for `lease`, shared fairly between
/// tenants (see [`claim_round`]). Rows the owner itself holds are never
/// claimed again (see the SQLite backend).
pub(super) async fn claim_due(
    pool: &PgPool,
    lease: &Lease,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<Execution>> {
    let round = claim_round(pool, lease, now, limit, &Fairness::default()).await?;
    Ok(round.claimed.into_iter().map(|c| c.execution).collect())
}

/// Claims up to `limit` due executions and says, in the same round trip (a
/// claim round is one transaction), which of them have pending events and
/// when the next one is due. The next due time is read from the
/// statement's snapshot, from which the rows it claims are left out (they
/// are this owner's now).
///
/// The rows are shared out as in SQLite (see `store::sqlite::work`): each
/// tenant's due rows in order, the tenants interleaved by running count
/// over weight, none past its running limit. `stephost_claim` (schema
/// version 7) does it in one statement after taking, when any tenant has a
/// running limit, the claim lock every node's claims of this schema share:
/// a claim then reads the running counts only once the claims before it
/// committed, so two nodes never both fill the same free slot.
pub(super) async fn claim_round(
    pool: &PgPool,
    lease: &Lease,
    now: Timestamp,
    limit: usize,
    fair: &Fairness,
) -> Result<ClaimRound> {
    let rows = sqlx::query("SELECT * FROM stephost_claim($1, $2, $3, $4, $5)")
        .bind(lease.owner.as_str())
        .bind(nanos(now))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(nanos(lease.until))
        .bind(
            fair.max_running
                .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        )
        .fetch_all(pool)
        .await?;
    let mut next_wake_at = None;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        if let Some(ns) = row.try_get::<Option<i64>, _>(0)? {
            next_wake_at = Some(from_nanos(ns)?);
        }
        let Some(rank) = row.try_get::<Option<i64>, _>(1)? else {
            // The one row of a round that claimed nothing.
            continue;
        };
        let execution = decode_execution(row.try_get(3)?, row.try_get(4)?, row.try_get(5)?)?;
        let has_events: bool = row.try_get(6)?;
        claimed.push((
            rank,
            Claimed {
                execution,
                has_events,
            },
        ));
    }
    claimed.sort_by_key(|(rank, _)| *rank);
    Ok(ClaimRound {
        claimed: claimed.into_iter().map(|(_, c)| c).collect(),
        next_wake_at,
    })
}

/// Claims one unfinished execution unless another owner's lease on it is
/// live at `now`.
pub(super) async fn claim_execution(
    pool: &PgPool,
    lease: &Lease,
    now: Timestamp,
    tenant: &TenantId,
    id: &ExecutionId,
) -> Result<Option<Execution>> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "UPDATE executions
         SET lease_owner = $1, lease_until_ns = $2, wake_ns = $2, version = version + 1
         WHERE id = $3 AND tenant_id = $4 AND wake_ns IS NOT NULL
           AND (lease_owner IS NULL OR (lease_owner <> $1 AND lease_until_ns < $5))
         RETURNING doc, version",
    )
    .bind(lease.owner.as_str())
    .bind(nanos(lease.until))
    .bind(id.as_str())
    .bind(tenant.as_str())
    .bind(nanos(now))
    .fetch_optional(pool)
    .await?;
    row.map(|(doc, v)| decode_execution(tenant.as_str(), &doc, v))
        .transpose()
}

/// Applies a commit if the version and owner still match; returns the new
/// version.
///
/// One round trip, whatever the commit does: the `stephost_commit`
/// function (schema version 3) runs the fenced update and what follows it
/// in the statement's own transaction. The fenced update comes first: it
/// locks the row, so that an event sent meanwhile is either committed
/// already (and seen by the statements after it) or waits for this commit
/// and then finds the row parked or finished.
pub(super) async fn commit(pool: &PgPool, commit: Commit<'_>) -> Result<u64> {
    commit.check()?;
    let execution = commit.execution;
    let doc = to_json(execution)?;
    let (owner, until, wake) = match commit.next {
        Next::Hold { until } => (
            Some(commit.owner.as_str()),
            Some(nanos(until)),
            Some(nanos(until)),
        ),
        Next::Park { wake_at } => (None, None, Some(nanos(wake_at))),
        Next::Finish => (None, None, None),
    };
    let finish = matches!(commit.next, Next::Finish);
    // A finished execution takes no more events: its whole inbox goes.
    let consumed = if finish {
        i64::MAX
    } else {
        column(commit.consumed)
    };
    let schedule = execution
        .schedule_id
        .as_ref()
        .filter(|_| finish)
        .map(|s| s.as_str());
    let query = sqlx::query_scalar(
        "SELECT stephost_commit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(execution.execution_id.as_str())
    .bind(column(commit.version))
    .bind(commit.owner.as_str())
    .bind(execution.status.as_str())
    .bind(&doc)
    .bind(owner)
    .bind(until)
    .bind(wake)
    .bind(consumed)
    .bind(matches!(commit.next, Next::Park { .. }))
    .bind(execution.tenant_id.as_str())
    .bind(schedule)
    // When it finished: the buffered schedule's due time and, once it has
    // finished, its `finished_ns` (what retention counts from).
    .bind(nanos(execution.finished_at.unwrap_or(execution.created_at)));
    let new_version: Option<i64> = if commit.deliveries.is_empty() {
        query.fetch_one(pool).await?
    } else {
        // The callbacks reporting this state go in its transaction (the
        // outbox), only if the fenced commit took.
        let mut tx = pool.begin().await?;
        let result = async {
            let v: Option<i64> = query.fetch_one(&mut *tx).await?;
            if v.is_some() {
                super::deliveries::insert(&mut tx, commit.deliveries).await?;
            }
            Ok(v)
        }
        .await;
        super::rows::finish(tx, result).await?
    };
    match new_version {
        Some(v) => Ok(version(v)),
        None => Err(Error::LeaseLost(execution.execution_id.clone())),
    }
}

/// Extends the leases `lease.owner` still holds among `ids`.
pub(super) async fn renew_leases(
    pool: &PgPool,
    lease: &Lease,
    ids: &[ExecutionId],
) -> Result<Vec<Held>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<&str> = ids.iter().map(ExecutionId::as_str).collect();
    let rows: Vec<(String, bool)> = sqlx::query_as(
        "UPDATE executions AS e SET lease_until_ns = $1, wake_ns = $1
         WHERE e.id = ANY($2) AND e.lease_owner = $3
         RETURNING e.id, EXISTS (SELECT 1 FROM inbox WHERE inbox.execution_id = e.id)",
    )
    .bind(nanos(lease.until))
    .bind(&wanted)
    .bind(lease.owner.as_str())
    .fetch_all(pool)
    .await?;
    let mut held: std::collections::HashMap<String, bool> = rows.into_iter().collect();
    // In the order asked, as the SQLite backend answers.
    Ok(ids
        .iter()
        .filter_map(|id| {
            held.remove(id.as_str()).map(|has_events| Held {
                id: id.clone(),
                has_events,
            })
        })
        .collect())
}

/// Releases every lease of `owner`; the executions are due at `now`.
pub(super) async fn release_leases(pool: &PgPool, owner: &NodeId, now: Timestamp) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE executions SET lease_owner = NULL, lease_until_ns = NULL, wake_ns = $2
         WHERE lease_owner = $1",
    )
    .bind(owner.as_str())
    .bind(nanos(now))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The earliest `wake_ns` of a row `owner` does not hold.
pub(super) async fn next_wake_at(pool: &PgPool, owner: &NodeId) -> Result<Option<Timestamp>> {
    let ns: Option<i64> = sqlx::query_scalar(
        "SELECT wake_ns FROM executions
         WHERE wake_ns IS NOT NULL AND (lease_owner IS NULL OR lease_owner <> $1)
         ORDER BY wake_ns LIMIT 1",
    )
    .bind(owner.as_str())
    .fetch_optional(pool)
    .await?;
    ns.map(from_nanos).transpose()
}

/// Stores an event for an unfinished execution and makes it due.
pub(super) async fn send_event(
    pool: &PgPool,
    tenant: &TenantId,
    id: &ExecutionId,
    event: &NewEvent,
) -> Result<Sent> {
    let payload = event.payload.as_ref().map(to_json).transpose()?;
    let mut tx = pool.begin().await?;
    let sent = send_in(&mut tx, tenant, id, event, payload.as_deref()).await;
    super::rows::finish(tx, sent).await
}

async fn send_in(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    id: &ExecutionId,
    event: &NewEvent,
    payload: Option<&str>,
) -> Result<Sent> {
    // The row lock orders this event with every commit and every other
    // event of the execution.
    let row: Option<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, lease_owner FROM executions
         WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
    )
    .bind(id.as_str())
    .bind(tenant.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((status, owner)) = row else {
        return Ok(Sent::NotFound);
    };
    let status: Status = status.parse().map_err(Error::Backend)?;
    // A retried delivery is the same delivery, even once the execution has
    // finished.
    if let Some(key) = &event.idempotency_key {
        let earlier: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM event_keys WHERE execution_id = $1 AND key = $2")
                .bind(id.as_str())
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(seq) = earlier {
            return Ok(Sent::Duplicate(version(seq)));
        }
    }
    let reopens = event.kind == EventKind::Resume && status.is_restartable();
    if status.is_terminal() && !reopens {
        return Ok(Sent::Finished(status));
    }
    let at = nanos(event.at);
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO inbox (execution_id, kind, name, payload, created_ns)
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(id.as_str())
    .bind(event.kind.as_str())
    .bind(event.name.as_deref())
    .bind(payload)
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    if let Some(key) = &event.idempotency_key {
        sqlx::query("INSERT INTO event_keys (execution_id, key, seq) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(key)
            .bind(seq)
            .execute(&mut **tx)
            .await?;
    }
    // As in SQLite: a held execution keeps its lease expiry as `wake_ns`; a
    // reopened one goes back on the claim path; a signal for a postponed run
    // waits for it to start.
    let waits = status == Status::Scheduled && event.kind == EventKind::Signal;
    if owner.is_none() && !waits {
        // A suspended tenant's execution stays off the claim path: the event
        // makes it due in its stash instead (see `tenants`).
        sqlx::query(
            "UPDATE executions e SET
                 finished_ns = NULL,
                 wake_ns = CASE WHEN t.suspended_ns IS NULL THEN LEAST(e.wake_ns, $2) END,
                 suspended_wake_ns = CASE WHEN t.suspended_ns IS NOT NULL
                                     THEN LEAST(e.suspended_wake_ns, $2) END
             FROM tenants t WHERE e.id = $1 AND t.id = e.tenant_id",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(Sent::Stored(version(seq)))
}

/// Deletes up to `limit` executions that finished before `before`, oldest
/// first, with the inbox rows, event keys, idempotency keys and deliveries that belong
/// to them, in one statement; returns how many executions went. Rows
/// another transaction holds (a resume reopening one) are skipped, for a
/// later sweep.
pub(super) async fn purge_finished(pool: &PgPool, before: Timestamp, limit: usize) -> Result<u64> {
    let done = sqlx::query(
        "WITH doomed AS (
             SELECT seq, id FROM executions WHERE finished_ns < $1
             ORDER BY finished_ns, seq LIMIT $2 FOR UPDATE SKIP LOCKED),
         keys AS (DELETE FROM event_keys WHERE execution_id IN (SELECT id FROM doomed)),
         events AS (DELETE FROM inbox WHERE execution_id IN (SELECT id FROM doomed)),
         idem AS (DELETE FROM idempotency WHERE execution_id IN (SELECT id FROM doomed)),
         sent AS (DELETE FROM deliveries WHERE execution_id IN (SELECT id FROM doomed))
         DELETE FROM executions WHERE seq IN (SELECT seq FROM doomed)",
    )
    .bind(nanos(before))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// `seq, kind, name, payload, created_ns` of an inbox row.
type EventColumns = (i64, String, Option<String>, Option<String>, i64);

/// The inbox of an execution after `after`, in order.
pub(super) async fn events(pool: &PgPool, id: &ExecutionId, after: u64) -> Result<Vec<Event>> {
    let rows: Vec<EventColumns> = sqlx::query_as(
        "SELECT seq, kind, name, payload, created_ns FROM inbox
         WHERE execution_id = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(id.as_str())
    .bind(column(after))
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(seq, kind, name, payload, at)| {
            Ok(Event {
                seq: version(seq),
                kind: kind.parse().map_err(Error::Backend)?,
                name,
                payload: payload
                    .map(|p| serde_json::from_str(&p))
                    .transpose()
                    .map_err(|e| {
                        Error::Backend(format!("a stored event payload is not JSON: {e}"))
                    })?,
                at: from_nanos(at)?,
            })
        })
        .collect()
}
