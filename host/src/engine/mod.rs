//! The engine: drives executions through their states.
//!
//! It accepts submissions, persists them before acknowledging, queues them
//! FIFO, runs their steps through a [`StepRunner`] on a bounded pool, and
//! publishes every persisted state to waiters (sync calls, long polls). On
//! start it resumes every execution the store says is queued or running.
//!
//! It knows the [`Store`] trait and the [`StepRunner`] trait; it must not
//! know wasmtime, SQL or HTTP.

pub mod clock;
pub mod definition;
mod drive;
pub mod template;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::definition::{Definition, Problem};
use crate::model::{
    AttemptReport, Digest, Execution, ExecutionId, Status, StepRun, StepStatus, TenantId,
    Timestamp, WorkflowId,
};
use crate::sandbox::{Capabilities, Overrides};
use crate::store::{self, Created, Idempotency, Store};

/// What one attempt runs with.
#[derive(Debug, Clone)]
pub struct AttemptSpec {
    /// The input JSON text.
    pub input: String,
    /// The step's own limits (lowering the server defaults).
    pub overrides: Overrides,
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

/// Where the engine gets tenant secrets' plain values.
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// The values of the named secrets that exist.
    async fn open(
        &self,
        tenant: &TenantId,
        names: &[String],
    ) -> Result<BTreeMap<String, String>, String>;
}

/// A tenant without secrets, for engines that have no vault.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSecrets;

#[async_trait::async_trait]
impl SecretSource for NoSecrets {
    async fn open(
        &self,
        _tenant: &TenantId,
        _names: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        Ok(BTreeMap::new())
    }
}

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
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Which workflow version to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSel {
    /// The newest version at submission.
    Latest,
    /// A specific version.
    Exact(u32),
}

/// A request to run a workflow.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The workflow.
    pub workflow_id: WorkflowId,
    /// Its version.
    pub version: VersionSel,
    /// The execution's input.
    pub input_data: serde_json::Value,
    /// Opaque client data.
    pub custom_data: Option<serde_json::Value>,
}

/// What a submission did.
#[derive(Debug, Clone)]
pub enum Submitted {
    /// A new execution was accepted.
    New(Execution),
    /// An idempotency key matched an earlier execution.
    Existing(Execution),
}

impl Submitted {
    /// The execution either way.
    pub fn execution(&self) -> &Execution {
        match self {
            Self::New(e) | Self::Existing(e) => e,
        }
    }
}

/// What a waiter waits for.
#[derive(Debug, Clone)]
pub enum Until {
    /// A terminal status.
    Terminal,
    /// The step with this workflow id finishing (or a terminal status).
    Step(String),
}

impl Until {
    fn reached(&self, e: &Execution) -> bool {
        e.status.is_terminal()
            || match self {
                Self::Terminal => false,
                Self::Step(id) => e.step(id).is_some_and(|s| {
                    matches!(
                        s.status,
                        StepStatus::Succeeded
                            | StepStatus::Failed
                            | StepStatus::Skipped
                            | StepStatus::Cancelled
                    )
                }),
            }
    }
}

/// Sizing of the engine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many step attempts run at once.
    pub workers: usize,
    /// How many executions are driven at once (the rest wait in the queue).
    pub max_in_flight: usize,
    /// The runtime that drives executions; the current one when `None`.
    /// The server puts drivers on the runtime that runs attempts, so that
    /// an attempt and its driver hand over without crossing threads.
    pub runtime: Option<tokio::runtime::Handle>,
}

/// Where a live execution is, guarded so that cancel and start never race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Started,
    CancelledWhileQueued,
}

struct Live {
    tenant: TenantId,
    tx: watch::Sender<Arc<Execution>>,
    cancel: CancellationToken,
    phase: Mutex<Phase>,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    runner: Arc<dyn StepRunner>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    /// Parsed definitions by tenant, workflow and version (versions never
    /// change once stored).
    definitions: Mutex<HashMap<(TenantId, WorkflowId, u32), Arc<Definition>>>,
    /// Recent workflow and step lookups for submissions (see [`Recent`]).
    workflows: Recent<(TenantId, WorkflowId, Option<u32>), store::WorkflowRecord>,
    steps: Recent<(TenantId, crate::model::StepName), store::StepRecord>,
    queue: mpsc::UnboundedSender<Execution>,
    live: Mutex<HashMap<ExecutionId, Arc<Live>>>,
    attempts: Semaphore,
    in_flight: Arc<Semaphore>,
    runtime: Option<tokio::runtime::Handle>,
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
    /// The parsed definition an execution runs.
    async fn definition(&self, exec: &Execution) -> Result<Arc<Definition>, String> {
        let key = (
            exec.tenant_id.clone(),
            exec.workflow_id.clone(),
            exec.workflow_version,
        );
        if let Some(d) = self
            .definitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(d.clone());
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
        let mut cache = self.definitions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = cache.get(&key) {
            return Ok(d.clone());
        }
        let def = Arc::new(Definition::from_value(definition.clone()).map_err(|p| {
            format!(
                "the stored definition of workflow `{workflow}` version {version} is invalid: {p:?}"
            )
        })?);
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(key, def.clone());
        Ok(def)
    }
}

/// A small cache of recent lookups. Entries live [`Recent::TTL`] at most,
/// and the API forgets an entry as soon as it changes what it describes, so
/// this process never submits against a stale workflow or step version;
/// other processes sharing the store see a change within the TTL.
struct Recent<K, V> {
    entries: Mutex<HashMap<K, (std::time::Instant, V)>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> Recent<K, V> {
    const TTL: Duration = Duration::from_secs(1);
    const MAX: usize = 10_000;

    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (std::time::Instant, V)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, k: &K) -> Option<V> {
        self.lock()
            .get(k)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, k: K, v: V) {
        let mut entries = self.lock();
        if entries.len() >= Self::MAX {
            entries.retain(|_, (at, _)| at.elapsed() < Self::TTL);
        }
        entries.insert(k, (std::time::Instant::now(), v));
    }

    fn forget(&self, keep: impl Fn(&K) -> bool) {
        self.lock().retain(|k, _| keep(k));
    }
}

/// What the engine is built from besides the store.
pub struct Services {
    /// Runs attempts.
    pub runner: Arc<dyn StepRunner>,
    /// Opens tenant secrets.
    pub secrets: Arc<dyn SecretSource>,
    /// Tells the time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the engine's dispatcher and resumes every unfinished execution.
    pub async fn start(
        store: Arc<dyn Store>,
        services: Services,
        settings: Settings,
    ) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                runner: services.runner,
                secrets: services.secrets,
                clock: services.clock,
                definitions: Mutex::new(HashMap::new()),
                workflows: Recent::new(),
                steps: Recent::new(),
                queue: tx,
                live: Mutex::new(HashMap::new()),
                attempts: Semaphore::new(settings.workers.max(1)),
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                runtime: settings.runtime.clone(),
            }),
        };
        let recovered = engine.inner.store.unfinished_executions().await?;
        if !recovered.is_empty() {
            tracing::info!(count = recovered.len(), "resuming unfinished executions");
        }
        for exec in recovered {
            engine.enqueue(exec);
        }
        tokio::spawn(drive::dispatch(engine.inner.clone(), rx));
        Ok(engine)
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashMap<ExecutionId, Arc<Live>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, exec: Execution) {
        let live = Arc::new(Live {
            tenant: exec.tenant_id.clone(),
            tx: watch::Sender::new(Arc::new(exec.clone())),
            cancel: CancellationToken::new(),
            phase: Mutex::new(Phase::Queued),
        });
        self.lock_live().insert(exec.execution_id.clone(), live);
        // The receiver lives as long as the dispatcher, which lives as long
        // as the runtime; a send can only fail during shutdown, and the
        // execution is then resumed from the store on the next start.
        let _ = self.inner.queue.send(exec);
    }

    /// Accepts a submission: resolves the workflow and the step versions,
    /// persists the execution (applying idempotency), and queues it.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        sub: Submission,
        idempotency: Option<Idempotency>,
    ) -> Result<Submitted, Error> {
        let store = &self.inner.store;
        let version = match sub.version {
            VersionSel::Latest => None,
            VersionSel::Exact(v) => Some(v),
        };
        let wf = self
            .workflow_record(tenant, &sub.workflow_id, version)
            .await?
            .ok_or_else(|| {
                Error::WorkflowNotFound(match version {
                    Some(v) => format!("{}` version `{v}", sub.workflow_id),
                    None => sub.workflow_id.to_string(),
                })
            })?;
        let def = self
            .inner
            .parsed(tenant, &wf.workflow_id, wf.version, &wf.definition)
            .map_err(Error::Unprocessable)?;
        if let Some(schema) = &def.input_schema {
            let validator = jsonschema::validator_for(schema).map_err(|e| {
                Error::Unprocessable(format!("the workflow's `input_schema` is invalid: {e}"))
            })?;
            let problems: Vec<Problem> = validator
                .iter_errors(&sub.input_data)
                .map(|e| Problem {
                    path: format!(
                        "$.input_data{}",
                        definition::json_path(&e.instance_path().to_string())
                    ),
                    message: e.to_string(),
                })
                .collect();
            if !problems.is_empty() {
                return Err(Error::Invalid(
                    "`input_data` does not match the workflow's `input_schema`".into(),
                    problems,
                ));
            }
        }
        let wanted: Vec<String> = def.secret_names().into_iter().collect();
        if !wanted.is_empty() {
            let have = self
                .inner
                .secrets
                .open(tenant, &wanted)
                .await
                .map_err(Error::Unprocessable)?;
            let missing: Vec<Problem> = wanted
                .iter()
                .filter(|n| !have.contains_key(*n))
                .map(|n| Problem {
                    path: format!("secrets.{n}"),
                    message: format!(
                        "the workflow's config uses secret `{n}`, which this tenant does not have"
                    ),
                })
                .collect();
            if !missing.is_empty() {
                return Err(Error::Invalid(
                    "the workflow refers to missing secrets".into(),
                    missing,
                ));
            }
        }
        let mut steps = Vec::with_capacity(def.steps.len());
        let needs = def.needs();
        // One lookup per distinct step name.
        let mut records: HashMap<String, Option<store::StepRecord>> = HashMap::new();
        for (i, s) in def.steps.iter().enumerate() {
            let (name, pinned) = match s.step.split_once('@') {
                Some((n, d)) => (n, Some(d)),
                None => (s.step.as_str(), None),
            };
            let name: crate::model::StepName =
                name.parse().map_err(|e: String| Error::Unprocessable(e))?;
            let record = match records.get(name.as_str()) {
                Some(r) => r.clone(),
                None => {
                    let r = self.step_record(tenant, &name).await?;
                    records.insert(name.to_string(), r.clone());
                    r
                }
            };
            let record = record.ok_or_else(|| {
                Error::Unprocessable(format!(
                    "step `{}` of workflow `{}` (step id `{}`) is no longer registered",
                    s.step, sub.workflow_id, s.id
                ))
            })?;
            let digest = match pinned {
                Some(d) => {
                    let d: Digest = d
                        .parse()
                        .map_err(|e| Error::Unprocessable(format!("step `{}`: {e}", s.id)))?;
                    if !record.versions.iter().any(|v| v.digest == d) {
                        return Err(Error::Unprocessable(format!(
                            "step `{}` pins `{}`, which is no longer registered",
                            s.id, s.step
                        )));
                    }
                    d
                }
                None => {
                    record
                        .versions
                        .last()
                        .ok_or_else(|| {
                            Error::Unprocessable(format!("step `{}` has no versions", s.step))
                        })?
                        .digest
                }
            };
            steps.push(StepRun {
                id: s.id.clone(),
                step: s.step.clone(),
                digest,
                needs: needs[i].iter().map(|&j| def.steps[j].id.clone()).collect(),
                status: StepStatus::Pending,
                skipped_reason: None,
                next_attempt_at: None,
                error: None,
                output: None,
                attempts: Vec::new(),
            });
        }
        let at = self.inner.clock.now();
        let mut exec = Execution {
            execution_id: ExecutionId::generate(),
            tenant_id: tenant.clone(),
            workflow_id: sub.workflow_id,
            workflow_version: wf.version,
            status: Status::Queued,
            input_data: sub.input_data,
            output: None,
            error: None,
            custom_data: sub.custom_data,
            created_at: at,
            started_at: None,
            finished_at: None,
            deadline_at: None,
            duration_ms: None,
            history: Vec::new(),
            steps,
        };
        exec.enter(Status::Queued, at);
        match store.create_execution(&exec, idempotency.as_ref()).await? {
            Created::New => {
                self.enqueue(exec.clone());
                Ok(Submitted::New(exec))
            }
            Created::Existing(e) => Ok(Submitted::Existing(self.freshest(*e))),
            Created::Conflict(e) => Err(Error::IdempotencyConflict(
                e.execution_id.clone(),
                e.status.as_str(),
            )),
            Created::KeyReused => Err(Error::IdempotencyKeyReused),
        }
    }

    /// The live state of an execution when it is newer than the stored copy.
    fn freshest(&self, stored: Execution) -> Execution {
        match self.lock_live().get(&stored.execution_id) {
            Some(live) => (**live.tx.borrow()).clone(),
            None => stored,
        }
    }

    /// An execution of a tenant.
    pub async fn get(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Execution, Error> {
        let live = self.lock_live().get(id).cloned();
        if let Some(live) = live
            && &live.tenant == tenant
        {
            return Ok((**live.tx.borrow()).clone());
        }
        self.inner
            .store
            .execution(tenant, id)
            .await?
            .ok_or_else(|| Error::ExecutionNotFound(id.to_string()))
    }

    /// Waits up to `timeout` for `until`, then returns the latest persisted
    /// state, whether or not it was reached.
    pub async fn wait(
        &self,
        tenant: &TenantId,
        id: &ExecutionId,
        until: &Until,
        timeout: Duration,
    ) -> Result<Execution, Error> {
        let live = self.lock_live().get(id).cloned();
        let Some(live) = live.filter(|l| &l.tenant == tenant) else {
            return self.get(tenant, id).await;
        };
        let mut rx = live.tx.subscribe();
        drop(live);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let current = rx.borrow_and_update().clone();
            if until.reached(&current) {
                return Ok((*current).clone());
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The driver finished and dropped the sender after
                        // publishing the final state.
                        let last = rx.borrow().clone();
                        return Ok((*last).clone());
                    }
                }
                () = tokio::time::sleep_until(deadline) => return Ok((*current).clone()),
            }
        }
    }

    /// Cancels a queued or running execution and returns its final record.
    /// Cancelling an already cancelled execution returns it unchanged.
    pub async fn cancel(&self, tenant: &TenantId, id: &ExecutionId) -> Result<Execution, Error> {
        let live = self.lock_live().get(id).cloned();
        let Some(live) = live.filter(|l| &l.tenant == tenant) else {
            let exec = self.get(tenant, id).await?;
            return match exec.status {
                Status::Cancelled => Ok(exec),
                s if s.is_terminal() => Err(Error::AlreadyFinished(exec.execution_id, s.as_str())),
                // Not live but unfinished: accepted by a previous process and
                // not resumed yet. It is resumed at start, so this is rare.
                _ => Err(Error::Unprocessable(format!(
                    "execution {id} is not running in this server yet; retry shortly"
                ))),
            };
        };
        let cancelled_while_queued = {
            let mut phase = live.phase.lock().unwrap_or_else(|e| e.into_inner());
            if *phase == Phase::Queued {
                *phase = Phase::CancelledWhileQueued;
                true
            } else {
                false
            }
        };
        if cancelled_while_queued {
            let mut exec = (**live.tx.borrow()).clone();
            exec.enter(Status::Cancelled, self.inner.clock.now());
            for s in &mut exec.steps {
                s.status = StepStatus::Cancelled;
            }
            drive::persist(&self.inner, &exec).await;
            live.tx.send_replace(Arc::new(exec.clone()));
            self.lock_live().remove(id);
            return Ok(exec);
        }
        let current = (**live.tx.borrow()).clone();
        if current.status.is_terminal() {
            return match current.status {
                Status::Cancelled => Ok(current),
                s => Err(Error::AlreadyFinished(current.execution_id, s.as_str())),
            };
        }
        live.cancel.cancel();
        let exec = self
            .wait(tenant, id, &Until::Terminal, Duration::from_secs(30))
            .await?;
        match exec.status {
            Status::Cancelled => Ok(exec),
            s if s.is_terminal() => Err(Error::AlreadyFinished(exec.execution_id, s.as_str())),
            _ => Ok(exec),
        }
    }

    async fn workflow_record(
        &self,
        tenant: &TenantId,
        id: &WorkflowId,
        version: Option<u32>,
    ) -> Result<Option<store::WorkflowRecord>, Error> {
        let key = (tenant.clone(), id.clone(), version);
        if let Some(r) = self.inner.workflows.get(&key) {
            return Ok(Some(r));
        }
        let r = self.inner.store.workflow(tenant, id, version).await?;
        if let Some(r) = &r {
            self.inner.workflows.put(key, r.clone());
        }
        Ok(r)
    }

    async fn step_record(
        &self,
        tenant: &TenantId,
        name: &crate::model::StepName,
    ) -> Result<Option<store::StepRecord>, Error> {
        let key = (tenant.clone(), name.clone());
        if let Some(r) = self.inner.steps.get(&key) {
            return Ok(Some(r));
        }
        let r = self.inner.store.step(tenant, name).await?;
        if let Some(r) = &r {
            self.inner.steps.put(key, r.clone());
        }
        Ok(r)
    }

    /// Drops cached lookups of a workflow; the API calls it after storing a
    /// new version.
    pub fn forget_workflow(&self, tenant: &TenantId, id: &WorkflowId) {
        self.inner
            .workflows
            .forget(|(t, w, _)| !(t == tenant && w == id));
    }

    /// Drops cached lookups of a step; the API calls it after adding a
    /// version or deleting the step.
    pub fn forget_step(&self, tenant: &TenantId, name: &crate::model::StepName) {
        self.inner
            .steps
            .forget(|(t, n)| !(t == tenant && n == name));
    }

    /// How many executions are queued or running in this process.
    pub fn live_count(&self) -> usize {
        self.lock_live().len()
    }
}
