//! Schedules in the PostgreSQL store: the due scan and the compare-and-set
//! write that stores a tick's execution with the schedule's new state.
//!
//! `wake_ns` is the schedules' queue, as in SQLite. Several nodes may scan
//! the same due schedule at once; the version check of the write (the
//! `UPDATE` locks the row, and the loser finds the version moved) and the
//! unique index on an execution's `(schedule, tick)` make sure a tick
//! starts one execution whatever the nodes do, without a leader.

use sqlx::PgPool;

use super::rows::insert_execution;
use crate::model::{Schedule, Timestamp};
use crate::store::codec::{column, decode_schedule, from_nanos, nanos, to_json, version};
use crate::store::{Error, Result, ScheduleWrite};

/// Stores a new schedule at version 1.
pub(super) async fn create(
    pool: &PgPool,
    schedule: &Schedule,
    wake_at: Option<Timestamp>,
) -> Result<()> {
    let done = sqlx::query(
        "INSERT INTO schedules (tenant_id, id, workflow_id, state, version, wake_ns, buffered, doc)
         VALUES ($1, $2, $3, $4, 1, $5, $6, $7)
         ON CONFLICT (tenant_id, id) DO NOTHING",
    )
    .bind(schedule.tenant_id.as_str())
    .bind(schedule.schedule_id.as_str())
    .bind(schedule.workflow_id.as_str())
    .bind(schedule.state.as_str())
    .bind(wake_at.map(nanos))
    .bind(schedule.buffered_at.is_some())
    .bind(to_json(schedule)?)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(Error::AlreadyExists(format!(
            "schedule `{}`",
            schedule.schedule_id
        )));
    }
    Ok(())
}

/// Writes a schedule if its version is unchanged, with the execution it
/// starts, in one transaction.
pub(super) async fn write(pool: &PgPool, write: ScheduleWrite<'_>) -> Result<Option<u64>> {
    let schedule = write.schedule;
    let tenant = schedule.tenant_id.as_str();
    let id = schedule.schedule_id.as_str();
    let doc = to_json(schedule)?;
    let start = match write.start {
        Some(start) => Some((to_json(start.execution)?, start)),
        None => None,
    };
    let mut tx = pool.begin().await?;
    let result: Result<Option<u64>> = async {
        // The update locks the schedule's row: a concurrent writer of the same
        // version waits, then finds the version moved and writes nothing.
        let new_version: Option<i64> = sqlx::query_scalar(
            "UPDATE schedules
             SET workflow_id = $3, state = $4, wake_ns = $5, buffered = $6, doc = $7,
                 version = version + 1
             WHERE tenant_id = $1 AND id = $2 AND version = $8
             RETURNING version",
        )
        .bind(tenant)
        .bind(id)
        .bind(schedule.workflow_id.as_str())
        .bind(schedule.state.as_str())
        .bind(write.wake_at.map(nanos))
        .bind(schedule.buffered_at.is_some())
        .bind(&doc)
        .bind(column(write.version))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(new_version) = new_version else {
            return Ok(None);
        };
        if let Some((exec_doc, start)) = &start {
            let tick = start.tick.map(nanos);
            if let Some(tick) = tick {
                // A tick starts at most one execution, checked before the insert
                // so that a refusal writes nothing (the unique index backs it up).
                let started: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM executions
                     WHERE tenant_id = $1 AND schedule_id = $2 AND tick_ns = $3)",
                )
                .bind(tenant)
                .bind(id)
                .bind(tick)
                .fetch_one(&mut *tx)
                .await?;
                if started {
                    return Ok(None);
                }
            }
            if !insert_execution(&mut tx, start.execution, exec_doc, start.lease, tick).await? {
                return Ok(None);
            }
        }
        Ok(Some(version(new_version)))
    }
    .await;
    if let Ok(None) = result {
        // Refused: nothing of it may stay.
        tx.rollback().await?;
        return Ok(None);
    }
    super::rows::finish(tx, result).await
}

/// Schedules due at `now`, earliest first.
pub(super) async fn due(pool: &PgPool, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT tenant_id, doc, version FROM schedules s
         WHERE wake_ns IS NOT NULL AND wake_ns <= $1
           AND NOT EXISTS (SELECT 1 FROM tenants t
                           WHERE t.id = s.tenant_id AND t.suspended_ns IS NOT NULL)
         ORDER BY wake_ns, seq LIMIT $2",
    )
    .bind(nanos(now))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|(tenant, doc, v)| decode_schedule(tenant, doc, *v))
        .collect()
}

/// The earliest `wake_ns` of any schedule of a tenant that is not
/// suspended.
pub(super) async fn next_wake(pool: &PgPool) -> Result<Option<Timestamp>> {
    let ns: Option<i64> = sqlx::query_scalar(
        "SELECT wake_ns FROM schedules s
         WHERE wake_ns IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM tenants t
                           WHERE t.id = s.tenant_id AND t.suspended_ns IS NOT NULL)
         ORDER BY wake_ns LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    ns.map(from_nanos).transpose()
}
