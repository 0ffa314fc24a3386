//! Persistence behind one trait, with one module per backend.
//!
//! Everything an execution is lives in one JSON document per execution
//! (`Execution`), plus the indexed columns listing needs (tenant, status,
//! workflow, creation time, a sequence number for cursors). Writes are
//! durable when the returned future resolves: the API acknowledges nothing
//! the store has not committed.
//!
//! This module knows SQL; it must not know HTTP or wasmtime.

#[cfg(test)]
mod conformance;
pub mod sqlite;

use serde::{Deserialize, Serialize};

use crate::model::{
    Digest, Execution, ExecutionId, Status, StepName, TenantId, Timestamp, WorkflowId,
};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique name is already taken (a tenant name).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// A listing cursor was not one this store handed out.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
    /// The backend failed.
    #[error("storage failed: {0}")]
    Backend(String),
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
}

/// Result alias for store calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// May manage tenants.
    Admin,
    /// May use the tenant's own resources.
    Tenant(TenantId),
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its unique name.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
}

/// The SHA-256 of a bearer token; tokens themselves are never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

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
    /// Creates a tenant with its first token. Fails with `AlreadyExists`
    /// when the name is taken.
    async fn create_tenant(&self, tenant: &Tenant, token: TokenHash) -> Result<()>;
    /// The tenant with this id.
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;
    /// The tenant with this name.
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;
    /// Adds a token for an existing tenant.
    async fn add_token(&self, tenant: &TenantId, token: TokenHash) -> Result<()>;
    /// Who a token belongs to (admin tokens from config are not stored).
    async fn authenticate(&self, token: &TokenHash) -> Result<Option<TenantId>>;

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
    /// The latest version of every workflow of a tenant, by id.
    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowRecord>>;

    /// Stores a new execution, applying the idempotency rules atomically:
    /// concurrent identical requests create exactly one execution.
    async fn create_execution(
        &self,
        execution: &Execution,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created>;
    /// Replaces the stored document of an existing execution.
    async fn save_execution(&self, execution: &Execution) -> Result<()>;
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
    /// Every execution that is queued or running, oldest first (for
    /// recovery at start).
    async fn unfinished_executions(&self) -> Result<Vec<Execution>>;

    /// Stores a sealed (encrypted) secret value, replacing any earlier one.
    /// The store never sees plain values.
    async fn put_secret(&self, tenant: &TenantId, name: &str, sealed: &[u8]) -> Result<()>;
    /// The names of a tenant's secrets, sorted.
    async fn secret_names(&self, tenant: &TenantId) -> Result<Vec<String>>;
    /// Deletes a secret; `false` if there was none.
    async fn delete_secret(&self, tenant: &TenantId, name: &str) -> Result<bool>;
    /// The sealed values of those of `names` that exist.
    async fn secrets(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<(String, Vec<u8>)>>;
}
