//! `/v1/steps`: registered step components and their versions.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::auth::{Caller, Tenant};
use super::{ApiError, AppState};
use crate::model::{Digest, StepName};
use crate::store::{StepRecord, StepVersion};

/// One version of a step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Its imports.
    pub imports: Vec<String>,
    /// Validation and compilation time at upload, in ms.
    pub compile_ms: u64,
    /// When it was uploaded.
    pub created_at: String,
}

/// The answer to an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// The step's name.
    pub name: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Its imports.
    pub imports: Vec<String>,
    /// Validation and compilation time, in ms.
    pub compile_ms: u64,
}

/// A step with its versions, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepView {
    /// The step's name.
    pub name: String,
    /// The digest new executions use.
    pub latest_digest: String,
    /// Every version, oldest first.
    pub versions: Vec<VersionView>,
}

/// A list of steps.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepList {
    /// The steps, by name.
    pub items: Vec<StepView>,
}

fn version_view(v: &StepVersion) -> VersionView {
    VersionView {
        digest: v.digest.to_string(),
        size_bytes: v.size_bytes,
        imports: v.imports.clone(),
        compile_ms: v.compile_ms,
        created_at: v.created_at.to_string(),
    }
}

fn step_view(r: &StepRecord) -> StepView {
    StepView {
        name: r.name.to_string(),
        latest_digest: r
            .versions
            .last()
            .map(|v| v.digest.to_string())
            .unwrap_or_default(),
        versions: r.versions.iter().map(version_view).collect(),
    }
}

fn step_name(name: &str) -> Result<StepName, ApiError> {
    name.parse()
        .map_err(|m: String| ApiError::bad_request(format!("path segment `name`: {m}")))
}

/// Uploads a component as a new version of a step (the body is the
/// `application/wasm` bytes). Validates and precompiles it first.
#[utoipa::path(put, path = "/v1/steps/{name}", tag = "steps",
    params(("name" = String, Path, description = "step name")),
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    security(("bearer" = [])),
    responses((status = 201, body = Uploaded, description = "a new version"),
        (status = 200, body = Uploaded, description = "the step already had these bytes"),
        (status = 413, body = super::problem::ProblemBody), (status = 422, body = super::problem::ProblemBody)))]
pub async fn put(
    Tenant(tenant): Tenant,
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let name = step_name(&name)?;
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body is empty; send the component's bytes as application/wasm",
        ));
    }
    let digest = Digest::of(&body);
    let existing = state.store.step(&tenant, &name).await?;
    if let Some(existing) = &existing
        && let Some(v) = existing.versions.iter().find(|v| v.digest == digest)
    {
        return Ok((
            StatusCode::OK,
            Json(Uploaded {
                name: name.to_string(),
                digest: v.digest.to_string(),
                size_bytes: v.size_bytes,
                imports: v.imports.clone(),
                compile_ms: v.compile_ms,
            }),
        ));
    }
    let quotas = state.quotas(&caller);
    if quotas.max_steps.is_some() || quotas.max_component_bytes.is_some() {
        let usage = state.store.usage(&tenant).await?;
        if existing.is_none() {
            super::quotas::check("max_steps", quotas.max_steps, usage.steps, 1, "steps")?;
        }
        // A digest the tenant already keeps under another name costs
        // nothing more.
        let kept = state
            .store
            .steps(&tenant)
            .await?
            .iter()
            .any(|s| s.versions.iter().any(|v| v.digest == digest));
        if !kept {
            super::quotas::check(
                "max_component_bytes",
                quotas.max_component_bytes,
                usage.component_bytes,
                body.len() as u64,
                "bytes of components",
            )?;
        }
    }
    let bytes = Arc::new(body.to_vec());
    let registered = state
        .registrar
        .register(bytes.clone())
        .await
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    state.store.put_component(&digest, &bytes).await?;
    let version = StepVersion {
        digest,
        size_bytes: bytes.len() as u64,
        imports: registered.imports,
        compile_ms: registered.compile_ms,
        created_at: crate::engine::now_pub(),
    };
    state
        .store
        .put_step_version(&tenant, &name, &version)
        .await?;
    state.engine.forget_steps(&tenant);
    Ok((
        StatusCode::CREATED,
        Json(Uploaded {
            name: name.to_string(),
            digest: digest.to_string(),
            size_bytes: version.size_bytes,
            imports: version.imports,
            compile_ms: version.compile_ms,
        }),
    ))
}

/// Lists the tenant's steps.
#[utoipa::path(get, path = "/v1/steps", tag = "steps", security(("bearer" = [])),
    responses((status = 200, body = StepList)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Json<StepList>, ApiError> {
    let steps = state.store.steps(&tenant).await?;
    Ok(Json(StepList {
        items: steps.iter().map(step_view).collect(),
    }))
}

/// A step with its versions.
#[utoipa::path(get, path = "/v1/steps/{name}", tag = "steps",
    params(("name" = String, Path, description = "step name")), security(("bearer" = [])),
    responses((status = 200, body = StepView), (status = 404, body = super::problem::ProblemBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<StepView>, ApiError> {
    let name = step_name(&name)?;
    let step = state
        .store
        .step(&tenant, &name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("step `{name}` not found")))?;
    Ok(Json(step_view(&step)))
}

/// Deletes a step and its versions. Executions already accepted keep
/// running the version they resolved.
#[utoipa::path(delete, path = "/v1/steps/{name}", tag = "steps",
    params(("name" = String, Path, description = "step name")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = super::problem::ProblemBody)))]
pub async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = step_name(&name)?;
    let deleted = state.store.delete_step(&tenant, &name).await?;
    state.engine.forget_steps(&tenant);
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("step `{name}` not found")))
    }
}
