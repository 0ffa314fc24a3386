//! Rows of the PostgreSQL store: how records become columns and back, the
//! queries that several writes share, the listing query and how a
//! transaction ends.

use sqlx::{AssertSqlSafe, PgPool, Postgres, Row, Transaction};

use crate::model::{Execution, ScheduleId, TenantId, Timestamp, WorkflowId};
use crate::store::codec::{
    decode_cursor, decode_execution, encode_cursor, from_nanos, group_steps, nanos,
};
use crate::store::{Error, Lease, Result, StepRecord, StepVersion, Token, WorkflowRecord};

/// Whether `e` is a unique violation.
pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Inserts an execution at version 1 (see the SQLite backend's
/// `ExecutionRow::insert`); `false` when the tick it runs for started one
/// already (the transaction must then be dropped).
pub(super) async fn insert_execution(
    conn: &mut sqlx::PgConnection,
    execution: &Execution,
    doc: &str,
    lease: Option<&Lease>,
    tick_ns: Option<i64>,
) -> Result<bool> {
    let due = nanos(execution.scheduled_for.unwrap_or(execution.created_at));
    let (owner, until) = match lease {
        Some(l) => (Some(l.owner.as_str()), Some(nanos(l.until))),
        None => (None, None),
    };
    // The tenant row read `FOR KEY SHARE` (what a foreign key check takes)
    // orders this against a suspension or
    // deletion (see `tenants`): a suspended tenant's execution is stored off
    // the claim path, and a deleted tenant gets none.
    let done = sqlx::query(
        "INSERT INTO executions
             (id, tenant_id, workflow_id, status, created_ns, doc, version, wake_ns,
              lease_owner, lease_until_ns, schedule_id, tick_ns, suspended_wake_ns, batch_id)
         SELECT $1, $2, $3, $4, $5, $6, 1,
                CASE WHEN t.suspended_ns IS NULL THEN COALESCE($8, $9) END,
                CASE WHEN t.suspended_ns IS NULL THEN $7 END,
                CASE WHEN t.suspended_ns IS NULL THEN $8 END,
                $10, $11,
                CASE WHEN t.suspended_ns IS NOT NULL THEN $9 END,
                $12
         FROM (SELECT suspended_ns FROM tenants WHERE id = $2 FOR KEY SHARE) t",
    )
    .bind(execution.execution_id.as_str())
    .bind(execution.tenant_id.as_str())
    .bind(execution.workflow_id.as_str())
    .bind(execution.status.as_str())
    .bind(nanos(execution.created_at))
    .bind(doc)
    .bind(owner)
    .bind(until)
    .bind(due)
    .bind(execution.schedule_id.as_ref().map(ScheduleId::as_str))
    .bind(tick_ns)
    .bind(
        execution
            .batch_id
            .as_ref()
            .map(crate::model::BatchId::as_str),
    )
    .execute(&mut *conn)
    .await;
    match done {
        Ok(done) if done.rows_affected() == 0 => Err(Error::NoTenant(execution.tenant_id.clone())),
        Ok(_) => Ok(true),
        Err(e) if tick_ns.is_some() && is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Ends a transaction: commits it when `result` is a success, rolls it back
/// otherwise (at once, so that no lock outlives the call).
pub(super) async fn finish<T>(tx: Transaction<'static, Postgres>, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            // The error that ended the transaction is the one to report.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Takes a transaction-scoped advisory lock on `key`: concurrent writers
/// deciding about the same key run one after the other.
pub(super) async fn lock_key(tx: &mut Transaction<'static, Postgres>, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn load_execution<'e, E>(
    exec: E,
    tenant: &str,
    id: &str,
) -> Result<Option<Execution>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT doc, version FROM executions WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant)
            .fetch_optional(exec)
            .await?;
    row.map(|(doc, v)| decode_execution(tenant, &doc, v))
        .transpose()
}

pub(super) fn parse_time(text: &str) -> Result<Timestamp> {
    text.parse()
        .map_err(|e| Error::Backend(format!("a stored time `{text}` is not valid: {e}")))
}

pub(super) type WorkflowColumns = (i64, String, String, Option<i64>);

pub(super) fn workflow_of(
    id: &WorkflowId,
    (v, definition, created_at, deleted): WorkflowColumns,
) -> Result<WorkflowRecord> {
    Ok(WorkflowRecord {
        workflow_id: id.clone(),
        version: u32::try_from(v).map_err(|_| {
            Error::Backend(format!("a stored workflow version {v} is out of range"))
        })?,
        definition: serde_json::from_str(&definition)
            .map_err(|e| Error::Backend(format!("a stored definition is not JSON: {e}")))?,
        created_at: parse_time(&created_at)?,
        deleted_at: deleted.map(from_nanos).transpose()?,
    })
}

pub(super) async fn load_workflow<'e, E>(
    exec: E,
    tenant: &TenantId,
    id: &WorkflowId,
    version: Option<u32>,
) -> Result<Option<WorkflowRecord>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let row: Option<WorkflowColumns> = sqlx::query_as(
        "SELECT version, definition, created_at, deleted_ns FROM workflows
         WHERE tenant_id = $1 AND workflow_id = $2 AND ($3::BIGINT IS NULL OR version = $3)
         ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(version.map(i64::from))
    .fetch_optional(exec)
    .await?;
    row.map(|r| workflow_of(id, r)).transpose()
}

pub(super) async fn load_steps(
    pool: &PgPool,
    tenant: &TenantId,
    name: Option<&str>,
) -> Result<Vec<StepRecord>> {
    let rows: Vec<(String, String, i64, String, i64, String)> = sqlx::query_as(
        "SELECT name, digest, size_bytes, imports, compile_ms, created_at FROM step_versions
         WHERE tenant_id = $1 AND ($2::TEXT IS NULL OR name = $2)
         ORDER BY name, seq",
    )
    .bind(tenant.as_str())
    .bind(name)
    .fetch_all(pool)
    .await?;
    group_steps(rows.into_iter().map(step_version_of))
}

type StepColumns = (String, String, i64, String, i64, String);

fn step_version_of(
    (name, digest, size_bytes, imports, compile_ms, created_at): StepColumns,
) -> Result<(String, StepVersion)> {
    let version = StepVersion {
        digest: digest
            .parse()
            .map_err(|e| Error::Backend(format!("a stored digest is not valid: {e}")))?,
        size_bytes: u64::try_from(size_bytes).unwrap_or(0),
        imports: serde_json::from_str(&imports)
            .map_err(|e| Error::Backend(format!("stored imports are not JSON: {e}")))?,
        compile_ms: u64::try_from(compile_ms).unwrap_or(0),
        created_at: parse_time(&created_at)?,
    };
    Ok((name, version))
}

/// A workflow version and the registered steps its definition names, in
/// one statement (see `Store::workflow_with_steps`): the step names are
/// taken from the stored definition by the same rule as
/// `codec::step_names`.
pub(super) async fn load_workflow_with_steps(
    pool: &PgPool,
    tenant: &TenantId,
    id: &WorkflowId,
    version: Option<u32>,
) -> Result<Option<(WorkflowRecord, Vec<StepRecord>)>> {
    type Row = (
        i64,
        String,
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH w AS (
             SELECT version, definition, created_at, deleted_ns, definition::jsonb -> 'steps' AS steps
             FROM workflows
             WHERE tenant_id = $1 AND workflow_id = $2 AND ($3::BIGINT IS NULL OR version = $3)
             ORDER BY version DESC LIMIT 1
         )
         SELECT w.version, w.definition, w.created_at, w.deleted_ns,
                s.name, s.digest, s.size_bytes, s.imports, s.compile_ms, s.created_at
         FROM w LEFT JOIN step_versions s
           ON s.tenant_id = $1
          AND s.name IN (
              SELECT split_part(e ->> 'step', '@', 1)
              FROM jsonb_array_elements(
                  CASE WHEN jsonb_typeof(w.steps) = 'array' THEN w.steps ELSE '[]'::jsonb END
              ) AS e
              WHERE jsonb_typeof(e -> 'step') = 'string')
         ORDER BY s.name, s.seq",
    )
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(version.map(i64::from))
    .fetch_all(pool)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let workflow = workflow_of(id, (first.0, first.1.clone(), first.2.clone(), first.3))?;
    let steps = group_steps(
        rows.into_iter()
            .filter_map(|r| Some(step_version_of((r.4?, r.5?, r.6?, r.7?, r.8?, r.9?)))),
    )?;
    Ok(Some((workflow, steps)))
}

/// A listing query's arguments, bound in order to `$1`, `$2`, ...
pub(super) enum Arg {
    Text(String),
    Int(i64),
}

/// A `SELECT seq, doc, version` listing of one tenant's rows, newest first,
/// with one condition per filter and a cursor.
pub(super) struct Listing {
    sql: String,
    args: Vec<Arg>,
}

impl Listing {
    pub(super) fn new(table: &str, tenant: &TenantId, cursor: Option<&str>) -> Result<Self> {
        let mut listing = Self {
            sql: format!("SELECT seq, doc, version FROM {table} WHERE tenant_id = $1"),
            args: vec![Arg::Text(tenant.as_str().to_owned())],
        };
        if let Some(before) = cursor.map(decode_cursor).transpose()? {
            listing.and("seq <", Arg::Int(before));
        }
        Ok(listing)
    }

    /// Adds `AND <condition> $n`.
    pub(super) fn and(&mut self, condition: &str, arg: Arg) {
        self.args.push(arg);
        self.sql
            .push_str(&format!(" AND {condition} ${}", self.args.len()));
    }

    /// Runs it for up to `limit` rows: the rows and the cursor of the next
    /// page, if there is one.
    pub(super) async fn run(
        mut self,
        pool: &PgPool,
        limit: u32,
    ) -> Result<(Vec<(String, i64)>, Option<String>)> {
        let limit = limit.max(1);
        // One row more than asked tells whether another page exists.
        self.args.push(Arg::Int(i64::from(limit) + 1));
        self.sql
            .push_str(&format!(" ORDER BY seq DESC LIMIT ${}", self.args.len()));
        let mut query = sqlx::query(AssertSqlSafe(self.sql));
        for arg in self.args {
            query = match arg {
                Arg::Text(text) => query.bind(text),
                Arg::Int(n) => query.bind(n),
            };
        }
        let rows = query.fetch_all(pool).await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut last = None;
        for row in rows {
            if items.len() == limit as usize {
                return Ok((items, last.map(encode_cursor)));
            }
            last = Some(row.try_get::<i64, _>(0)?);
            items.push((row.try_get(1)?, row.try_get(2)?));
        }
        Ok((items, None))
    }
}

/// The columns `token_of` reads, in order.
pub(super) const TOKEN_COLUMNS: &str =
    "k.token_id, k.tenant_id, k.name, k.scopes, k.created_at, k.expires_ns, k.revoked_ns";

pub(super) type TokenColumns = (
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<i64>,
    Option<i64>,
);

pub(super) fn token_of(
    (id, tenant, name, scopes, created_at, expires, revoked): TokenColumns,
) -> Result<Token> {
    Ok(Token {
        id,
        tenant: tenant.map(TenantId::new_unchecked),
        name,
        scopes: serde_json::from_str(&scopes)
            .map_err(|e| Error::Backend(format!("a token's scopes are not readable: {e}")))?,
        created_at: parse_time(&created_at)?,
        expires_at: expires.map(from_nanos).transpose()?,
        revoked_at: revoked.map(from_nanos).transpose()?,
    })
}
