//! Adapters between the sandbox and the engine/API traits. This is wiring:
//! the engine does not know the sandbox, and the sandbox does not know the
//! store.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::{Registered, Registrar};
use crate::engine::{AttemptSpec, RunnerError, StepRunner};
use crate::model::{AttemptReport, Digest, TenantId};
use crate::sandbox::Sandbox;
use crate::store::Store;

/// Runs attempts in the sandbox, loading components from the store (and
/// their precompiled artifacts from the cache) on first use.
///
/// Attempts run on their own runtime ([`AttemptPool`]), never on the one
/// that serves the API: a guest that computes yields only once per epoch
/// tick, and tokio polls its I/O driver only every few dozen task polls, so
/// guests sharing the API's runtime would delay new requests by hundreds of
/// milliseconds.
#[derive(Debug, Clone)]
pub struct SandboxRunner {
    sandbox: Arc<Sandbox>,
    store: Arc<dyn Store>,
    pool: Arc<AttemptPool>,
}

/// A multi-threaded tokio runtime, on threads of its own, that runs
/// attempts. Dropping the pool shuts the runtime down on its own thread.
#[derive(Debug)]
pub struct AttemptPool {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AttemptPool {
    /// The pool's runtime.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    /// A pool of `threads` threads.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("stephost-attempt")
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("stephost-attempts".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stopped.await;
                });
                rt.shutdown_background();
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for AttemptPool {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl SandboxRunner {
    /// A runner over this sandbox and store, running attempts on `pool`.
    pub fn new(sandbox: Arc<Sandbox>, store: Arc<dyn Store>, pool: AttemptPool) -> Self {
        Self {
            sandbox,
            store,
            pool: Arc::new(pool),
        }
    }
}

#[async_trait::async_trait]
impl StepRunner for SandboxRunner {
    async fn run(
        &self,
        _tenant: &TenantId,
        digest: &Digest,
        spec: &AttemptSpec,
        cancel: &CancellationToken,
    ) -> Result<AttemptReport, RunnerError> {
        let step = match self.sandbox.prepared(digest) {
            Some(step) => step,
            None => {
                let bytes = self
                    .store
                    .component(digest)
                    .await
                    .map_err(|e| RunnerError(format!("loading component {digest}: {e}")))?
                    .ok_or_else(|| RunnerError(format!("component {digest} is missing")))?;
                let sandbox = self.sandbox.clone();
                tokio::task::spawn_blocking(move || sandbox.prepare(&bytes))
                    .await
                    .map_err(|e| RunnerError(format!("preparing component {digest}: {e}")))?
                    .map_err(|e| RunnerError(format!("preparing component {digest}: {e}")))?
            }
        };
        let mut limits = self
            .sandbox
            .limits(&spec.overrides)
            .map_err(|e| RunnerError(e.to_string()))?;
        // The tenant's ceilings and the workflow deadline reach every
        // attempt.
        let ceiling = &spec.ceiling;
        limits.fuel = limits.fuel.min(ceiling.fuel.unwrap_or(u64::MAX));
        limits.memory_bytes = limits
            .memory_bytes
            .min(ceiling.memory_bytes.unwrap_or(u64::MAX));
        limits.timeout = limits
            .timeout
            .min(ceiling.timeout.unwrap_or(Duration::MAX))
            .min(spec.remaining);
        let sandbox = self.sandbox.clone();
        let input = spec.input.clone();
        let caps = spec.caps.clone();
        let cancel = cancel.clone();
        self.pool
            .handle
            .spawn(async move { sandbox.run(&step, &input, &limits, &caps, &cancel).await })
            .await
            .map_err(|e| RunnerError(format!("the attempt task failed: {e}")))?
            .map_err(|e| RunnerError(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Registrar for SandboxRunner {
    fn check_limits(&self, overrides: &crate::model::Overrides) -> Result<(), String> {
        self.sandbox
            .limits(overrides)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn register(&self, bytes: Arc<Vec<u8>>) -> Result<Registered, String> {
        let sandbox = self.sandbox.clone();
        let prepared = tokio::task::spawn_blocking(move || sandbox.prepare(&bytes))
            .await
            .map_err(|e| format!("validation was interrupted: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(Registered {
            digest: prepared.digest,
            imports: prepared.imports.clone(),
            compile_ms: u64::try_from(prepared.compile_time.as_millis()).unwrap_or(u64::MAX),
        })
    }
}
