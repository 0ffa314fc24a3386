//! The PostgreSQL backend: a pool of connections to one database that
//! several `stephost serve` nodes share.
//!
//! Unlike SQLite's single writer, writes here run concurrently from many
//! connections and nodes at READ COMMITTED. Each write is one transaction
//! that either locks the rows it depends on (`FOR UPDATE`, a fenced
//! `UPDATE`), relies on a unique constraint (`ON CONFLICT`), or takes a
//! transaction-scoped advisory lock on the key it decides about (an
//! idempotency key, a workflow's next version). See `work` for the claims
//! and the inbox.
//!
//! The driver is sqlx: an async pure-Rust driver with its own pool, TLS by
//! rustls with libpq's `sslmode` values (`disable` to `verify-full`,
//! `sslrootcert`) and LISTEN/NOTIFY. The database URL is libpq's
//! (`postgres://user:password@host:port/db?sslmode=require&options=-c%20search_path%3Dstephost`).
//!
//! This module must not decide policy: it stores and finds what the engine
//! and the API hand it.

mod audit;
mod create;
mod deliveries;
mod hints;
mod nodes;
mod rows;
mod schedules;
mod schema;
mod tenants;
mod url;
mod work;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool};

use self::rows::{
    Arg, Listing, finish, load_execution, load_steps, load_workflow, lock_key, workflow_of,
};
use self::url::{check_schema_name, quote_ident};
pub use self::url::{is_postgres_url, redact_url};

use super::codec::{column, decode_execution, decode_schedule, nanos, to_json};
use super::{
    ClaimRound, Commit, Created, Credential, Error, ExecutionFilter, Fairness, Heartbeat, Held,
    Hint, Idempotency, Lease, Next, NodeRecord, Page, Result, ScheduleFilter, SchedulePage,
    ScheduleWrite, Sent, StepRecord, StepVersion, Store, Tenant, TenantPage, Token, TokenHash,
    WorkflowRecord,
};
use crate::model::{
    BatchId, BatchMember, Digest, Event, Execution, ExecutionId, NewEvent, NodeId, Quotas,
    Schedule, ScheduleId, StepName, TenantId, Timestamp, Usage, WorkflowId,
};

/// How a store connects.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a query waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// A schema to create (if missing) and put first on the search path;
    /// `None` uses the URL's (by default `public`).
    pub schema: Option<String>,
    /// Whether to exchange hints with the other nodes by `LISTEN/NOTIFY`
    /// (see [`Store::hints`]). Off, nodes find each other's work by polling
    /// only: for poolers that do not pass notifications on.
    pub notifications: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            schema: None,
            notifications: true,
        }
    }
}

/// The PostgreSQL implementation of [`Store`].
pub struct PostgresStore {
    pool: PgPool,
    /// Hints to and from the other nodes, unless notifications are off.
    hints: Option<Arc<hints::Hints>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(h) = &self.hints {
            h.stop();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options = self.pool.connect_options();
        f.debug_struct("PostgresStore")
            .field("host", &options.get_host())
            .field("database", &options.get_database())
            .finish_non_exhaustive()
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolClosed => Self::Closed,
            e => Self::Backend(e.to_string()),
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url`, creates or upgrades the schema
    /// (once, whatever other nodes start at the same time), and returns the
    /// store.
    pub async fn connect(url: &str, settings: &Settings) -> Result<Self> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::Backend(format!("invalid database URL: {e}")))?
            .application_name("stephost");
        if let Some(schema) = &settings.schema {
            check_schema_name(schema)?;
            let mut conn = sqlx::ConnectOptions::connect(&options).await?;
            // Nodes starting at once would race on `IF NOT EXISTS`; the
            // advisory lock makes them create the schema one at a time.
            let mut tx = sqlx::Connection::begin(&mut conn).await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("stephost schema {schema}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(schema)
            )))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            sqlx::Connection::close(conn).await?;
            options = options.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let schema = schema::migrate(&pool).await?;
        let hints =
            if settings.notifications {
                Some(hints::Hints::start(&pool, &options, &schema).await.map_err(|e| {
                Error::Backend(format!(
                    "cannot listen for notifications from the other nodes ({e}); behind a \
                     pooler that does not pass LISTEN/NOTIFY on, set \
                     `database-notifications = false`"
                ))
            })?)
            } else {
                None
            };
        Ok(Self { pool, hints })
    }

    /// Tells the other nodes, if notifications are on.
    fn hint(&self, hint: Hint) {
        if let Some(h) = &self.hints {
            h.send(hint);
        }
    }

    /// Runs a `DELETE` of one tenant's row by its key (`$1`, `$2`):
    /// whether there was one.
    async fn delete(&self, sql: &'static str, tenant: &TenantId, key: &str) -> Result<bool> {
        let done = sqlx::query(sql)
            .bind(tenant.as_str())
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(h) = &self.hints {
            h.stop();
        }
        self.pool.close().await;
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_tenant(&self, tenant: &Tenant, token: &Token, hash: TokenHash) -> Result<()> {
        tenants::create_tenant(&self.pool, tenant, token, &hash).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        tenants::load_tenant(&self.pool, "id", id.as_str()).await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        tenants::load_tenant(&self.pool, "name", name).await
    }

    async fn tenants(&self, limit: u32, cursor: Option<&str>) -> Result<TenantPage> {
        tenants::tenants(&self.pool, limit, cursor).await
    }

    async fn suspend_tenant(&self, id: &TenantId, at: Option<Timestamp>) -> Result<Option<Tenant>> {
        let tenant = tenants::suspend_tenant(&self.pool, id.as_str(), at).await?;
        if at.is_none() && tenant.is_some() {
            // Its executions are back on the claim path.
            self.hint(Hint::Work);
            self.hint(Hint::Schedules);
        }
        Ok(tenant)
    }

    async fn set_egress(
        &self,
        id: &TenantId,
        egress: &[crate::model::HostPattern],
    ) -> Result<Option<Tenant>> {
        tenants::set_egress(&self.pool, id.as_str(), egress).await
    }

    async fn set_quotas(&self, id: &TenantId, quotas: &Quotas) -> Result<Option<Tenant>> {
        tenants::set_quotas(&self.pool, id.as_str(), quotas).await
    }

    async fn usage(&self, id: &TenantId) -> Result<Usage> {
        tenants::usage(&self.pool, id.as_str()).await
    }

    async fn add_audit(&self, entry: &super::audit::NewAudit) -> Result<()> {
        audit::add(&self.pool, entry).await
    }

    async fn audit(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<super::audit::AuditPage> {
        audit::page(&self.pool, tenant.map(TenantId::as_str), limit, cursor).await
    }

    async fn running_count(&self, tenant: &TenantId) -> Result<u64> {
        tenants::running_count(&self.pool, tenant.as_str()).await
    }

    async fn queued_count(&self, tenant: &TenantId) -> Result<u64> {
        tenants::queued_count(&self.pool, tenant.as_str()).await
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool> {
        tenants::delete_tenant(&self.pool, id.as_str()).await
    }

    async fn add_token(&self, token: &Token, hash: TokenHash) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let result = tenants::insert_token(&mut tx, token, &hash).await;
        finish(tx, result).await
    }

    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<Credential>> {
        tenants::authenticate(&self.pool, hash).await
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<Token>> {
        tenants::tokens(&self.pool, tenant).await
    }

    async fn revoke_token(
        &self,
        tenant: Option<&TenantId>,
        id: &str,
        at: Timestamp,
    ) -> Result<bool> {
        tenants::revoke_token(&self.pool, tenant, id, at).await
    }

    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO components (digest, bytes) VALUES ($1, $2)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest.to_string())
        .bind(bytes)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn component(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM components WHERE digest = $1")
                .bind(digest.to_string())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn put_step_version(
        &self,
        tenant: &TenantId,
        name: &StepName,
        version: &StepVersion,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO step_versions
                 (tenant_id, name, digest, size_bytes, imports, compile_ms, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant_id, name, digest) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(name.as_str())
        .bind(version.digest.to_string())
        .bind(column(version.size_bytes))
        .bind(to_json(&version.imports)?)
        .bind(column(version.compile_ms))
        .bind(version.created_at.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn step(&self, tenant: &TenantId, name: &StepName) -> Result<Option<StepRecord>> {
        Ok(load_steps(&self.pool, tenant, Some(name.as_str()))
            .await?
            .pop())
    }

    async fn steps(&self, tenant: &TenantId) -> Result<Vec<StepRecord>> {
        load_steps(&self.pool, tenant, None).await
    }

    async fn delete_step(&self, tenant: &TenantId, name: &StepName) -> Result<bool> {
        self.delete(
            "DELETE FROM step_versions WHERE tenant_id = $1 AND name = $2",
            tenant,
            name.as_str(),
        )
        .await
    }

    async fn put_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        definition: &serde_json::Value,
    ) -> Result<WorkflowRecord> {
        let text = to_json(definition)?;
        let mut tx = self.pool.begin().await?;
        let result: Result<WorkflowRecord> = async {
            lock_key(&mut tx, &format!("workflow {tenant} {id}")).await?;
            let latest = load_workflow(&mut *tx, tenant, id, None).await?;
            let version = match latest {
                Some(latest) if &latest.definition == definition && latest.deleted_at.is_none() => {
                    return Ok(latest);
                }
                Some(latest) => latest.version + 1,
                None => 1,
            };
            let created_at = Timestamp::now();
            sqlx::query(
                "INSERT INTO workflows (tenant_id, workflow_id, version, definition, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(i64::from(version))
            .bind(text)
            .bind(created_at.to_string())
            .execute(&mut *tx)
            .await?;
            Ok(WorkflowRecord {
                workflow_id: id.clone(),
                version,
                definition: definition.clone(),
                created_at,
                deleted_at: None,
            })
        }
        .await;
        finish(tx, result).await
    }

    async fn workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        load_workflow(&self.pool, tenant, id, version).await
    }

    async fn workflow_with_steps(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<(WorkflowRecord, Vec<StepRecord>)>> {
        rows::load_workflow_with_steps(&self.pool, tenant, id, version).await
    }

    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowRecord>> {
        let rows: Vec<(String, i64, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT DISTINCT ON (workflow_id)
                    workflow_id, version, definition, created_at, deleted_ns
             FROM workflows WHERE tenant_id = $1
             ORDER BY workflow_id, version DESC",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, v, definition, created_at, deleted)| {
                workflow_of(
                    &WorkflowId::new_unchecked(id),
                    (v, definition, created_at, deleted),
                )
            })
            .collect()
    }

    async fn delete_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        at: Timestamp,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE workflows SET deleted_ns = $3
             WHERE tenant_id = $1 AND workflow_id = $2 AND deleted_ns IS NULL",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(nanos(at))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_execution(
        &self,
        execution: &Execution,
        idempotency: Option<&Idempotency>,
        lease: Option<&Lease>,
    ) -> Result<Created> {
        let created = create::create(
            &self.pool,
            std::slice::from_ref(execution),
            idempotency,
            lease,
        )
        .await?;
        if created == Created::New && lease.is_none() {
            self.hint(Hint::Work);
        }
        Ok(created)
    }

    async fn create_batch(
        &self,
        executions: &[Execution],
        idempotency: Option<&Idempotency>,
    ) -> Result<Created> {
        let created = create::create(&self.pool, executions, idempotency, None).await?;
        if created == Created::New {
            self.hint(Hint::Work);
        }
        Ok(created)
    }

    async fn batch(&self, tenant: &TenantId, batch: &BatchId) -> Result<Vec<BatchMember>> {
        create::batch(&self.pool, tenant, batch).await
    }

    async fn claim_due(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        work::claim_due(&self.pool, lease, now, limit).await
    }

    async fn claim_round(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
        fair: &Fairness,
    ) -> Result<ClaimRound> {
        work::claim_round(&self.pool, lease, now, limit, fair).await
    }

    async fn claim_execution(
        &self,
        lease: &Lease,
        now: Timestamp,
        tenant: &TenantId,
        id: &ExecutionId,
    ) -> Result<Option<Execution>> {
        work::claim_execution(&self.pool, lease, now, tenant, id).await
    }

    async fn commit_execution(&self, commit: Commit<'_>) -> Result<u64> {
        let id = commit.execution.execution_id.clone();
        let schedule = commit.execution.schedule_id.is_some() && commit.next == Next::Finish;
        // Parked due now: handed back (a node shutting down), for any node.
        let due = matches!(commit.next, Next::Park { wake_at } if wake_at <= Timestamp::now());
        let version = work::commit(&self.pool, commit).await?;
        self.hint(Hint::Committed(id, version));
        if due {
            self.hint(Hint::Work);
        }
        if schedule {
            // A buffered tick may wait for this execution to end.
            self.hint(Hint::Schedules);
        }
        Ok(version)
    }

    async fn renew_leases(&self, lease: &Lease, ids: &[ExecutionId]) -> Result<Vec<Held>> {
        work::renew_leases(&self.pool, lease, ids).await
    }

    async fn release_leases(&self, owner: &NodeId, now: Timestamp) -> Result<u64> {
        let released = work::release_leases(&self.pool, owner, now).await?;
        if released > 0 {
            self.hint(Hint::Work);
        }
        Ok(released)
    }

    async fn next_wake_at(&self, owner: &NodeId) -> Result<Option<Timestamp>> {
        work::next_wake_at(&self.pool, owner).await
    }

    async fn send_event(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        event: &NewEvent,
    ) -> Result<Sent> {
        let sent = work::send_event(&self.pool, tenant, id, event).await?;
        if matches!(sent, Sent::Stored(_)) {
            self.hint(Hint::Event(id.clone()));
        }
        Ok(sent)
    }

    async fn events(&self, id: &ExecutionId, after: u64) -> Result<Vec<Event>> {
        work::events(&self.pool, id, after).await
    }

    async fn execution(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Option<Execution>> {
        load_execution(&self.pool, tenant.as_str(), id.as_str()).await
    }

    async fn executions(
        &self,
        tenant: &TenantId,
        filter: &ExecutionFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page> {
        let mut listing = Listing::new("executions", tenant, cursor)?;
        if let Some(status) = filter.status {
            listing.and("status =", Arg::Text(status.as_str().to_owned()));
        }
        if let Some(workflow) = &filter.workflow_id {
            listing.and("workflow_id =", Arg::Text(workflow.as_str().to_owned()));
        }
        if let Some(after) = filter.created_after {
            listing.and("created_ns >", Arg::Int(nanos(after)));
        }
        if let Some(before) = filter.created_before {
            listing.and("created_ns <", Arg::Int(nanos(before)));
        }
        if let Some(schedule) = &filter.schedule_id {
            listing.and("schedule_id =", Arg::Text(schedule.as_str().to_owned()));
        }
        if let Some(batch) = &filter.batch_id {
            listing.and("batch_id =", Arg::Text(batch.as_str().to_owned()));
        }
        let (rows, next_cursor) = listing.run(&self.pool, limit).await?;
        let items = rows
            .iter()
            .map(|(doc, v)| decode_execution(tenant.as_str(), doc, *v))
            .collect::<Result<_>>()?;
        Ok(Page { items, next_cursor })
    }

    async fn create_schedule(&self, schedule: &Schedule, wake_at: Option<Timestamp>) -> Result<()> {
        schedules::create(&self.pool, schedule, wake_at).await?;
        self.hint(Hint::Schedules);
        Ok(())
    }

    async fn schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<Option<Schedule>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT doc, version FROM schedules WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(doc, v)| decode_schedule(tenant.as_str(), &doc, v))
            .transpose()
    }

    async fn schedules(
        &self,
        tenant: &TenantId,
        filter: &ScheduleFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<SchedulePage> {
        let mut listing = Listing::new("schedules", tenant, cursor)?;
        if let Some(workflow) = &filter.workflow_id {
            listing.and("workflow_id =", Arg::Text(workflow.as_str().to_owned()));
        }
        if let Some(state) = filter.state {
            listing.and("state =", Arg::Text(state.as_str().to_owned()));
        }
        let (rows, next_cursor) = listing.run(&self.pool, limit).await?;
        let items = rows
            .iter()
            .map(|(doc, v)| decode_schedule(tenant.as_str(), doc, *v))
            .collect::<Result<_>>()?;
        Ok(SchedulePage { items, next_cursor })
    }

    async fn write_schedule(&self, write: ScheduleWrite<'_>) -> Result<Option<u64>> {
        let unleased = write.start.as_ref().is_some_and(|s| s.lease.is_none());
        let written = schedules::write(&self.pool, write).await?;
        if written.is_some() {
            self.hint(Hint::Schedules);
            if unleased {
                self.hint(Hint::Work);
            }
        }
        Ok(written)
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<bool> {
        self.delete(
            "DELETE FROM schedules WHERE tenant_id = $1 AND id = $2",
            tenant,
            id.as_str(),
        )
        .await
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
        schedules::due(&self.pool, now, limit).await
    }

    async fn next_schedule_at(&self) -> Result<Option<Timestamp>> {
        schedules::next_wake(&self.pool).await
    }

    async fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO secrets (tenant_id, name, sealed) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, name) DO UPDATE SET sealed = excluded.sealed",
        )
        .bind(tenant.as_str())
        .bind(name)
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn secret_names(&self, tenant: &TenantId) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT name FROM secrets WHERE tenant_id = $1 ORDER BY name")
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        self.delete(
            "DELETE FROM secrets WHERE tenant_id = $1 AND name = $2",
            tenant,
            name,
        )
        .await
    }

    async fn secrets(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let found: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT name, sealed FROM secrets WHERE tenant_id = $1 AND name = ANY($2)",
        )
        .bind(tenant.as_str())
        .bind(names)
        .fetch_all(&self.pool)
        .await?;
        // In the order asked, as the SQLite backend answers.
        let mut found: std::collections::HashMap<String, Vec<u8>> = found.into_iter().collect();
        Ok(names
            .iter()
            .filter_map(|n| found.remove(n).map(|s| (n.clone(), s)))
            .collect())
    }

    async fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<()> {
        nodes::heartbeat(&self.pool, beat).await
    }

    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeRecord>> {
        nodes::nodes(&self.pool, now).await
    }

    async fn forget_nodes(&self, before: Timestamp) -> Result<u64> {
        nodes::forget(&self.pool, before).await
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64> {
        work::purge_finished(&self.pool, before, limit).await
    }

    async fn claim_deliveries(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::model::DueDelivery>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        deliveries::claim(&self.pool, lease, nanos(now), limit).await
    }

    async fn record_delivery(
        &self,
        owner: &NodeId,
        delivery_id: &str,
        attempt: &crate::model::DeliveryAttempt,
        next: super::DeliveryNext,
    ) -> Result<bool> {
        deliveries::record(&self.pool, owner.as_str(), delivery_id, attempt, next).await
    }

    async fn deliveries(&self, id: &ExecutionId) -> Result<Vec<crate::model::Delivery>> {
        deliveries::list(&self.pool, id.as_str()).await
    }

    async fn retry_delivery(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<Option<crate::model::Delivery>> {
        deliveries::retry(
            &self.pool,
            tenant.as_str(),
            id.as_str(),
            delivery_id,
            nanos(now),
        )
        .await
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        let next = deliveries::next_due(&self.pool).await?;
        next.map(super::codec::from_nanos).transpose()
    }

    async fn webhook_secret(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::model::WebhookSecret>> {
        deliveries::secret(&self.pool, tenant.as_str()).await
    }

    async fn put_webhook_secret(
        &self,
        tenant: &TenantId,
        secret: &crate::model::WebhookSecret,
        expected: Option<Timestamp>,
    ) -> Result<crate::model::WebhookSecret> {
        deliveries::put_secret(&self.pool, tenant.as_str(), secret, expected.map(nanos)).await
    }

    fn hints(&self) -> Option<tokio::sync::broadcast::Receiver<Hint>> {
        self.hints.as_ref().map(|h| h.subscribe())
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
