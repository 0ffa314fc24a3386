//! Adapters between the sandbox and the engine/API traits. This is wiring:
//! the engine does not know the sandbox, and the sandbox does not know the
//! store.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::api::{Registered, Registrar};
use crate::engine::{RunnerError, StepRunner};
use crate::model::{AttemptReport, Digest, TenantId};
use crate::sandbox::{Capabilities, Overrides, Sandbox};
use crate::store::Store;

/// Runs attempts in the sandbox, loading components from the store (and
/// their precompiled artifacts from the cache) on first use.
#[derive(Debug, Clone)]
pub struct SandboxRunner {
    sandbox: Arc<Sandbox>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl SandboxRunner {
    /// A runner over this sandbox and store.
    pub fn new(sandbox: Arc<Sandbox>, store: Arc<dyn Store>) -> Self {
        Self { sandbox, store }
    }
}

#[async_trait::async_trait]
impl StepRunner for SandboxRunner {
    async fn run(
        &self,
        _tenant: &TenantId,
        digest: &Digest,
        input: &str,
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
        let limits = self
            .sandbox
            .limits(&Overrides::default())
            .map_err(|e| RunnerError(e.to_string()))?;
        self.sandbox
            .run(&step, input, &limits, &Capabilities::default(), cancel)
            .await
            .map_err(|e| RunnerError(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Registrar for SandboxRunner {
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
