//! Schedules in the SQLite store: rows, listing, the due scan, and the
//! compare-and-set write that stores a tick's execution with the schedule's
//! new state.
//!
//! `wake_ns` is the schedules' queue, as it is the executions': when the
//! schedule is next due, NULL when nothing will make it due but a client
//! (paused, invalid, completed) or the end of a running execution it
//! buffered a tick for (`buffered`).

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::rows::{ExecutionRow, decode_cursor, encode_cursor, from_nanos, nanos, to_json};
use crate::model::{Schedule, TenantId, Timestamp};
use crate::store::{Error, Result, ScheduleFilter, SchedulePage, ScheduleWrite};

/// A schedule as its columns, encoded on the caller's thread.
pub(super) struct ScheduleRow {
    tenant: String,
    id: String,
    workflow: String,
    state: &'static str,
    wake_ns: Option<i64>,
    buffered: bool,
    doc: String,
}

impl ScheduleRow {
    pub(super) fn of(schedule: &Schedule, wake_at: Option<Timestamp>) -> Result<Self> {
        Ok(Self {
            tenant: schedule.tenant_id.as_str().to_owned(),
            id: schedule.schedule_id.as_str().to_owned(),
            workflow: schedule.workflow_id.as_str().to_owned(),
            state: schedule.state.as_str(),
            wake_ns: wake_at.map(nanos),
            buffered: schedule.buffered_at.is_some(),
            doc: to_json(schedule)?,
        })
    }

    /// Inserts it at version 1.
    pub(super) fn insert(&self, conn: &Connection) -> Result<()> {
        let taken: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM schedules WHERE tenant_id = ?1 AND id = ?2)",
            )?
            .query_row(params![self.tenant, self.id], |row| row.get(0))?;
        if taken {
            return Err(Error::AlreadyExists(format!("schedule `{}`", self.id)));
        }
        conn.prepare_cached(
            "INSERT INTO schedules (tenant_id, id, workflow_id, state, version, wake_ns, buffered, doc)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7)",
        )?
        .execute(params![
            self.tenant,
            self.id,
            self.workflow,
            self.state,
            self.wake_ns,
            self.buffered,
            self.doc
        ])?;
        Ok(())
    }
}

use crate::store::codec::decode_schedule as decode;

pub(super) fn load(conn: &Connection, tenant: &str, id: &str) -> Result<Option<Schedule>> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT doc, version FROM schedules WHERE tenant_id = ?1 AND id = ?2")?
        .query_row(params![tenant, id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(doc, version)| decode(tenant, &doc, version))
        .transpose()
}

/// A listing query, built on the caller's thread.
pub(super) struct Listing {
    sql: String,
    args: Vec<Value>,
    tenant: String,
    limit: usize,
}

impl Listing {
    pub(super) fn of(
        tenant: &TenantId,
        filter: &ScheduleFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Self> {
        let mut sql = String::from("SELECT seq, doc, version FROM schedules WHERE tenant_id = ?");
        let mut args = vec![Value::Text(tenant.as_str().to_owned())];
        if let Some(before) = cursor.map(decode_cursor).transpose()? {
            sql.push_str(" AND seq < ?");
            args.push(Value::Integer(before));
        }
        if let Some(workflow) = &filter.workflow_id {
            sql.push_str(" AND workflow_id = ?");
            args.push(Value::Text(workflow.as_str().to_owned()));
        }
        if let Some(state) = filter.state {
            sql.push_str(" AND state = ?");
            args.push(Value::Text(state.as_str().to_owned()));
        }
        let limit = limit.max(1);
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        // One row more than asked tells whether another page exists.
        args.push(Value::Integer(i64::from(limit) + 1));
        Ok(Self {
            sql,
            args,
            tenant: tenant.as_str().to_owned(),
            limit: limit as usize,
        })
    }

    pub(super) fn run(self, conn: &Connection) -> Result<SchedulePage> {
        let mut stmt = conn.prepare_cached(&self.sql)?;
        let mut rows = stmt.query(params_from_iter(self.args))?;
        let mut items = Vec::new();
        let mut last = None;
        while let Some(row) = rows.next()? {
            if items.len() == self.limit {
                return Ok(SchedulePage {
                    items,
                    next_cursor: last.map(encode_cursor),
                });
            }
            last = Some(row.get::<_, i64>(0)?);
            items.push(decode(
                &self.tenant,
                &row.get::<_, String>(1)?,
                row.get(2)?,
            )?);
        }
        Ok(SchedulePage {
            items,
            next_cursor: None,
        })
    }
}

/// A compare-and-set write, encoded on the caller's thread.
pub(super) struct Write {
    row: ScheduleRow,
    version: i64,
    start: Option<(ExecutionRow, Option<crate::store::Lease>)>,
}

impl Write {
    pub(super) fn of(write: &ScheduleWrite<'_>) -> Result<Self> {
        let start = match write.start {
            Some(start) => {
                let mut row = ExecutionRow::of(start.execution)?;
                row.tick_ns = start.tick.map(nanos);
                Some((row, start.lease.cloned()))
            }
            None => None,
        };
        Ok(Self {
            row: ScheduleRow::of(write.schedule, write.wake_at)?,
            version: i64::try_from(write.version).unwrap_or(i64::MAX),
            start,
        })
    }

    pub(super) fn apply(self, conn: &Connection) -> Result<Option<u64>> {
        let row = &self.row;
        // A tick starts at most one execution: checked before anything is
        // written, so that a refusal writes nothing. (The unique index on
        // `tick_ns` backs this up.)
        if let Some(tick) = self.start.as_ref().and_then(|(e, _)| e.tick_ns) {
            let started: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM executions
                     WHERE tenant_id = ?1 AND schedule_id = ?2 AND tick_ns = ?3)",
                )?
                .query_row(params![row.tenant, row.id, tick], |r| r.get(0))?;
            if started {
                return Ok(None);
            }
        }
        let version: Option<i64> = conn
            .prepare_cached(
                "UPDATE schedules
                 SET workflow_id = ?3, state = ?4, wake_ns = ?5, buffered = ?6, doc = ?7,
                     version = version + 1
                 WHERE tenant_id = ?1 AND id = ?2 AND version = ?8
                 RETURNING version",
            )?
            .query_row(
                params![
                    row.tenant,
                    row.id,
                    row.workflow,
                    row.state,
                    row.wake_ns,
                    row.buffered,
                    row.doc,
                    self.version
                ],
                |r| r.get(0),
            )
            .optional()?;
        let Some(version) = version else {
            return Ok(None);
        };
        if let Some((execution, lease)) = &self.start {
            execution.insert(conn, lease.as_ref())?;
        }
        Ok(Some(u64::try_from(version).unwrap_or(0)))
    }
}

/// Schedules due at `now`, earliest first.
pub(super) fn due(conn: &Connection, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
    let mut stmt = conn.prepare_cached(
        "SELECT tenant_id, doc, version FROM schedules s
         WHERE wake_ns IS NOT NULL AND wake_ns <= ?1
           AND NOT EXISTS (SELECT 1 FROM tenants t
                           WHERE t.id = s.tenant_id AND t.suspended_ns IS NOT NULL)
         ORDER BY wake_ns, seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(
        params![nanos(now), i64::try_from(limit).unwrap_or(i64::MAX)],
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (tenant, doc, version) = row?;
        out.push(decode(&tenant, &doc, version)?);
    }
    Ok(out)
}

/// The earliest `wake_ns` of any schedule of a tenant that is not
/// suspended.
pub(super) fn next_wake(conn: &Connection) -> Result<Option<Timestamp>> {
    let ns: Option<i64> = conn
        .prepare_cached(
            "SELECT wake_ns FROM schedules s
             WHERE wake_ns IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM tenants t
                               WHERE t.id = s.tenant_id AND t.suspended_ns IS NOT NULL)
             ORDER BY wake_ns LIMIT 1",
        )?
        .query_row([], |row| row.get(0))
        .optional()?;
    ns.map(from_nanos).transpose()
}
