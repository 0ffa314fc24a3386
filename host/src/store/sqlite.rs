//! The SQLite backend: one database file in WAL mode, one writer thread that
//! commits writes in groups, and a small pool of read-only connections.
//!
//! Every write is a closure run on the writer thread (see `connections`), so
//! a write's checks and changes are atomic with respect to all other writes:
//! idempotency keys and workflow versions need no further locking. Reads run
//! on blocking threads against read-only connections.
//!
//! This module must not decide policy (what a status means, when to retry,
//! which limits apply): it stores and finds what the engine and the API hand
//! it.

mod audit;
mod connections;
mod deliveries;
mod nodes;
mod rows;
mod schedules;
mod schema;
mod secrets;
mod tenants;
mod work;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::connections::{Readers, Writer};
use self::rows::{
    ExecutionRow, decode_cursor, decode_execution, encode_cursor, load_execution, load_steps,
    load_workflow, nanos, to_json, workflow_row,
};
use super::{
    ClaimRound, Commit, Created, Credential, Error, ExecutionFilter, Fairness, Heartbeat, Held,
    Idempotency, Lease, NodeRecord, Page, Result, ScheduleFilter, SchedulePage, ScheduleWrite,
    Sent, StepRecord, StepVersion, Store, Tenant, TenantPage, Token, TokenHash, WorkflowRecord,
};
use crate::model::{
    BatchId, BatchMember, Digest, Event, Execution, ExecutionId, NewEvent, NodeId, Quotas,
    Schedule, ScheduleId, StepName, TenantId, Timestamp, Usage, WorkflowId,
};

/// How hard SQLite works to keep each commit (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, not power loss.
    Normal,
    /// No fsync at all: for benchmarks and throwaway data.
    Off,
}

/// The SQLite implementation of [`Store`].
///
/// Dropping it closes the write channel and waits for the writer thread to
/// commit the writes already sent.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Backend(e.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, brings its schema
    /// up to date and starts the writer thread.
    pub fn open(path: &Path, durability: Durability) -> Result<Self> {
        // The writer goes first: it sets WAL mode and creates the schema the
        // read-only connections rely on.
        let writer = Writer::start(path, durability)?;
        let readers = Arc::new(Readers::open(path)?);
        Ok(Self {
            path: path.to_owned(),
            writer,
            readers,
        })
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, tenant: &Tenant, token: &Token, hash: TokenHash) -> Result<()> {
        let (tenant, token) = (tenant.clone(), token.clone());
        self.writer
            .run(move |conn| tenants::create_tenant(conn, &tenant, &token, &hash))
            .await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>> {
        let id = id.clone();
        self.readers
            .run(move |conn| tenants::load_tenant(conn, "id", id.as_str()))
            .await
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        let name = name.to_owned();
        self.readers
            .run(move |conn| tenants::load_tenant(conn, "name", &name))
            .await
    }

    async fn tenants(&self, limit: u32, cursor: Option<&str>) -> Result<TenantPage> {
        let cursor = cursor.map(str::to_owned);
        self.readers
            .run(move |conn| tenants::tenants(conn, limit, cursor.as_deref()))
            .await
    }

    async fn suspend_tenant(&self, id: &TenantId, at: Option<Timestamp>) -> Result<Option<Tenant>> {
        let id = id.clone();
        self.writer
            .run(move |conn| tenants::suspend_tenant(conn, id.as_str(), at))
            .await
    }

    async fn set_egress(
        &self,
        id: &TenantId,
        egress: &[crate::model::HostPattern],
    ) -> Result<Option<Tenant>> {
        let (id, egress) = (id.clone(), egress.to_vec());
        self.writer
            .run(move |conn| tenants::set_egress(conn, id.as_str(), &egress))
            .await
    }

    async fn set_quotas(&self, id: &TenantId, quotas: &Quotas) -> Result<Option<Tenant>> {
        let (id, quotas) = (id.clone(), quotas.clone());
        self.writer
            .run(move |conn| tenants::set_quotas(conn, id.as_str(), &quotas))
            .await
    }

    async fn usage(&self, id: &TenantId) -> Result<Usage> {
        let id = id.clone();
        self.readers
            .run(move |conn| tenants::usage(conn, id.as_str()))
            .await
    }

    async fn add_audit(&self, entry: &super::audit::NewAudit) -> Result<()> {
        let entry = entry.clone();
        self.writer.run(move |conn| audit::add(conn, &entry)).await
    }

    async fn audit(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<super::audit::AuditPage> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let cursor = cursor.map(str::to_owned);
        self.readers
            .run(move |conn| audit::page(conn, tenant.as_deref(), limit, cursor.as_deref()))
            .await
    }

    async fn running_count(&self, tenant: &TenantId) -> Result<u64> {
        let id = tenant.clone();
        self.readers
            .run(move |conn| tenants::running_count(conn, id.as_str()))
            .await
    }

    async fn queued_count(&self, tenant: &TenantId) -> Result<u64> {
        let id = tenant.clone();
        self.readers
            .run(move |conn| tenants::queued_count(conn, id.as_str()))
            .await
    }

    async fn delete_tenant(&self, id: &TenantId) -> Result<bool> {
        let id = id.clone();
        self.writer
            .run(move |conn| tenants::delete_tenant(conn, id.as_str()))
            .await
    }

    async fn add_token(&self, token: &Token, hash: TokenHash) -> Result<()> {
        let token = token.clone();
        self.writer
            .run(move |conn| tenants::insert_token(conn, &token, &hash))
            .await
    }

    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<Credential>> {
        let hash = *hash;
        self.readers
            .run(move |conn| tenants::authenticate(conn, &hash))
            .await
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<Token>> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.readers
            .run(move |conn| tenants::tokens(conn, tenant.as_deref()))
            .await
    }

    async fn revoke_token(
        &self,
        tenant: Option<&TenantId>,
        id: &str,
        at: Timestamp,
    ) -> Result<bool> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        let id = id.to_owned();
        self.writer
            .run(move |conn| tenants::revoke_token(conn, tenant.as_deref(), &id, at))
            .await
    }

    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let digest = digest.to_string();
        let bytes = bytes.to_vec();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO components (digest, bytes) VALUES (?1, ?2)
                 ON CONFLICT (digest) DO NOTHING",
                )?
                .execute(params![digest, bytes])?;
                Ok(())
            })
            .await
    }

    async fn component(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let digest = digest.to_string();
        self.readers
            .run(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT bytes FROM components WHERE digest = ?1")?
                    .query_row([digest], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    async fn put_step_version(
        &self,
        tenant: &TenantId,
        name: &StepName,
        version: &StepVersion,
    ) -> Result<()> {
        let tenant = tenant.clone();
        let name = name.clone();
        let digest = version.digest.to_string();
        let imports = to_json(&version.imports)?;
        let (size_bytes, compile_ms) = (version.size_bytes, version.compile_ms);
        let created_at = version.created_at.to_string();
        self.writer
            .run(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO step_versions
                     (tenant_id, name, digest, size_bytes, imports, compile_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant_id, name, digest) DO NOTHING",
                )?
                .execute(params![
                    tenant.as_str(),
                    name.as_str(),
                    digest,
                    size_bytes,
                    imports,
                    compile_ms,
                    created_at
                ])?;
                Ok(())
            })
            .await
    }

    async fn step(&self, tenant: &TenantId, name: &StepName) -> Result<Option<StepRecord>> {
        let tenant = tenant.clone();
        let name = name.clone();
        self.readers
            .run(move |conn| Ok(load_steps(conn, tenant.as_str(), Some(name.as_str()))?.pop()))
            .await
    }

    async fn steps(&self, tenant: &TenantId) -> Result<Vec<StepRecord>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| load_steps(conn, tenant.as_str(), None))
            .await
    }

    async fn delete_step(&self, tenant: &TenantId, name: &StepName) -> Result<bool> {
        let tenant = tenant.clone();
        let name = name.clone();
        self.writer
            .run(move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM step_versions WHERE tenant_id = ?1 AND name = ?2")?
                    .execute(params![tenant.as_str(), name.as_str()])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn put_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        definition: &serde_json::Value,
    ) -> Result<WorkflowRecord> {
        let tenant = tenant.clone();
        let id = id.clone();
        let definition = definition.clone();
        let text = to_json(&definition)?;
        self.writer
            .run(move |conn| {
                let latest = load_workflow(conn, tenant.as_str(), id.as_str(), None)?;
                let version = match latest {
                    Some(latest)
                        if latest.definition == definition && latest.deleted_at.is_none() =>
                    {
                        return Ok(latest);
                    }
                    Some(latest) => latest.version + 1,
                    None => 1,
                };
                let created_at = Timestamp::now();
                conn.prepare_cached(
                "INSERT INTO workflows (tenant_id, workflow_id, version, definition, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                tenant.as_str(),
                id.as_str(),
                version,
                text,
                created_at.to_string()
            ])?;
                Ok(WorkflowRecord {
                    workflow_id: id,
                    version,
                    definition,
                    created_at,
                    deleted_at: None,
                })
            })
            .await
    }

    async fn workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        let tenant = tenant.clone();
        let id = id.clone();
        self.readers
            .run(move |conn| load_workflow(conn, tenant.as_str(), id.as_str(), version))
            .await
    }

    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowRecord>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT workflow_id, version, definition, created_at, deleted_ns FROM workflows AS w
                 WHERE tenant_id = ?1 AND version = (
                     SELECT MAX(version) FROM workflows
                     WHERE tenant_id = w.tenant_id AND workflow_id = w.workflow_id)
                 ORDER BY workflow_id",
                )?;
                let rows = stmt.query_map([tenant.as_str()], workflow_row)?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })
            .await
    }

    async fn delete_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        at: Timestamp,
    ) -> Result<bool> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .run(move |conn| {
                let deleted = conn
                    .prepare_cached(
                        "UPDATE workflows SET deleted_ns = ?3
                         WHERE tenant_id = ?1 AND workflow_id = ?2 AND deleted_ns IS NULL",
                    )?
                    .execute(params![tenant.as_str(), id.as_str(), nanos(at)])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn create_execution(
        &self,
        execution: &Execution,
        idempotency: Option<&Idempotency>,
        lease: Option<&Lease>,
    ) -> Result<Created> {
        let row = ExecutionRow::of(execution)?;
        let idempotency = idempotency.cloned();
        let lease = lease.cloned();
        self.writer
            .run(move |conn| rows::create(conn, &[row], idempotency.as_ref(), lease.as_ref()))
            .await
    }

    async fn create_batch(
        &self,
        executions: &[Execution],
        idempotency: Option<&Idempotency>,
    ) -> Result<Created> {
        let rows = executions
            .iter()
            .map(ExecutionRow::of)
            .collect::<Result<Vec<_>>>()?;
        let idempotency = idempotency.cloned();
        self.writer
            .run(move |conn| rows::create(conn, &rows, idempotency.as_ref(), None))
            .await
    }

    async fn batch(&self, tenant: &TenantId, batch: &BatchId) -> Result<Vec<BatchMember>> {
        let (tenant, batch) = (tenant.clone(), batch.clone());
        self.readers
            .run(move |conn| rows::batch(conn, tenant.as_str(), batch.as_str()))
            .await
    }

    async fn claim_due(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        let lease = lease.clone();
        self.writer
            .run(move |conn| work::claim_due(conn, &lease, now, limit, &Fairness::default()))
            .await
    }

    async fn claim_round(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
        fair: &Fairness,
    ) -> Result<ClaimRound> {
        let (lease, fair) = (lease.clone(), *fair);
        self.writer
            .run(move |conn| work::claim_round(conn, &lease, now, limit, &fair))
            .await
    }

    async fn claim_execution(
        &self,
        lease: &Lease,
        now: Timestamp,
        tenant: &TenantId,
        id: &ExecutionId,
    ) -> Result<Option<Execution>> {
        let (lease, tenant, id) = (lease.clone(), tenant.clone(), id.clone());
        self.writer
            .run(move |conn| work::claim_execution(conn, &lease, now, &tenant, &id))
            .await
    }

    async fn commit_execution(&self, commit: Commit<'_>) -> Result<u64> {
        let change = work::Change::of(&commit)?;
        self.writer.run(move |conn| change.apply(conn)).await
    }

    async fn renew_leases(&self, lease: &Lease, ids: &[ExecutionId]) -> Result<Vec<Held>> {
        let (lease, ids) = (lease.clone(), ids.to_vec());
        self.writer
            .run(move |conn| work::renew_leases(conn, &lease, &ids))
            .await
    }

    async fn release_leases(&self, owner: &NodeId, now: Timestamp) -> Result<u64> {
        let owner = owner.clone();
        self.writer
            .run(move |conn| work::release_leases(conn, &owner, now))
            .await
    }

    async fn next_wake_at(&self, owner: &NodeId) -> Result<Option<Timestamp>> {
        let owner = owner.clone();
        self.readers
            .run(move |conn| work::next_wake_at(conn, &owner))
            .await
    }

    async fn send_event(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        event: &NewEvent,
    ) -> Result<Sent> {
        let (tenant, id, event) = (tenant.clone(), id.clone(), event.clone());
        let payload = event.payload.as_ref().map(to_json).transpose()?;
        self.writer
            .run(move |conn| work::send_event(conn, &tenant, &id, &event, payload.as_deref()))
            .await
    }

    async fn events(&self, id: &ExecutionId, after: u64) -> Result<Vec<Event>> {
        let id = id.clone();
        self.readers
            .run(move |conn| work::events(conn, &id, after))
            .await
    }

    async fn execution(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Option<Execution>> {
        let tenant = tenant.clone();
        let id = id.clone();
        self.readers
            .run(move |conn| load_execution(conn, tenant.as_str(), id.as_str()))
            .await
    }

    async fn executions(
        &self,
        tenant: &TenantId,
        filter: &ExecutionFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page> {
        // Each filter adds a condition; the few shapes this yields are all
        // kept in the statement cache.
        let mut sql = String::from("SELECT seq, doc, version FROM executions WHERE tenant_id = ?");
        let mut args = vec![Value::Text(tenant.as_str().to_owned())];
        let mut condition = |clause: &str, arg: Value| {
            sql.push_str(clause);
            args.push(arg);
        };
        if let Some(before) = cursor.map(decode_cursor).transpose()? {
            condition(" AND seq < ?", Value::Integer(before));
        }
        if let Some(status) = filter.status {
            condition(" AND status = ?", Value::Text(status.as_str().to_owned()));
        }
        if let Some(workflow) = &filter.workflow_id {
            condition(
                " AND workflow_id = ?",
                Value::Text(workflow.as_str().to_owned()),
            );
        }
        if let Some(after) = filter.created_after {
            condition(" AND created_ns > ?", Value::Integer(nanos(after)));
        }
        if let Some(before) = filter.created_before {
            condition(" AND created_ns < ?", Value::Integer(nanos(before)));
        }
        if let Some(schedule) = &filter.schedule_id {
            condition(
                " AND schedule_id = ?",
                Value::Text(schedule.as_str().to_owned()),
            );
        }
        if let Some(batch) = &filter.batch_id {
            condition(" AND batch_id = ?", Value::Text(batch.as_str().to_owned()));
        }
        // One row more than asked tells whether another page exists.
        let limit = limit.max(1);
        condition(
            " ORDER BY seq DESC LIMIT ?",
            Value::Integer(i64::from(limit) + 1),
        );
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&sql)?;
                let mut rows = stmt.query(params_from_iter(args))?;
                let mut items = Vec::new();
                let mut last = None;
                while let Some(row) = rows.next()? {
                    if items.len() == limit as usize {
                        return Ok(Page {
                            items,
                            next_cursor: last.map(encode_cursor),
                        });
                    }
                    last = Some(row.get::<_, i64>(0)?);
                    items.push(decode_execution(
                        tenant.as_str(),
                        &row.get::<_, String>(1)?,
                        row.get(2)?,
                    )?);
                }
                Ok(Page {
                    items,
                    next_cursor: None,
                })
            })
            .await
    }

    async fn create_schedule(&self, schedule: &Schedule, wake_at: Option<Timestamp>) -> Result<()> {
        let row = schedules::ScheduleRow::of(schedule, wake_at)?;
        self.writer.run(move |conn| row.insert(conn)).await
    }

    async fn schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<Option<Schedule>> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.readers
            .run(move |conn| schedules::load(conn, tenant.as_str(), id.as_str()))
            .await
    }

    async fn schedules(
        &self,
        tenant: &TenantId,
        filter: &ScheduleFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<SchedulePage> {
        let query = schedules::Listing::of(tenant, filter, limit, cursor)?;
        self.readers.run(move |conn| query.run(conn)).await
    }

    async fn write_schedule(&self, write: ScheduleWrite<'_>) -> Result<Option<u64>> {
        let write = schedules::Write::of(&write)?;
        self.writer.run(move |conn| write.apply(conn)).await
    }

    async fn delete_schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<bool> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .run(move |conn| {
                let deleted = conn
                    .prepare_cached("DELETE FROM schedules WHERE tenant_id = ?1 AND id = ?2")?
                    .execute(params![tenant.as_str(), id.as_str()])?;
                Ok(deleted > 0)
            })
            .await
    }

    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>> {
        self.readers
            .run(move |conn| schedules::due(conn, now, limit))
            .await
    }

    async fn next_schedule_at(&self) -> Result<Option<Timestamp>> {
        self.readers.run(schedules::next_wake).await
    }

    async fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()> {
        let (tenant, name, sealed) = (tenant.clone(), name.to_owned(), sealed.to_vec());
        self.writer
            .run(move |conn| secrets::put(conn, tenant.as_str(), &name, &sealed))
            .await
    }

    async fn secret_names(&self, tenant: &TenantId) -> Result<Vec<String>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| secrets::names(conn, tenant.as_str()))
            .await
    }

    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool> {
        let (tenant, name) = (tenant.clone(), name.to_owned());
        self.writer
            .run(move |conn| secrets::delete(conn, tenant.as_str(), &name))
            .await
    }

    async fn secrets(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let (tenant, names) = (tenant.clone(), names.to_vec());
        self.readers
            .run(move |conn| secrets::sealed(conn, tenant.as_str(), names))
            .await
    }

    async fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<()> {
        let (node, started_at, claim_work, at) =
            (beat.node.clone(), beat.started_at, beat.claim_work, beat.at);
        self.writer
            .run(move |conn| {
                nodes::heartbeat(
                    conn,
                    &Heartbeat {
                        node: &node,
                        started_at,
                        claim_work,
                        at,
                    },
                )
            })
            .await
    }

    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeRecord>> {
        let now = nanos(now);
        self.readers.run(move |conn| nodes::nodes(conn, now)).await
    }

    async fn forget_nodes(&self, before: Timestamp) -> Result<u64> {
        let before = nanos(before);
        self.writer
            .run(move |conn| nodes::forget(conn, before))
            .await
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64> {
        let before = nanos(before);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer
            .run(move |conn| work::purge_finished(conn, before, limit))
            .await
    }

    async fn claim_deliveries(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<crate::model::DueDelivery>> {
        let lease = lease.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.writer
            .run(move |conn| deliveries::claim(conn, &lease, nanos(now), limit))
            .await
    }

    async fn record_delivery(
        &self,
        owner: &NodeId,
        delivery_id: &str,
        attempt: &crate::model::DeliveryAttempt,
        next: super::DeliveryNext,
    ) -> Result<bool> {
        let (owner, id, attempt) = (owner.clone(), delivery_id.to_owned(), attempt.clone());
        self.writer
            .run(move |conn| deliveries::record(conn, owner.as_str(), &id, &attempt, next))
            .await
    }

    async fn deliveries(&self, id: &ExecutionId) -> Result<Vec<crate::model::Delivery>> {
        let id = id.clone();
        self.readers
            .run(move |conn| deliveries::list(conn, id.as_str()))
            .await
    }

    async fn retry_delivery(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<Option<crate::model::Delivery>> {
        let (tenant, id, delivery) = (tenant.clone(), id.clone(), delivery_id.to_owned());
        self.writer
            .run(move |conn| {
                deliveries::retry(conn, tenant.as_str(), id.as_str(), &delivery, nanos(now))
            })
            .await
    }

    async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        let next = self.readers.run(deliveries::next_due).await?;
        next.map(super::codec::from_nanos).transpose()
    }

    async fn webhook_secret(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<crate::model::WebhookSecret>> {
        let tenant = tenant.clone();
        self.readers
            .run(move |conn| deliveries::secret(conn, tenant.as_str()))
            .await
    }

    async fn put_webhook_secret(
        &self,
        tenant: &TenantId,
        secret: &crate::model::WebhookSecret,
        expected: Option<Timestamp>,
    ) -> Result<crate::model::WebhookSecret> {
        let (tenant, secret) = (tenant.clone(), secret.clone());
        self.writer
            .run(move |conn| {
                deliveries::put_secret(conn, tenant.as_str(), &secret, expected.map(nanos))
            })
            .await
    }
}

#[cfg(test)]
mod tests;
