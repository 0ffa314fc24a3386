//! `/v1/workflows`: versioned workflow definitions (JSON or YAML).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Tenant};
use super::{ApiError, AppState};
use crate::engine::Definition;
use crate::model::WorkflowId;
use crate::store::WorkflowRecord;

/// A stored workflow version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowView {
    /// The workflow's id.
    pub workflow_id: String,
    /// The version, from 1.
    pub version: u32,
    /// The definition.
    pub definition: Definition,
    /// When this version was stored.
    pub created_at: String,
}

/// A list of workflows (latest versions).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WorkflowList {
    /// The workflows, by id.
    pub items: Vec<WorkflowView>,
}

/// `?version=N` or `?version=latest`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct VersionQuery {
    /// A version number or `latest` (the default).
    pub version: Option<String>,
}

fn view(r: WorkflowRecord) -> Result<WorkflowView, ApiError> {
    let definition = Definition::from_value(r.definition)
        .map_err(|p| ApiError::internal(format!("stored definition is invalid: {p:?}")))?;
    Ok(WorkflowView {
        workflow_id: r.workflow_id.to_string(),
        version: r.version,
        definition,
        created_at: r.created_at.to_string(),
    })
}

fn workflow_id(id: &str) -> Result<WorkflowId, ApiError> {
    id.parse()
        .map_err(|m: String| ApiError::bad_request(format!("path segment `workflow_id`: {m}")))
}

/// Stores a definition (JSON, or YAML with a YAML content type). A changed
/// definition becomes the next version; an unchanged one keeps its version.
#[utoipa::path(put, path = "/v1/workflows/{workflow_id}", tag = "workflows",
    params(("workflow_id" = String, Path)),
    request_body(content = Definition, content_type = "application/json", description = "JSON, or YAML with `Content-Type: application/yaml`"),
    security(("bearer" = [])),
    responses((status = 201, body = WorkflowView, description = "a new version"),
        (status = 200, body = WorkflowView, description = "unchanged"),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn put(
    Tenant(tenant): Tenant,
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<WorkflowView>), ApiError> {
    let id = workflow_id(&id)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let yaml = content_type.contains("yaml");
    if !yaml && !content_type.contains("json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type `{content_type}`; send application/json or application/yaml"
            ),
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let def = Definition::parse(text, yaml)
        .map_err(|p| ApiError::invalid("the workflow definition is invalid", p))?;
    let registered: HashMap<String, Vec<crate::model::Digest>> = state
        .store
        .steps(&tenant)
        .await?
        .into_iter()
        .map(|s| {
            (
                s.name.to_string(),
                s.versions.iter().map(|v| v.digest).collect(),
            )
        })
        .collect();
    let registrar = state.registrar.clone();
    let quotas = state.quotas(&caller);
    let ceilings = |o: &crate::model::Overrides| {
        registrar.check_limits(o)?;
        quotas.above_step_ceiling(o).map_or(Ok(()), Err)
    };
    let mut problems = def.validate(&crate::engine::definition::Context {
        path_id: id.as_str(),
        steps: &registered,
        ceilings: &ceilings,
        http_caps: state.settings.step_http_caps,
    });
    if let Some(cb) = &def.callback {
        problems.extend(state.engine.callback_problems(cb, "$.callback"));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid(
            "the workflow definition is invalid",
            problems,
        ));
    }
    let latest = state.store.workflow(&tenant, &id, None).await?;
    if latest.as_ref().is_none_or(|w| w.deleted_at.is_some()) && quotas.max_workflows.is_some() {
        let usage = state.store.usage(&tenant).await?;
        super::quotas::check(
            "max_workflows",
            quotas.max_workflows,
            usage.workflows,
            1,
            "workflows",
        )?;
    }
    let before = latest.map(|w| w.version);
    let value = serde_json::to_value(&def).map_err(ApiError::internal)?;
    let record = state.store.put_workflow(&tenant, &id, &value).await?;
    state.engine.forget_workflow(&tenant, &id);
    let status = if before == Some(record.version) {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(record)?)))
}

/// The tenant's workflows, latest versions.
#[utoipa::path(get, path = "/v1/workflows", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, body = WorkflowList)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Json<WorkflowList>, ApiError> {
    let items = state
        .store
        .workflows(&tenant)
        .await?
        .into_iter()
        .filter(|w| w.deleted_at.is_none())
        .map(view)
        .collect::<Result<_, _>>()?;
    Ok(Json(WorkflowList { items }))
}

/// One version of a workflow (`?version=N`, latest by default).
#[utoipa::path(get, path = "/v1/workflows/{workflow_id}", tag = "workflows",
    params(("workflow_id" = String, Path), VersionQuery), security(("bearer" = [])),
    responses((status = 200, body = WorkflowView), (status = 404, body = super::problem::ProblemBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<WorkflowView>, ApiError> {
    let id = workflow_id(&id)?;
    let version = match q.version.as_deref() {
        None | Some("latest") => None,
        Some(v) => Some(v.parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!(
                "query parameter `version`: `{v}` is not a version number or `latest`"
            ))
        })?),
    };
    let record = state
        .store
        .workflow(&tenant, &id, version)
        .await?
        .filter(|w| w.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found(format!("workflow `{id}` not found")))?;
    Ok(Json(view(record)?))
}

/// Deletes a workflow: no new run can start it (runs, schedules' ticks).
/// Executions already running finish on the version they run; a later
/// `PUT` stores a new version.
#[utoipa::path(delete, path = "/v1/workflows/{workflow_id}", tag = "workflows",
    params(("workflow_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody)))]
pub async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = workflow_id(&id)?;
    let deleted = state
        .store
        .delete_workflow(&tenant, &id, crate::engine::now_pub())
        .await?;
    state.engine.forget_workflow(&tenant, &id);
    if deleted {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("workflow `{id}` not found")))
    }
}
