//! The engine: drives executions through their states.
//!
//! It accepts submissions, persists them before acknowledging, queues them
//! FIFO, runs their steps through a [`StepRunner`] on a bounded pool, and
//! publishes every persisted state to waiters (sync calls, long polls). On
//! start it resumes every execution the store says is queued or running.
//!
//! It knows the [`Store`] trait and the [`StepRunner`] trait; it must not
//! know wasmtime, SQL or HTTP.

pub mod definition;
mod drive;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use self::definition::{Definition, Problem};
use crate::model::{
    AttemptReport, Digest, Execution, ExecutionId, Status, StepRun, StepStatus, TenantId,
    Timestamp, WorkflowId,
};
use crate::store::{self, Created, Idempotency, Store};

/// Runs one attempt of a step. The sandbox implements it; tests may fake it.
#[async_trait::async_trait]
pub trait StepRunner: Send + Sync + 'static {
    /// Runs the component `digest` of `tenant` once with `input`.
    async fn run(
        &self,
        tenant: &TenantId,
        digest: &Digest,
        input: &str,
        cancel: &CancellationToken,
    ) -> Result<AttemptReport, RunnerError>;
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
                        StepStatus::Succeeded | StepStatus::Failed | StepStatus::Cancelled
                    )
                }),
            }
    }
}

/// Sizing of the engine.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How many step attempts run at once.
    pub workers: usize,
    /// How many executions are driven at once (the rest wait in the queue).
    pub max_in_flight: usize,
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
    queue: mpsc::UnboundedSender<Execution>,
    live: Mutex<HashMap<ExecutionId, Arc<Live>>>,
    attempts: Semaphore,
    in_flight: Arc<Semaphore>,
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

/// The current time; one place so that a simulated clock can replace it.
pub(crate) fn now() -> Timestamp {
    now_pub()
}

/// The current time, as the engine sees it.
pub fn now_pub() -> Timestamp {
    Timestamp::now()
}

impl Engine {
    /// Starts the engine's dispatcher and resumes every unfinished execution.
    pub async fn start(
        store: Arc<dyn Store>,
        runner: Arc<dyn StepRunner>,
        settings: Settings,
    ) -> Result<Self, Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = Self {
            inner: Arc::new(Inner {
                store,
                runner,
                queue: tx,
                live: Mutex::new(HashMap::new()),
                attempts: Semaphore::new(settings.workers.max(1)),
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
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
        let wf = store
            .workflow(tenant, &sub.workflow_id, version)
            .await?
            .ok_or_else(|| {
                Error::WorkflowNotFound(match version {
                    Some(v) => format!("{}` version `{v}", sub.workflow_id),
                    None => sub.workflow_id.to_string(),
                })
            })?;
        let def = Definition::from_value(wf.definition.clone()).map_err(|p| {
            Error::Unprocessable(format!("the stored workflow definition is invalid: {p:?}"))
        })?;
        let mut steps = Vec::with_capacity(def.steps.len());
        for s in &def.steps {
            let name = s
                .step
                .parse()
                .map_err(|e: String| Error::Unprocessable(e))?;
            let record = store.step(tenant, &name).await?.ok_or_else(|| {
                Error::Unprocessable(format!(
                    "step `{}` of workflow `{}` (step id `{}`) is no longer registered",
                    s.step, sub.workflow_id, s.id
                ))
            })?;
            let newest = record.versions.last().ok_or_else(|| {
                Error::Unprocessable(format!("step `{}` has no versions", s.step))
            })?;
            steps.push(StepRun {
                id: s.id.clone(),
                step: s.step.clone(),
                digest: newest.digest,
                input: s.input.clone(),
                status: StepStatus::Pending,
                output: None,
                attempts: Vec::new(),
            });
        }
        let at = now();
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
            exec.enter(Status::Cancelled, now());
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

    /// How many executions are queued or running in this process.
    pub fn live_count(&self) -> usize {
        self.lock_live().len()
    }
}
