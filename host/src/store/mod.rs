//! Persistence behind one trait, with one module per backend.
//!
//! Everything an execution is lives in one JSON document per execution
//! (`Execution`), plus the indexed columns listing needs (tenant, status,
//! workflow, creation time, a sequence number for cursors). Writes are
//! durable when the returned future resolves: the API acknowledges nothing
//! the store has not committed.
//!
//! The store also owns the work. Each unfinished execution has a `wake_at`
//! (when it is next due), a lease (owner and expiry) and a version. Engines
//! claim due executions under a lease, commit each state change with a
//! version and owner check (fencing: a process that lost its lease cannot
//! overwrite newer state), and park an execution by committing its next
//! `wake_at` and releasing the lease. Events from outside (cancel, signals,
//! pause, resume) go to the execution's inbox in the transaction
//! that makes it due; the driver consumes them in order in the commit that
//! acts on them. Terminal executions have no `wake_at` and leave the claim
//! path.
//!
//! This module knows SQL; it must not know HTTP or wasmtime.

pub mod audit;
mod claims;
mod codec;
#[cfg(test)]
mod conformance;
pub mod postgres;
pub mod sqlite;

use serde::{Deserialize, Serialize};

pub use self::claims::{ClaimRound, Claimed, Commit, DeliveryNext, Fairness, Held, Lease, Next};

use crate::model::{
    BatchId, BatchMember, Delivery, DeliveryAttempt, Digest, DueDelivery, Event, Execution,
    ExecutionId, NewEvent, NodeId, Quotas, Schedule, ScheduleId, ScheduleState, Status, StepName,
    TenantId, Timestamp, Usage, WebhookSecret, WorkflowId,
};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique name is already taken (a tenant name).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The tenant a write is for does not exist (it was deleted meanwhile).
    #[error("tenant {0} does not exist")]
    NoTenant(TenantId),
    /// A listing cursor was not one this store handed out.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// The backend failed.
    #[error("storage failed: {0}")]
    Backend(String),
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
    /// A commit was refused: the execution's version or lease owner is not
    /// the one the committer holds, so another owner has taken it over.
    #[error("execution {0} is no longer held by this owner")]
    LeaseLost(ExecutionId),
}

/// Result alias for store calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its unique name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When the admin suspended it; `None` while it is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<Timestamp>,
    /// The limits the admin set for it (the server's defaults fill in the
    /// rest).
    #[serde(default)]
    pub quotas: Quotas,
    /// The hosts its steps may call over HTTP, which the admin set (empty:
    /// none).
    #[serde(default)]
    pub egress: Vec<crate::model::HostPattern>,
}

/// One page of tenants, oldest first.
#[derive(Debug, Clone)]
pub struct TenantPage {
    /// The tenants.
    pub items: Vec<Tenant>,
    /// Pass this as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A stored token with what authenticating by it needs to know about its
/// tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// The token.
    pub token: Token,
    /// When its tenant was suspended (`None`: active, or an admin token).
    pub suspended_at: Option<Timestamp>,
    /// Its tenant's own quotas (empty for an admin token).
    pub quotas: Quotas,
}

/// The SHA-256 of a bearer token; tokens themselves are never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

/// What a token may do. A token holds one or more; `full` covers the
/// others and `run` covers `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Reads only (`GET`).
    Read,
    /// Reads, plus running executions and acting on them (cancel, pause,
    /// resume, signals); no uploads or other changes.
    Run,
    /// Everything the token's owner may do.
    Full,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Run, Scope::Full];

    /// The scope's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Full => "full",
        }
    }

    /// Whether holding `self` allows what `needed` allows.
    pub fn covers(self, needed: Scope) -> bool {
        self >= needed
    }
}

/// A stored bearer token, without its secret (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its id (`tok_` and a UUIDv7), shown in listings and audit records.
    pub id: String,
    /// The tenant it acts for; `None` for an admin token.
    pub tenant: Option<TenantId>,
    /// A name its creator gave it.
    pub name: Option<String>,
    /// What it may do: at least one scope, sorted, no duplicates.
    pub scopes: Vec<Scope>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working; `None`: never.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl Token {
    /// A fresh token id.
    pub fn generate_id() -> String {
        format!("tok_{}", uuid::Uuid::now_v7().simple())
    }
}

/// One uploaded version of a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepVersion {
    /// The component's digest.
    pub digest: Digest,
    /// Its size.
    pub size_bytes: u64,
    /// What it imports.
    pub imports: Vec<String>,
    /// How long validation and compilation took at upload.
    pub compile_ms: u64,
    /// When it was uploaded.
    pub created_at: Timestamp,
}

/// A registered step with its versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRecord {
    /// Its name.
    pub name: StepName,
    /// Every version, oldest first; the last is the newest.
    pub versions: Vec<StepVersion>,
}

/// One version of a workflow definition.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    /// The workflow's id.
    pub workflow_id: WorkflowId,
    /// Its version, from 1.
    pub version: u32,
    /// The definition as JSON.
    pub definition: serde_json::Value,
    /// When this version was stored.
    pub created_at: Timestamp,
    /// When the workflow was deleted: a deleted version is kept for the
    /// executions that run it, but new runs cannot start it.
    pub deleted_at: Option<Timestamp>,
}

/// What `X-On-Conflict` asks for when an idempotency key was used before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    /// Return the existing execution.
    #[default]
    ReturnExisting,
    /// Refuse if the key was ever used.
    Fail,
    /// Refuse while the earlier execution is queued or running; start a new
    /// one once it has finished.
    FailOnRunning,
}

/// An idempotency key with the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key, scoped to the tenant.
    pub key: String,
    /// A hash of the request body, to catch a key reused for another body.
    pub request_hash: [u8; 32],
    /// What to do if the key was used before.
    pub on_conflict: OnConflict,
}

/// What `create_execution` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The execution was stored.
    New,
    /// The key was used before and the earlier execution is returned.
    Existing(Box<Execution>),
    /// The key was used before and `X-On-Conflict` refuses a new one.
    Conflict(Box<Execution>),
    /// The key was used before with a different request body.
    KeyReused,
}

/// What a node says of itself in a heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    /// The node.
    pub node: &'a NodeId,
    /// When this life of the node started.
    pub started_at: Timestamp,
    /// Whether it claims work (`false`: it serves the API only).
    pub claim_work: bool,
    /// Now.
    pub at: Timestamp,
}

/// A node as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its id.
    pub node_id: NodeId,
    /// When its current life started.
    pub started_at: Timestamp,
    /// Its last heartbeat.
    pub last_heartbeat_at: Timestamp,
    /// Whether it claims work.
    pub claim_work: bool,
    /// How many executions it holds under a lease that has not lapsed.
    pub executions_held: u64,
}

/// A hint from another process sharing the store that something changed.
/// Hints may be lost (a pooler that drops notifications, a reconnect), so
/// whoever acts on one also polls; a hint only makes it sooner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Executions became due: claim.
    Work,
    /// An event reached an execution's inbox: its holder reads it.
    Event(ExecutionId),
    /// An execution committed a new state at this version.
    Committed(ExecutionId, u64),
    /// A schedule changed or became due.
    Schedules,
    /// Hints may have been missed: look at everything again.
    Resync,
}

/// What `send_event` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Sent {
    /// The event is in the inbox with this `seq`, and the execution is due.
    Stored(u64),
    /// An event with the same idempotency key was stored before.
    Duplicate(u64),
    /// The execution has finished; nothing was stored.
    Finished(Status),
    /// No such execution for this tenant.
    NotFound,
}

/// Filters for listing executions.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Created strictly after.
    pub created_after: Option<Timestamp>,
    /// Created strictly before.
    pub created_before: Option<Timestamp>,
    /// Only those started by this schedule.
    pub schedule_id: Option<ScheduleId>,
    /// Only those of this batch run.
    pub batch_id: Option<BatchId>,
}

/// Filters for listing schedules.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFilter {
    /// Only those of this workflow.
    pub workflow_id: Option<WorkflowId>,
    /// Only those in this state.
    pub state: Option<ScheduleState>,
}

/// One page of schedules, newest first.
#[derive(Debug, Clone)]
pub struct SchedulePage {
    /// The schedules.
    pub items: Vec<Schedule>,
    /// Pass this as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// An execution a schedule write starts, in the same transaction.
#[derive(Debug, Clone, Copy)]
pub struct Start<'a> {
    /// The new execution (it carries the schedule's id).
    pub execution: &'a Execution,
    /// Claim it for this holder at once (as `create_execution` does).
    pub lease: Option<&'a Lease>,
    /// The tick it runs for, when a tick (not a trigger) starts it: a tick
    /// starts at most one execution, so a second start for the same tick
    /// refuses the whole write.
    pub tick: Option<Timestamp>,
}

/// A compare-and-set write of a schedule.
#[derive(Debug, Clone, Copy)]
pub struct ScheduleWrite<'a> {
    /// The new state.
    pub schedule: &'a Schedule,
    /// The version the writer read; the write is refused unless it is
    /// still the stored one.
    pub version: u64,
    /// When the schedule is next due (`None`: not until a client changes
    /// it, or a buffered tick's execution ends).
    pub wake_at: Option<Timestamp>,
    /// An execution to store with it.
    pub start: Option<Start<'a>>,
}

/// One page of executions, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    /// The executions.
    pub items: Vec<Execution>,
    /// Pass this as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Persistence for everything the server keeps.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a tenant with its first token (whose `tenant` must be the
    /// tenant's id). Fails with `AlreadyExists` when the name is taken.
    async fn create_tenant(&self, tenant: &Tenant, token: &Token, hash: TokenHash) -> Result<()>;
    /// The tenant with this id.
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    /// The tenant with this name.
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;
    /// A page of tenants, oldest first (by id), after `cursor`.
    async fn tenants(&self, limit: u32, cursor: Option<&str>) -> Result<TenantPage>;
    /// Suspends a tenant at `at` (`Some`), or makes it active again
    /// (`None`); returns the tenant as it is now, or `None` when there is no
    /// such tenant. Suspending an already suspended tenant keeps its first
    /// `suspended_at`.
    ///
    /// While a tenant is suspended nothing of it starts: its unfinished
    /// executions leave the claim path (their leases are released and their
    /// versions bumped, so a driver holding one stops at its next commit or
    /// renewal), executions created for it are stored off the claim path,
    /// and its schedules are not due. Unsuspending puts the executions back
    /// where they were due (a held one: due at once) and its schedules fire
    /// again by their catch-up rules.
    async fn suspend_tenant(&self, id: &TenantId, at: Option<Timestamp>) -> Result<Option<Tenant>>;
    /// Replaces the quotas the admin set for a tenant; returns the tenant
    /// as it is now, or `None` when there is no such tenant.
    async fn set_quotas(&self, id: &TenantId, quotas: &Quotas) -> Result<Option<Tenant>>;
    /// Replaces the hosts a tenant's steps may call (its egress
    /// allowlist); returns the tenant as it is now, or `None` when there is
    /// no such tenant.
    async fn set_egress(
        &self,
        id: &TenantId,
        egress: &[crate::model::HostPattern],
    ) -> Result<Option<Tenant>>;
    /// What a tenant holds now: steps, workflows (not deleted), the bytes
    /// of its step versions' components (each digest once), secrets, and
    /// its queued and running executions.
    async fn usage(&self, id: &TenantId) -> Result<Usage>;
    /// Deletes a tenant with everything it owns: tokens, steps, workflows,
    /// executions with their inboxes and idempotency keys, schedules and
    /// secrets, and the component bytes no other tenant's step uses. A
    /// driver holding one of its executions stops at its next commit or
    /// renewal. False when there is no such tenant.
    async fn delete_tenant(&self, id: &TenantId) -> Result<bool>;
    /// Appends an entry to the audit log.
    async fn add_audit(&self, entry: &audit::NewAudit) -> Result<()>;
    /// A page of the audit log, newest first: one tenant's entries, or
    /// everyone's (`None`). Entries outlive what they are about (a deleted
    /// tenant's stay).
    async fn audit(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<audit::AuditPage>;
    /// Stores a token: a tenant's (the tenant must exist) or, with no
    /// tenant, an admin token.
    async fn add_token(&self, token: &Token, hash: TokenHash) -> Result<()>;
    /// The token with this hash, revoked or expired ones included (the
    /// caller decides and says why). The admin token from configuration is
    /// not stored.
    async fn authenticate(&self, hash: &TokenHash) -> Result<Option<Credential>>;
    /// The tokens of a tenant, or the admin tokens when `tenant` is `None`,
    /// oldest first; revoked ones are left out, expired ones are kept.
    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<Token>>;
    /// Revokes a token of a tenant (or an admin token when `tenant` is
    /// `None`) at `at`. False when it has no such token or the token was
    /// already revoked.
    async fn revoke_token(
        &self,
        tenant: Option<&TenantId>,
        id: &str,
        at: Timestamp,
    ) -> Result<bool>;

    /// Stores a component's bytes (idempotent by digest).
    async fn put_component(&self, digest: &Digest, bytes: &[u8]) -> Result<()>;
    /// A component's bytes.
    async fn component(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;
    /// Adds a version to a step, creating the step if needed. Adding a
    /// digest the step already has changes nothing.
    async fn put_step_version(
        &self,
        tenant: &TenantId,
        name: &StepName,
        version: &StepVersion,
    ) -> Result<()>;
    /// A step with its versions.
    async fn step(&self, tenant: &TenantId, name: &StepName) -> Result<Option<StepRecord>>;
    /// Every step of a tenant, by name.
    async fn steps(&self, tenant: &TenantId) -> Result<Vec<StepRecord>>;
    /// Deletes a step and its versions; `false` if there was none. Component
    /// bytes stay, so executions pinned to a digest still run.
    async fn delete_step(&self, tenant: &TenantId, name: &StepName) -> Result<bool>;

    /// Stores a new version of a workflow unless the definition equals the
    /// latest one; returns the version that holds the definition.
    async fn put_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        definition: &serde_json::Value,
    ) -> Result<WorkflowRecord>;
    /// A workflow version (`None` = latest).
    async fn workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>>;
    /// What a submission resolves against, in one read where the backend
    /// can: a workflow version (`None` = latest; deleted or not) and every
    /// registered step its definition names (`steps[].step`, without an
    /// `@digest` pin), by name. A named step that is not registered is
    /// absent.
    async fn workflow_with_steps(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<(WorkflowRecord, Vec<StepRecord>)>> {
        let Some(workflow) = self.workflow(tenant, id, version).await? else {
            return Ok(None);
        };
        let mut steps = Vec::new();
        for name in codec::step_names(&workflow.definition) {
            if let Ok(name) = name.parse::<StepName>()
                && let Some(step) = self.step(tenant, &name).await?
            {
                steps.push(step);
            }
        }
        Ok(Some((workflow, steps)))
    }
    /// The latest version of every workflow of a tenant, by id (deleted
    /// ones included, with their `deleted_at`).
    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowRecord>>;
    /// Marks every version of a workflow deleted at `at`; `false` if it has
    /// none or was deleted already. The versions stay readable by exact
    /// version; the next `put_workflow` stores a new version.
    async fn delete_workflow(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        at: Timestamp,
    ) -> Result<bool>;

    /// Stores a new execution at version 1, due at its `created_at`,
    /// applying the idempotency rules atomically: concurrent identical
    /// requests create exactly one execution. With `lease`, the new
    /// execution is claimed by its holder in the same transaction.
    async fn create_execution(
        &self,
        execution: &Execution,
        idempotency: Option<&Idempotency>,
        lease: Option<&Lease>,
    ) -> Result<Created>;
    /// Stores the executions of a batch run at version 1, in the order
    /// given, all of them or none, each due at its `created_at` (a
    /// postponed one at its `scheduled_for`) and none claimed. With
    /// `idempotency` the key points at the first: a repeat of the same
    /// request returns it as [`Created::Existing`] (its `batch_id` finds
    /// the rest) under the rules of [`Store::create_execution`].
    async fn create_batch(
        &self,
        executions: &[Execution],
        idempotency: Option<&Idempotency>,
    ) -> Result<Created>;
    /// The executions of a tenant's batch that are kept, in the order they
    /// were created; empty for no such batch.
    async fn batch(&self, tenant: &TenantId, batch: &BatchId) -> Result<Vec<BatchMember>>;
    /// Claims up to `limit` executions due at `now` (`wake_at <= now`) that
    /// nobody holds or whose lease lapsed before `now`, shared fairly
    /// between tenants as [`Store::claim_round`] does with the default
    /// [`Fairness`]. Each comes with its version, bumped by the claim.
    async fn claim_due(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Execution>>;
    /// One claim loop round in one round trip: up to `limit` due
    /// executions, whether each has events waiting, and the next due time.
    ///
    /// The due rows are shared out fairly. Within a tenant they come in
    /// due order (earliest `wake_at`, then oldest). Between tenants, a
    /// lapsed lease is taken over first (it is running already); then each
    /// next row of a tenant counts as one more running execution of it, and
    /// rows are taken lowest `running / weight` first (ties: earliest due),
    /// so a tenant with a backlog gets no more than its weight's share of
    /// what frees up while others have work due. No tenant is given a row
    /// that would make it run more than its running limit (its own
    /// `max_concurrent_executions`, else `fair.max_running`), counting
    /// every execution held on any node; its other rows stay due (blocked).
    async fn claim_round(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
        fair: &Fairness,
    ) -> Result<ClaimRound>;
    /// How many of a tenant's executions are held (claimed by a node: they
    /// count toward its running limit).
    async fn running_count(&self, tenant: &TenantId) -> Result<u64>;
    /// How many of a tenant's executions are `queued`.
    async fn queued_count(&self, tenant: &TenantId) -> Result<u64>;
    /// Claims one unfinished execution of a tenant, due or not, unless
    /// another owner holds a lease on it that has not lapsed at `now`.
    async fn claim_execution(
        &self,
        lease: &Lease,
        now: Timestamp,
        tenant: &TenantId,
        id: &ExecutionId,
    ) -> Result<Option<Execution>>;
    /// Commits a state change under the version and owner check; returns
    /// the new version.
    async fn commit_execution(&self, commit: Commit<'_>) -> Result<u64>;
    /// Extends the lease of those of `ids` that `lease.owner` still holds;
    /// the ones missing from the answer are lost.
    async fn renew_leases(&self, lease: &Lease, ids: &[ExecutionId]) -> Result<Vec<Held>>;
    /// Releases every lease `owner` holds, making those executions due at
    /// `now` (a restarted process releases its previous life's leases);
    /// returns how many.
    async fn release_leases(&self, owner: &NodeId, now: Timestamp) -> Result<u64>;
    /// The earliest time an execution not held by `owner` is due: its
    /// `wake_at`, or when its lease lapses.
    async fn next_wake_at(&self, owner: &NodeId) -> Result<Option<Timestamp>>;
    /// Puts an event into an unfinished execution's inbox and makes the
    /// execution due at `event.at` (if it was due later), in one
    /// transaction. A resume also reopens an execution that ended in a
    /// restartable status ([`Status::is_restartable`]): it goes back on the
    /// claim path, due at `event.at`, and its driver restarts it; any other
    /// event for a finished execution is refused with [`Sent::Finished`].
    /// An event whose idempotency key was stored before is a
    /// [`Sent::Duplicate`], even once the execution has finished. A signal
    /// for a `scheduled` execution is stored without making it due: it
    /// waits for the run to start.
    async fn send_event(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        event: &NewEvent,
    ) -> Result<Sent>;
    /// The events in an execution's inbox with `seq` after `after`, in order.
    async fn events(&self, id: &ExecutionId, after: u64) -> Result<Vec<Event>>;
    /// An execution of a tenant.
    async fn execution(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Option<Execution>>;
    /// A page of a tenant's executions, newest first. The cursor is opaque
    /// and stays valid while new executions arrive.
    async fn executions(
        &self,
        tenant: &TenantId,
        filter: &ExecutionFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page>;
    /// Stores a new schedule at version 1, due at `wake_at`; fails with
    /// `AlreadyExists` when the tenant has one with the same id.
    async fn create_schedule(&self, schedule: &Schedule, wake_at: Option<Timestamp>) -> Result<()>;
    /// A schedule of a tenant, with its version.
    async fn schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<Option<Schedule>>;
    /// A page of a tenant's schedules, newest first, with an opaque cursor.
    async fn schedules(
        &self,
        tenant: &TenantId,
        filter: &ScheduleFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<SchedulePage>;
    /// Writes a schedule if its version is still `write.version`, together
    /// with the execution it starts, in one transaction: the new version,
    /// or `None` (and nothing written) when the schedule changed or went
    /// meanwhile, or the tick already started an execution.
    async fn write_schedule(&self, write: ScheduleWrite<'_>) -> Result<Option<u64>>;
    /// Deletes a schedule; `false` if there was none. Its executions stay.
    async fn delete_schedule(&self, tenant: &TenantId, id: &ScheduleId) -> Result<bool>;
    /// Up to `limit` schedules due at `now`, earliest first, with their
    /// versions.
    async fn due_schedules(&self, now: Timestamp, limit: usize) -> Result<Vec<Schedule>>;
    /// The earliest time a schedule is due.
    async fn next_schedule_at(&self) -> Result<Option<Timestamp>>;
    /// Stores a sealed (encrypted) secret value, replacing any earlier one.
    /// The store never sees plain values.
    async fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()>;
    /// The names of a tenant's secrets, sorted.
    async fn secret_names(&self, tenant: &TenantId) -> Result<Vec<String>>;
    /// Deletes a secret; `false` if there was none.
    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool>;
    /// The sealed values of those of `names` that exist.
    async fn secrets(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<(String, Vec<u8>)>>;

    /// Records a node's heartbeat, registering the node (or its new life,
    /// with a new `started_at`) if needed.
    async fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<()>;
    /// Every registered node, by id, with the executions it holds at `now`.
    async fn nodes(&self, now: Timestamp) -> Result<Vec<NodeRecord>>;
    /// Forgets the nodes whose last heartbeat is before `before`; returns
    /// how many.
    async fn forget_nodes(&self, before: Timestamp) -> Result<u64>;
    /// Deletes up to `limit` executions that finished before `before`
    /// (oldest first), with their idempotency keys, event keys and inbox;
    /// returns how many executions went. An unfinished execution is never
    /// deleted, nor one a resume reopened. The retention sweep calls it
    /// (see `engine::retention`).
    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<u64>;
    /// Claims up to `limit` pending deliveries due at `now` that nobody
    /// holds (or whose claim lapsed before `now`), earliest due first,
    /// each only when no earlier delivery of its execution is pending:
    /// the events of one execution go out in order. The claim holds until
    /// `lease.until`.
    async fn claim_deliveries(
        &self,
        lease: &Lease,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueDelivery>>;
    /// Records an attempt of a delivery `owner` holds, releasing the claim:
    /// pending again at `next`'s time, or done. `false` when `owner` no
    /// longer holds it (nothing is written).
    async fn record_delivery(
        &self,
        owner: &NodeId,
        delivery_id: &str,
        attempt: &DeliveryAttempt,
        next: DeliveryNext,
    ) -> Result<bool>;
    /// An execution's deliveries, oldest first.
    async fn deliveries(&self, id: &ExecutionId) -> Result<Vec<Delivery>>;
    /// Makes a delivery of a tenant's execution pending and due at `now`
    /// (a manual redelivery), unless it is pending already; `None` when
    /// there is no such delivery.
    async fn retry_delivery(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        delivery_id: &str,
        now: Timestamp,
    ) -> Result<Option<Delivery>>;
    /// When the next pending delivery that is not behind an earlier
    /// pending one of its execution is due (for a held one: when its claim
    /// lapses).
    async fn next_delivery_at(&self) -> Result<Option<Timestamp>>;
    /// A tenant's callback signing secret, if it has one.
    async fn webhook_secret(&self, tenant: &TenantId) -> Result<Option<WebhookSecret>>;
    /// Stores `secret` as the tenant's if the stored one was made at
    /// `expected` (`None`: if it has none yet). Returns what is stored
    /// afterwards, so a writer that lost the race sees the winner's.
    async fn put_webhook_secret(
        &self,
        tenant: &TenantId,
        secret: &WebhookSecret,
        expected: Option<Timestamp>,
    ) -> Result<WebhookSecret>;
    /// Hints from other processes sharing this store; `None` when nothing
    /// else can share it (each call subscribes anew).
    fn hints(&self) -> Option<tokio::sync::broadcast::Receiver<Hint>> {
        None
    }
    /// Whether other processes may write to this store: then nothing read
    /// from it may be cached beyond the request that read it, since this
    /// process does not see their changes.
    fn shared(&self) -> bool {
        false
    }
}
