//! The work the SQLite store owns: claims, leases, fenced commits, parking
//! and the event inbox.
//!
//! `wake_ns` is the queue. For an execution nobody holds it is when the
//! execution is next due; for a held one it is when the lease lapses (so the
//! due scan skips held rows without looking at them, and finds a lapsed
//! lease by the same index); for a terminal one it is NULL, which takes the
//! row out of the partial index. Writes here run on the writer thread, so
//! each function's reads and writes are atomic with respect to every other
//! write.

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{decode_execution, from_nanos, nanos, to_json};
use crate::model::{
    Event, EventKind, Execution, ExecutionId, NewEvent, NodeId, Status, TenantId, Timestamp,
};
use crate::store::{ClaimRound, Claimed, Commit, Error, Fairness, Held, Lease, Next, Result, Sent};

/// Claims up to `limit` due executions for `lease`, shared out between
/// tenants as `Store::claim_round` says (see [`pick`]). Rows the owner
/// itself holds are never claimed again, even when their lease looks
/// lapsed (a clock moved ahead of the renewals): the owner still drives
/// them.
pub(super) fn claim_due(
    conn: &Connection,
    lease: &Lease,
    now: Timestamp,
    limit: usize,
    fair: &Fairness,
) -> Result<Vec<Execution>> {
    let due = pick(conn, lease, now, limit, fair)?;
    let mut take = conn.prepare_cached(
        "UPDATE executions
         SET lease_owner = ?1, lease_until_ns = ?2, wake_ns = ?2, version = version + 1
         WHERE seq = ?3
         RETURNING tenant_id, doc, version",
    )?;
    let until = nanos(lease.until);
    let mut claimed = Vec::with_capacity(due.len());
    for seq in due {
        let (tenant, doc, version): (String, String, i64) = take
            .query_row(params![lease.owner.as_str(), until, seq], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        claimed.push(decode_execution(&tenant, &doc, version)?);
    }
    Ok(claimed)
}

/// Which due rows a claim of `limit` takes, in the order their drivers
/// start. Each tenant's due rows come in due order, up to `limit` of them,
/// from its per-tenant index; a row whose lease lapsed is taken over
/// first (it runs already); each next row of a tenant counts as one more
/// running execution of it, and is left out when that would pass the
/// tenant's running limit; of all of them, the lowest running count over
/// weight go first, ties by due time. Runs on the writer thread, so the
/// counts cannot change under it.
fn pick(
    conn: &Connection,
    lease: &Lease,
    now: Timestamp,
    limit: usize,
    fair: &Fairness,
) -> Result<Vec<i64>> {
    // The tenants with unfinished work, one index seek each (a loose
    // index scan), with their weight, running limit and held count; a
    // tenant missing from `tenants` has the defaults.
    let tenants: Vec<(String, i64, Option<i64>, i64)> = conn
        .prepare_cached(
            "WITH RECURSIVE busy(id) AS (
                 SELECT MIN(tenant_id) FROM executions WHERE wake_ns IS NOT NULL
                 UNION ALL
                 SELECT (SELECT MIN(x.tenant_id) FROM executions AS x
                         WHERE x.wake_ns IS NOT NULL AND x.tenant_id > busy.id)
                 FROM busy WHERE busy.id IS NOT NULL)
             SELECT busy.id, COALESCE(t.weight, 1), t.max_running,
                    (SELECT COUNT(*) FROM executions AS h
                     WHERE h.tenant_id = busy.id AND h.lease_owner IS NOT NULL)
             FROM busy LEFT JOIN tenants AS t ON t.id = busy.id
             WHERE busy.id IS NOT NULL",
        )?
        .query_map([], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let at = nanos(now);
    let most = i64::try_from(limit).unwrap_or(i64::MAX);
    // (running over weight, due time, seq); a lapsed lease first.
    let mut candidates: Vec<(f64, i64, i64)> = conn
        .prepare_cached(
            "SELECT seq, wake_ns FROM executions
             WHERE lease_owner IS NOT NULL AND lease_owner != ?1 AND lease_until_ns < ?2
               AND wake_ns IS NOT NULL
             ORDER BY wake_ns, seq LIMIT ?3",
        )?
        .query_map(params![lease.owner.as_str(), at, most], |row| {
            Ok((0.0, row.get(1)?, row.get(0)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut free = conn.prepare_cached(
        "SELECT seq, wake_ns FROM executions
         WHERE tenant_id = ?1 AND wake_ns IS NOT NULL AND wake_ns <= ?2 AND lease_owner IS NULL
         ORDER BY wake_ns, seq LIMIT ?3",
    )?;
    let default_cap = fair
        .max_running
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    for (tenant, weight, cap, held) in tenants {
        let weight = weight.max(1) as f64;
        let room = match cap.or(default_cap) {
            Some(cap) => (cap - held).clamp(0, most),
            None => most,
        };
        if room == 0 {
            continue;
        }
        let rows = free.query_map(params![tenant, at, room], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })?;
        for (running, row) in (held + 1..).zip(rows) {
            let (seq, wake) = row?;
            candidates.push((running as f64 / weight, wake, seq));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    candidates.truncate(limit);
    Ok(candidates.into_iter().map(|(_, _, seq)| seq).collect())
}

/// [`claim_due`], each claimed execution's pending events and the next due
/// time, on the writer's connection (one call, one lock).
pub(super) fn claim_round(
    conn: &Connection,
    lease: &Lease,
    now: Timestamp,
    limit: usize,
    fair: &Fairness,
) -> Result<ClaimRound> {
    let executions = claim_due(conn, lease, now, limit, fair)?;
    let mut pending =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM inbox WHERE execution_id = ?1)")?;
    let mut claimed = Vec::with_capacity(executions.len());
    for execution in executions {
        let has_events: bool =
            pending.query_row([execution.execution_id.as_str()], |row| row.get(0))?;
        claimed.push(Claimed {
            execution,
            has_events,
        });
    }
    Ok(ClaimRound {
        claimed,
        next_wake_at: next_wake_at(conn, &lease.owner)?,
    })
}

/// Claims one unfinished execution unless another owner's lease on it is
/// live at `now`.
pub(super) fn claim_execution(
    conn: &Connection,
    lease: &Lease,
    now: Timestamp,
    tenant: &TenantId,
    id: &ExecutionId,
) -> Result<Option<Execution>> {
    let until = nanos(lease.until);
    let row: Option<(String, i64)> = conn
        .prepare_cached(
            "UPDATE executions
             SET lease_owner = ?1, lease_until_ns = ?2, wake_ns = ?2, version = version + 1
             WHERE id = ?3 AND tenant_id = ?4 AND wake_ns IS NOT NULL
               AND (lease_owner IS NULL OR (lease_owner != ?1 AND lease_until_ns < ?5))
             RETURNING doc, version",
        )?
        .query_row(
            params![
                lease.owner.as_str(),
                until,
                id.as_str(),
                tenant.as_str(),
                nanos(now)
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    row.map(|(doc, version)| decode_execution(tenant.as_str(), &doc, version))
        .transpose()
}

/// A commit encoded on the caller's thread, so that the writer only runs
/// SQL.
pub(super) struct Change {
    id: String,
    status: &'static str,
    doc: String,
    version: i64,
    owner: String,
    consumed: i64,
    next: Next,
    /// For a finished execution of a schedule: the tenant, the schedule
    /// and when it finished.
    schedule: Option<(String, String, i64)>,
    /// For a finished execution: when it finished (what retention counts
    /// from).
    finished_ns: Option<i64>,
    /// The callbacks reporting this state (the outbox).
    deliveries: Vec<crate::model::NewDelivery>,
}

impl Change {
    pub(super) fn of(commit: &Commit<'_>) -> Result<Self> {
        commit.check()?;
        Ok(Self {
            id: commit.execution.execution_id.as_str().to_owned(),
            status: commit.execution.status.as_str(),
            doc: to_json(commit.execution)?,
            version: i64::try_from(commit.version).unwrap_or(i64::MAX),
            owner: commit.owner.as_str().to_owned(),
            consumed: i64::try_from(commit.consumed).unwrap_or(i64::MAX),
            next: commit.next,
            schedule: match (&commit.execution.schedule_id, commit.next) {
                (Some(s), Next::Finish) => Some((
                    commit.execution.tenant_id.as_str().to_owned(),
                    s.as_str().to_owned(),
                    nanos(
                        commit
                            .execution
                            .finished_at
                            .unwrap_or(commit.execution.created_at),
                    ),
                )),
                _ => None,
            },
            finished_ns: matches!(commit.next, Next::Finish).then(|| {
                nanos(
                    commit
                        .execution
                        .finished_at
                        .unwrap_or(commit.execution.created_at),
                )
            }),
            deliveries: commit.deliveries.to_vec(),
        })
    }

    /// Applies the change if the version and owner still match; returns the
    /// new version.
    pub(super) fn apply(self, conn: &Connection) -> Result<u64> {
        // Parking takes the earliest event the commit did not consume into
        // account, so an event sent while the driver decided to park makes
        // the execution due at once.
        let (owner, until, wake): (Option<&str>, Option<i64>, Option<i64>) = match self.next {
            Next::Hold { until } => (Some(&self.owner), Some(nanos(until)), Some(nanos(until))),
            Next::Park { wake_at } => {
                let pending: Option<i64> = conn
                    .prepare_cached(
                        "SELECT MIN(created_ns) FROM inbox WHERE execution_id = ?1 AND seq > ?2",
                    )?
                    .query_row(params![self.id, self.consumed], |row| row.get(0))?;
                let wake = nanos(wake_at);
                (None, None, Some(pending.map_or(wake, |p| p.min(wake))))
            }
            Next::Finish => (None, None, None),
        };
        let version: Option<i64> = conn
            .prepare_cached(
                "UPDATE executions
                 SET status = ?1, doc = ?2, version = version + 1,
                     lease_owner = ?3, lease_until_ns = ?4, wake_ns = ?5, finished_ns = ?9
                 WHERE id = ?6 AND version = ?7 AND lease_owner = ?8
                 RETURNING version",
            )?
            .query_row(
                params![
                    self.status,
                    self.doc,
                    owner,
                    until,
                    wake,
                    self.id,
                    self.version,
                    self.owner,
                    self.finished_ns
                ],
                |row| row.get(0),
            )
            .optional()?;
        let Some(version) = version else {
            return Err(Error::LeaseLost(ExecutionId::new_unchecked(self.id)));
        };
        super::deliveries::insert(conn, &self.deliveries)?;
        let consumed = if matches!(self.next, Next::Finish) {
            i64::MAX
        } else {
            self.consumed
        };
        if consumed > 0 {
            conn.prepare_cached("DELETE FROM inbox WHERE execution_id = ?1 AND seq <= ?2")?
                .execute(params![self.id, consumed])?;
        }
        if let Some((tenant, schedule, at)) = &self.schedule {
            // A buffered tick waits for this execution to end.
            conn.prepare_cached(
                "UPDATE schedules SET wake_ns = MIN(COALESCE(wake_ns, ?3), ?3)
                 WHERE tenant_id = ?1 AND id = ?2 AND buffered = 1",
            )?
            .execute(params![tenant, schedule, at])?;
        }
        Ok(u64::try_from(version).unwrap_or(0))
    }
}

/// Extends the leases `lease.owner` still holds among `ids`.
pub(super) fn renew_leases(
    conn: &Connection,
    lease: &Lease,
    ids: &[ExecutionId],
) -> Result<Vec<Held>> {
    let until = nanos(lease.until);
    let mut renew = conn.prepare_cached(
        "UPDATE executions SET lease_until_ns = ?1, wake_ns = ?1
         WHERE id = ?2 AND lease_owner = ?3
         RETURNING EXISTS (SELECT 1 FROM inbox WHERE execution_id = ?2)",
    )?;
    let mut held = Vec::with_capacity(ids.len());
    for id in ids {
        let has_events: Option<bool> = renew
            .query_row(params![until, id.as_str(), lease.owner.as_str()], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(has_events) = has_events {
            held.push(Held {
                id: id.clone(),
                has_events,
            });
        }
    }
    Ok(held)
}

/// Releases every lease of `owner`; the executions are due at `now`.
pub(super) fn release_leases(conn: &Connection, owner: &NodeId, now: Timestamp) -> Result<u64> {
    let released = conn
        .prepare_cached(
            "UPDATE executions SET lease_owner = NULL, lease_until_ns = NULL, wake_ns = ?2
             WHERE lease_owner = ?1",
        )?
        .execute(params![owner.as_str(), nanos(now)])?;
    Ok(released as u64)
}

/// The earliest `wake_ns` of a row `owner` does not hold.
pub(super) fn next_wake_at(conn: &Connection, owner: &NodeId) -> Result<Option<Timestamp>> {
    let ns: Option<i64> = conn
        .prepare_cached(
            "SELECT wake_ns FROM executions
             WHERE wake_ns IS NOT NULL AND (lease_owner IS NULL OR lease_owner != ?1)
             ORDER BY wake_ns LIMIT 1",
        )?
        .query_row([owner.as_str()], |row| row.get(0))
        .optional()?;
    ns.map(from_nanos).transpose()
}

/// Stores an event for an unfinished execution and makes it due.
pub(super) fn send_event(
    conn: &Connection,
    tenant: &TenantId,
    id: &ExecutionId,
    event: &NewEvent,
    payload: Option<&str>,
) -> Result<Sent> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT status, lease_owner FROM executions WHERE id = ?1 AND tenant_id = ?2",
        )?
        .query_row(params![id.as_str(), tenant.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let Some((status, owner)) = row else {
        return Ok(Sent::NotFound);
    };
    let status: Status = status.parse().map_err(Error::Backend)?;
    // A retried delivery is the same delivery, even once the execution has
    // finished.
    if let Some(key) = &event.idempotency_key {
        let earlier: Option<i64> = conn
            .prepare_cached("SELECT seq FROM event_keys WHERE execution_id = ?1 AND key = ?2")?
            .query_row(params![id.as_str(), key], |row| row.get(0))
            .optional()?;
        if let Some(seq) = earlier {
            return Ok(Sent::Duplicate(u64::try_from(seq).unwrap_or(0)));
        }
    }
    let reopens = event.kind == EventKind::Resume && status.is_restartable();
    if status.is_terminal() && !reopens {
        return Ok(Sent::Finished(status));
    }
    let at = nanos(event.at);
    let seq: i64 = conn
        .prepare_cached(
            "INSERT INTO inbox (execution_id, kind, name, payload, created_ns)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
        )?
        .query_row(
            params![id.as_str(), event.kind.as_str(), event.name, payload, at],
            |row| row.get(0),
        )?;
    if let Some(key) = &event.idempotency_key {
        conn.prepare_cached("INSERT INTO event_keys (execution_id, key, seq) VALUES (?1, ?2, ?3)")?
            .execute(params![id.as_str(), key, seq])?;
    }
    // A held execution's holder is told in-process or by its next renewal;
    // its `wake_ns` stays its lease expiry, so that if the holder dies the
    // execution is claimed when the lease lapses.
    // A restartable execution that a resume reopens has no `wake_ns` (NULL)
    // and goes back on the claim path. A signal for a postponed run waits
    // for it to start.
    let waits = status == Status::Scheduled && event.kind == EventKind::Signal;
    if owner.is_none() && !waits {
        // A suspended tenant's execution stays off the claim path: the event
        // makes it due in its stash instead (see `tenants`).
        conn.prepare_cached(
            "UPDATE executions SET
                 finished_ns = NULL,
                 wake_ns = CASE WHEN t.suspended_ns IS NULL
                           THEN COALESCE(MIN(executions.wake_ns, ?2), ?2) END,
                 suspended_wake_ns = CASE WHEN t.suspended_ns IS NOT NULL
                           THEN COALESCE(MIN(executions.suspended_wake_ns, ?2), ?2) END
             FROM tenants t WHERE executions.id = ?1 AND t.id = executions.tenant_id",
        )?
        .execute(params![id.as_str(), at])?;
    }
    Ok(Sent::Stored(u64::try_from(seq).unwrap_or(0)))
}

/// Deletes up to `limit` executions that finished before `before`, oldest
/// first, with the inbox rows, event keys, idempotency keys and deliveries that belong
/// to them; returns how many executions went. One write: the statements
/// see the same executions.
pub(super) fn purge_finished(conn: &Connection, before: i64, limit: i64) -> Result<u64> {
    const DOOMED: &str = "SELECT id FROM executions WHERE finished_ns < ?1
                          ORDER BY finished_ns, seq LIMIT ?2";
    for table in ["event_keys", "inbox", "idempotency", "deliveries"] {
        conn.prepare_cached(&format!(
            "DELETE FROM {table} WHERE execution_id IN ({DOOMED})"
        ))?
        .execute(params![before, limit])?;
    }
    let gone = conn
        .prepare_cached(&format!("DELETE FROM executions WHERE id IN ({DOOMED})"))?
        .execute(params![before, limit])?;
    Ok(u64::try_from(gone).unwrap_or(0))
}

/// The inbox of an execution after `after`, in order.
pub(super) fn events(conn: &Connection, id: &ExecutionId, after: u64) -> Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, name, payload, created_ns FROM inbox
         WHERE execution_id = ?1 AND seq > ?2 ORDER BY seq",
    )?;
    let mut rows = stmt.query(params![
        id.as_str(),
        i64::try_from(after).unwrap_or(i64::MAX)
    ])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let kind: String = row.get(1)?;
        let payload: Option<String> = row.get(3)?;
        events.push(Event {
            seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
            kind: kind.parse().map_err(Error::Backend)?,
            name: row.get(2)?,
            payload: payload
                .map(|p| serde_json::from_str(&p))
                .transpose()
                .map_err(|e| Error::Backend(format!("a stored event payload is not JSON: {e}")))?,
            at: from_nanos(row.get(4)?)?,
        });
    }
    Ok(events)
}
