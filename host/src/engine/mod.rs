//! The engine: drives executions through their states.
//!
//! It accepts submissions and persists them before acknowledging. The store
//! owns the work: the engine claims due executions under a lease (see
//! `work`), drives each through a [`StepRunner`] on a bounded pool, commits
//! every state with a version check, parks an execution that has nothing to
//! run until its next time, and publishes every committed state to waiters
//! (sync calls, long polls). Cancel goes through the execution's inbox in
//! the store, so it reaches an execution wherever it is. A restart holds
//! nothing in memory: it claims due work as it goes.
//!
//! It knows the [`Store`] trait and the [`StepRunner`] trait; it must not
//! know wasmtime, SQL or HTTP.

mod batch;
pub mod callbacks;
pub mod clock;
mod dag;
pub mod definition;
pub mod deliver;
mod drive;
mod events;
mod fair;
mod nodes;
mod parsed;
mod resolve;
mod retention;
pub mod schedule;
mod secret_source;
mod submission;
pub mod template;
mod tenants;
mod watch;
mod work;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

pub use self::batch::{BatchAccepted, BatchInput, BatchSubmission};
pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::definition::{Definition, Problem};
pub use self::secret_source::{NoSecrets, SecretSource};
pub use self::submission::{StartAt, Submission, Submitted, VersionSel};
use crate::model::{
    AttemptReport, Capabilities, Digest, Execution, ExecutionId, NodeId, Overrides, Status,
    TenantId, Timestamp, WorkflowId,
};
use crate::store::{self, Created, Idempotency, Lease, Store};
use resolve::{Recent, Resolved};

/// What one attempt runs with.
#[derive(Debug, Clone)]
pub struct AttemptSpec {
    /// The input JSON text.
    pub input: String,
    /// The step's own limits (lowering the server defaults).
    pub overrides: Overrides,
    /// The tenant's step ceilings (its `max_step_*` quotas): the attempt
    /// never gets more than these, whatever the step asked for.
    pub ceiling: Overrides,
    /// Time left before the workflow deadline; the attempt's time limit is
    /// the smaller of this and its own.
    pub remaining: Duration,
    /// Config values for the guest, and the secret values to redact.
    pub caps: Capabilities,
}

/// Runs one attempt of a step. The sandbox implements it; tests may fake it.
#[async_trait::async_trait]
pub trait StepRunner: Send + Sync + 'static {
    /// Runs the component `digest` of `tenant` once.
    async fn run(
        &self,
        tenant: &TenantId,
        digest: &Digest,
        spec: &AttemptSpec,
        cancel: &CancellationToken,
    ) -> Result<AttemptReport, RunnerError>;
}

/// What the record shows as the `step` of a wait step.
pub const WAIT_STEP: &str = "wait";

/// The runner could not run the attempt at all (not a guest outcome).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunnerError(pub String);

/// Errors of the engine, each meaningful to an API client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such workflow (or version) for this tenant.
    #[error("workflow `{0}` not found")]
    WorkflowNotFound(String),
    /// No such execution for this tenant.
    #[error("execution `{0}` not found")]
    ExecutionNotFound(String),
    /// No such schedule for this tenant.
    #[error("schedule `{0}` not found")]
    ScheduleNotFound(String),
    /// No such batch for this tenant (or all of it was deleted).
    #[error("batch `{0}` not found")]
    BatchNotFound(String),
    /// No such delivery of this execution.
    #[error("execution `{0}` has no delivery `{1}`")]
    DeliveryNotFound(String, String),
    /// A step of the workflow is no longer registered.
    #[error("{0}")]
    Unprocessable(String),
    /// The submission does not fit the workflow (`input_data` against its
    /// `input_schema`, missing secrets): every problem with its path.
    #[error("{0}")]
    Invalid(String, Vec<Problem>),
    /// The idempotency key was used and `X-On-Conflict` refuses.
    #[error("idempotency key already used by execution {0} ({1})")]
    IdempotencyConflict(ExecutionId, &'static str),
    /// The idempotency key was used with a different request body.
    #[error("the idempotency key was already used with a different request body")]
    IdempotencyKeyReused,
    /// The execution has finished and cannot be cancelled.
    #[error("execution {0} already finished with status {1}")]
    AlreadyFinished(ExecutionId, &'static str),
    /// The execution's state does not allow what was asked (resuming a
    /// running execution, pausing a paused one).
    #[error("{0}")]
    NotAllowed(String),
    /// The execution did not reach the state asked for in time (a cancel
    /// whose execution is held by a process that does not answer).
    #[error("{0}")]
    Busy(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// What delivering a signal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSent {
    /// The signal's position among the execution's events.
    pub sequence: u64,
    /// An earlier delivery with the same idempotency key was stored; this
    /// one changed nothing.
    pub duplicate: bool,
}

/// What a waiter waits for.
#[derive(Debug, Clone)]
pub enum Until {
    /// A terminal status.
    Terminal,
    /// The step with this workflow id finishing (or a terminal status).
    Step(String),
    /// More than this many `paused` entries in the history (or a terminal
    /// status).
    Paused(usize),
    /// More than this many history entries with reason `resume`.
    Resumed(usize),
}

impl Until {
    /// Whether `e` is there.
    pub fn reached(&self, e: &Execution) -> bool {
        let entries = |f: &dyn Fn(&crate::model::HistoryEntry) -> bool| {
            e.history.iter().filter(|h| f(h)).count()
        };
        match self {
            Self::Terminal => e.status.is_terminal(),
            Self::Step(id) => {
                e.status.is_terminal() || e.step(id).is_some_and(|s| s.status.is_settled())
            }
            Self::Paused(n) => {
                e.status.is_terminal() || entries(&|h| h.status == Status::Paused) > *n
            }
            Self::Resumed(n) => entries(&|h| h.reason.as_deref() == Some(dag::RESUME)) > *n,
        }
    }
}

/// Sizing and timing of the engine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many step attempts run at once.
    pub workers: usize,
    /// How many executions are driven at once; the other due ones wait in
    /// the store, earliest first.
    pub max_in_flight: usize,
    /// The runtime that drives executions; the current one when `None`.
    /// The server puts drivers on the runtime that runs attempts, so that
    /// an attempt and its driver hand over without crossing threads.
    pub runtime: Option<tokio::runtime::Handle>,
    /// This process's id in the leases it takes.
    pub node: NodeId,
    /// How long a lease lasts unless renewed. Leases are renewed every
    /// fifth of this, so a process that dies is taken over after at most
    /// this long (plus one poll).
    pub lease_ttl: Duration,
    /// The longest the engine goes without looking for due work in the
    /// store, and the longest a waiter goes without reading the store:
    /// the fallback that makes progress independent of notifications.
    pub poll_interval: Duration,
    /// Whether this process claims work. Without, it serves the API only:
    /// it stores submissions and events for the processes that do, and
    /// fires no schedules.
    pub claim_work: bool,
    /// The quotas of a tenant where the admin set none of its own (the
    /// engine uses `max_concurrent_executions`, `weight` and the step
    /// ceilings).
    pub quotas: crate::model::Quotas,
    /// How long a finished execution is kept after it finished; `None`
    /// keeps every one (see `engine/retention.rs`).
    pub retention: Option<Duration>,
    /// How callbacks are delivered (see `engine/deliver.rs`).
    pub callbacks: deliver::Settings,
    /// What steps may do over HTTP: the server's allowlist and caps.
    pub step_http: crate::model::StepHttpPolicy,
}

impl Settings {
    /// The default lease time to live.
    pub const LEASE_TTL: Duration = Duration::from_secs(5);
    /// The default poll interval.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
}

/// An execution this process drives.
pub(crate) struct Driven {
    /// Its inbox may hold events: the driver reads it.
    events: Notify,
    /// The lease is lost: the driver stops without committing.
    lost: CancellationToken,
    /// The driver's last commit finished the execution (it leaves the
    /// claim path, so the claim loop has no new due time to learn).
    finished: std::sync::atomic::AtomicBool,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    runner: Arc<dyn StepRunner>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    /// Parsed definitions by tenant, workflow and version (versions never
    /// change once stored), bounded by count and bytes (see [`parsed`]).
    definitions: parsed::Parsed,
    /// Recent submission lookups by tenant, workflow and version asked
    /// for (see [`resolve::Recent`]); unused on a store other processes share.
    resolved: Recent<(TenantId, WorkflowId, Option<u32>), Arc<Resolved>>,
    /// The workers, shared fairly between tenants.
    attempts: Arc<fair::Workers>,
    in_flight: Arc<Semaphore>,
    /// What claims share out (the default running limit).
    fairness: store::Fairness,
    /// The server's default quotas.
    default_quotas: crate::model::Quotas,
    /// The server's allowlist and caps of steps' HTTP requests.
    step_http: crate::model::StepHttpPolicy,
    /// Tenants' weights and running limits as this process last read them.
    shares: tenants::Shares,
    /// Executions whose sync call waits in this process (their attempts go
    /// before the tenant's other ones), with how many calls wait for each.
    sync_calls: Mutex<HashMap<ExecutionId, usize>>,
    runtime: Option<tokio::runtime::Handle>,
    node: NodeId,
    lease_ttl: Duration,
    poll_interval: Duration,
    claim_work: bool,
    /// How long finished executions are kept (see `retention`).
    retention: Option<Duration>,
    /// Sends callbacks, and checks their URLs at submission.
    outbound: crate::outbound::Outbound,
    /// How callbacks are delivered.
    callbacks: deliver::Settings,
    /// Deliveries were stored or an attempt ended: the delivery loop
    /// looks again.
    deliveries_due: Notify,
    /// When this process's engine started (its node's `started_at`).
    started_at: Timestamp,
    /// The executions this process drives.
    drivers: Mutex<HashMap<ExecutionId, Arc<Driven>>>,
    /// How many events found no driver in this process to tell, counted
    /// under the `drivers` lock. A driver whose claim saw an empty inbox
    /// skips reading it unless this moved since before the claim (see
    /// `work::spawn_driver`).
    unrouted: std::sync::atomic::AtomicU64,
    /// The claim loop found every driver slot taken, or is looking for
    /// one: due work may be waiting for a slot, so a driver that ends must
    /// wake the loop (see `work::claim_round`).
    starved: std::sync::atomic::AtomicBool,
    /// The last claim round left due work it could not take (a tenant at
    /// its running limit): a driver that ends wakes the loop.
    due_left: std::sync::atomic::AtomicBool,
    /// Waiters' subscriptions to committed states, by execution.
    watchers: watch::Watchers,
    /// Wakes the claim loop: a permit freed, an execution parked, an event
    /// arrived for an execution nobody drives here.
    wake: Arc<Notify>,
    /// Wakes the schedule loop: a schedule was created or changed, or an
    /// execution of a schedule finished.
    schedule_wake: Arc<Notify>,
    /// Runs the lease renewal at once: leases may have been taken from this
    /// process's drivers (a tenant suspended or deleted), which then stop.
    renew_now: Arc<Notify>,
    /// Shutting down: claim nothing more, let running attempts finish and
    /// hand every execution back to the store (see [`Engine::shutdown`]).
    draining: CancellationToken,
    /// Shut down: waiters answer with what they have.
    stopped: CancellationToken,
}

/// The engine. Cloning shares it.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// The current wall-clock time, for records outside executions (tenants,
/// step versions).
pub fn now_pub() -> Timestamp {
    Timestamp::now()
}

impl Inner {
    /// A lease for this process from now.
    fn lease(&self) -> Lease {
        Lease {
            owner: self.node.clone(),
            until: dag::add(self.clock.now(), self.lease_ttl),
        }
    }

    fn lock_drivers(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Arc<Driven>>> {
        self.drivers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no execution is being driven, for at most `limit`.
    async fn drivers_ended_within(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.lock_drivers().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The parsed definition an execution runs.
    async fn definition(&self, exec: &Execution) -> Result<Arc<Definition>, String> {
        let key = (
            exec.tenant_id.clone(),
            exec.workflow_id.clone(),
            exec.workflow_version,
        );
        if let Some(d) = self.definitions.get(&key) {
            return Ok(d);
        }
        let record = self
            .store
            .workflow(&key.0, &key.1, Some(key.2))
            .await
            .map_err(|e| format!("loading workflow `{}` version {}: {e}", key.1, key.2))?
            .ok_or_else(|| format!("workflow `{}` version {} is gone", key.1, key.2))?;
        self.parsed(&key.0, &key.1, key.2, &record.definition)
    }

    /// The parsed form of a stored definition, from the cache when it is
    /// there (a stored version never changes).
    fn parsed(
        &self,
        tenant: &TenantId,
        workflow: &WorkflowId,
        version: u32,
        definition: &serde_json::Value,
    ) -> Result<Arc<Definition>, String> {
        let key = (tenant.clone(), workflow.clone(), version);
        if let Some(d) = self.definitions.get(&key) {
            return Ok(d);
        }
        let def = Arc::new(Definition::from_value(definition.clone()).map_err(|p| {
            format!(
                "the stored definition of workflow `{workflow}` version {version} is invalid: {p:?}"
            )
        })?);
        let bytes = serde_json::to_vec(definition).map_or(0, |t| t.len());
        self.definitions.insert(key, def.clone(), bytes);
        Ok(def)
    }
}

/// How many entries the engine's in-memory maps hold ([`Engine::resident`]).
/// The first four follow the work in flight and are empty when nothing
/// runs or waits in this process; `definitions` is a bounded cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resident {
    /// Executions this process drives (at most its driver slots).
    pub drivers: usize,
    /// Executions a sync call in this process waits for.
    pub sync_calls: usize,
    /// Executions some waiter in this process watches.
    pub watched: usize,
    /// Tenants with attempts running or waiting for a worker here.
    pub tenants_waiting: usize,
    /// Definition versions kept parsed (bounded by count and bytes).
    pub definitions: usize,
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shutdown {
    /// Executions whose running attempts finished and were committed
    /// before they were handed back.
    pub handed_back: usize,
    /// Executions whose attempts were still running after the grace
    /// period: left as a crash would leave them.
    pub abandoned: usize,
    /// Leases released at the end (abandoned executions, and any other
    /// lease the store still had for this node).
    pub released: u64,
}

/// What the engine is built from besides the store.
pub struct Services {
    /// Runs attempts.
    pub runner: Arc<dyn StepRunner>,
    /// Opens tenant secrets.
    pub secrets: Arc<dyn SecretSource>,
    /// Tells the time.
    pub clock: Arc<dyn Clock>,
    /// Sends callbacks.
    pub outbound: crate::outbound::Outbound,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the engine: releases the leases a previous life of this node
    /// held, registers the node, and starts its heartbeat, the loop that
    /// acts on hints from other nodes and, when it claims work, the claim,
    /// lease-renewal and schedule loops. Nothing is loaded up front; due
    /// work is claimed as permits allow.
    pub async fn start(
        store: Arc<dyn Store>,
        services: Services,
        settings: Settings,
    ) -> Result<Self, Error> {
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                runner: services.runner,
                secrets: services.secrets,
                clock: services.clock.clone(),
                definitions: parsed::Parsed::new(),
                resolved: Recent::new(),
                attempts: Arc::new(fair::Workers::new(settings.workers)),
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                fairness: store::Fairness {
                    max_running: settings.quotas.max_concurrent_executions,
                },
                default_quotas: settings.quotas.clone(),
                step_http: settings.step_http.clone(),
                shares: tenants::Shares::default(),
                sync_calls: Mutex::new(HashMap::new()),
                runtime: settings.runtime.clone(),
                node: settings.node.clone(),
                lease_ttl: settings.lease_ttl.max(Duration::from_millis(100)),
                poll_interval: settings.poll_interval.max(Duration::from_millis(1)),
                claim_work: settings.claim_work,
                retention: settings.retention.filter(|d| !d.is_zero()),
                outbound: services.outbound,
                callbacks: settings.callbacks,
                deliveries_due: Notify::new(),
                started_at: services.clock.now(),
                drivers: Mutex::new(HashMap::new()),
                unrouted: std::sync::atomic::AtomicU64::new(0),
                starved: std::sync::atomic::AtomicBool::new(false),
                due_left: std::sync::atomic::AtomicBool::new(false),
                watchers: watch::Watchers::default(),
                wake: Arc::new(Notify::new()),
                schedule_wake: Arc::new(Notify::new()),
                renew_now: Arc::new(Notify::new()),
                draining: CancellationToken::new(),
                stopped: CancellationToken::new(),
            }),
        };
        let inner = &engine.inner;
        let released = inner
            .store
            .release_leases(&inner.node, inner.clock.now())
            .await?;
        if released > 0 {
            tracing::info!(count = released, node = %inner.node, "released the leases of this node's previous run");
        }
        nodes::start(inner).await?;
        retention::start(inner);
        deliver::start(inner);
        if inner.claim_work {
            work::start(inner);
            tokio::spawn(schedule::run(Arc::downgrade(inner)));
        }
        Ok(engine)
    }

    /// The engine's clock's time.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Accepts a submission: resolves it against the workflow and its
    /// steps, then stores and starts it.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        sub: Submission,
        idempotency: Option<Idempotency>,
    ) -> Result<Submitted, Error> {
        let exec = self.resolve(tenant, sub).await?;
        self.accept(exec, idempotency).await
    }

    /// Accepts a submission as [`Engine::submit`] does and waits up to
    /// `timeout` for `until`, as [`Engine::wait`] does: a sync call. The
    /// waiter subscribes before the execution is stored, so it starts from
    /// the state it stored instead of reading it back. A wait for a step
    /// the workflow does not have ends at once.
    pub async fn submit_and_wait(
        &self,
        tenant: &TenantId,
        sub: Submission,
        idempotency: Option<Idempotency>,
        until: &Until,
        timeout: Duration,
    ) -> Result<(Submitted, Execution), Error> {
        let exec = self.resolve(tenant, sub).await?;
        if let Until::Step(step) = until
            && exec.step(step).is_none()
        {
            let submitted = self.accept(exec, idempotency).await?;
            let current = submitted.execution().clone();
            return Ok((submitted, current));
        }
        let subscription = self.inner.watchers.subscribe(&exec.execution_id);
        let _sync = tenants::SyncCall::new(&self.inner, &exec.execution_id);
        let submitted = self.accept(exec, idempotency).await?;
        let current = match &submitted {
            Submitted::New(e) => {
                watch::wait_from(&self.inner, subscription, tenant, e.clone(), until, timeout)
                    .await?
            }
            Submitted::Existing(e) => {
                drop(subscription);
                self.wait(tenant, &e.execution_id, until, timeout).await?
            }
        };
        Ok((submitted, current))
    }

    /// Stores a resolved execution (applying idempotency) and starts it at
    /// once when a driver slot is free: the new row is claimed by this
    /// process in the same transaction, without a round trip through the
    /// claim loop. Otherwise it waits in the store, due now.
    pub async fn accept(
        &self,
        mut exec: Execution,
        idempotency: Option<Idempotency>,
    ) -> Result<Submitted, Error> {
        // A postponed run is due later: the claim loop takes it then. So is
        // one of a tenant with a running limit: the claim counts what runs.
        let (permit, lease) = match exec.status {
            Status::Scheduled => None,
            _ if tenants::share(&self.inner, &exec.tenant_id)
                .await
                .max_running
                .is_some() =>
            {
                None
            }
            _ => work::fast_slot(&self.inner),
        }
        .unzip();
        let mark = work::unrouted_mark(&self.inner);
        let created = self
            .inner
            .store
            .create_execution(&exec, idempotency.as_ref(), lease.as_ref())
            .await?;
        match created {
            Created::New => {
                exec.version = 1;
                work::launch(&self.inner, exec.clone(), permit, mark);
                Ok(Submitted::New(exec))
            }
            Created::Existing(e) => Ok(Submitted::Existing(*e)),
            Created::Conflict(e) => Err(Error::IdempotencyConflict(
                e.execution_id.clone(),
                e.status.as_str(),
            )),
            Created::KeyReused => Err(Error::IdempotencyKeyReused),
        }
    }

    /// An execution of a tenant.
    pub async fn get(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Execution, Error> {
        self.inner
            .store
            .execution(tenant, id)
            .await?
            .ok_or_else(|| Error::ExecutionNotFound(id.to_string()))
    }

    /// Waits up to `timeout` for `until`, then returns the latest committed
    /// state, whether or not it was reached. Commits made in this process
    /// wake the waiter at once; the store is read every poll interval for
    /// executions driven elsewhere.
    pub async fn wait(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        until: &Until,
        timeout: Duration,
    ) -> Result<Execution, Error> {
        watch::wait(&self.inner, tenant, id, until, timeout).await
    }

    /// The workflow version a submission runs (`None` = latest) and the
    /// registered steps it names, by name; `None` when there is no such
    /// version or the workflow is deleted (its versions stay for the
    /// executions that run them, but it starts no new runs). One read of
    /// the store; cached briefly only when no other process writes to the
    /// store, so a node never starts a version another node replaced.
    async fn submission_records(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<Arc<Resolved>>, Error> {
        let cache = !self.inner.store.shared();
        let key = (tenant.clone(), id.clone(), version);
        if cache && let Some(r) = self.inner.resolved.get(&key) {
            return Ok(Some(r));
        }
        let Some((workflow, steps)) = self
            .inner
            .store
            .workflow_with_steps(tenant, id, version)
            .await?
            .filter(|(w, _)| w.deleted_at.is_none())
        else {
            return Ok(None);
        };
        let r = Arc::new(Resolved {
            workflow,
            steps: steps.into_iter().map(|s| (s.name.to_string(), s)).collect(),
        });
        if cache {
            self.inner.resolved.put(key, r.clone());
        }
        Ok(Some(r))
    }

    /// Drops cached lookups of a workflow; the API calls it after storing a
    /// new version.
    pub fn forget_workflow(&self, tenant: &TenantId, id: &WorkflowId) {
        self.inner
            .resolved
            .forget(|(t, w, _)| !(t == tenant && w == id));
    }

    /// Drops cached lookups that may name a tenant's steps (any of its
    /// workflows may); the API calls it after adding a step version or
    /// deleting a step.
    pub fn forget_steps(&self, tenant: &TenantId) {
        self.inner.resolved.forget(|(t, _, _)| t != tenant);
    }

    /// How many entries each of this process's in-memory maps holds now
    /// (ARCHITECTURE.md, "Bounded memory", gives each one's bound).
    pub fn resident(&self) -> Resident {
        Resident {
            drivers: self.inner.lock_drivers().len(),
            sync_calls: self
                .inner
                .sync_calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            watched: self.inner.watchers.len(),
            tenants_waiting: self.inner.attempts.lanes(),
            definitions: self.inner.definitions.len(),
        }
    }

    /// How many executions this process drives right now.
    pub fn live_count(&self) -> usize {
        self.inner.lock_drivers().len()
    }

    /// This process's node id.
    pub fn node(&self) -> &NodeId {
        &self.inner.node
    }

    /// Shuts the engine down gracefully: claims nothing more (new
    /// submissions are stored for other nodes, or for this one's next
    /// start), lets the attempts that are running finish within `grace`
    /// and commits their results, then hands each execution back to the
    /// store, due at once, for whichever node claims it next. Executions
    /// whose attempts are still running after `grace` are abandoned as a
    /// crash would leave them (their attempts will run again) and their
    /// leases released. Waiters then answer with what they have.
    pub async fn shutdown(&self, grace: Duration) -> Shutdown {
        let inner = &self.inner;
        inner.draining.cancel();
        inner.wake.notify_one();
        inner.schedule_wake.notify_one();
        let driving = inner.lock_drivers().len();
        inner.drivers_ended_within(grace).await;
        let late: Vec<Arc<Driven>> = inner.lock_drivers().values().cloned().collect();
        for d in &late {
            d.lost.cancel();
        }
        // Abandoned drivers stop at their next await; their attempts'
        // outcomes are dropped.
        inner.drivers_ended_within(Duration::from_secs(5)).await;
        let released = match inner
            .store
            .release_leases(&inner.node, inner.clock.now())
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "releasing this node's leases failed; other nodes take them over when they lapse");
                0
            }
        };
        inner.stopped.cancel();
        Shutdown {
            handed_back: driving - late.len(),
            abandoned: late.len(),
            released,
        }
    }

    /// Whether [`Engine::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.draining.is_cancelled()
    }

    /// Every node registered in the store, with the executions each holds
    /// now.
    pub async fn nodes(&self) -> Result<Vec<store::NodeRecord>, Error> {
        Ok(self.inner.store.nodes(self.inner.clock.now()).await?)
    }
}
