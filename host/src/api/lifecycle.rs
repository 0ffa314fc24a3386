//! `POST /v1/executions/{execution_id}/pause` and `/resume`.
//!
//! Both store their request in the execution's inbox first, so they reach
//! it wherever it is driven, then wait a few seconds for it to act: 200 with
//! the record once it has, 202 with the record as it stands when the request
//! is stored but not yet applied (poll the execution).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::auth::Tenant;
use super::{ApiError, AppState};
use crate::model::{Execution, ExecutionId};

fn answer((exec, applied): (Execution, bool)) -> Response {
    let status = if applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(exec)).into_response()
}

/// Pauses a queued, running or waiting execution: no new step starts, an
/// attempt already running finishes, and the status becomes `paused` until
/// the execution is resumed. Signals sent meanwhile are kept; the workflow's
/// `timeout` keeps running.
#[utoipa::path(post, path = "/v1/executions/{execution_id}/pause", tag = "executions",
    params(("execution_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Execution, description = "paused (or finished meanwhile)"),
        (status = 202, body = Execution, description = "the pause is stored and will take effect; poll the execution"),
        (status = 404, body = super::problem::ProblemBody, description = "no such execution for this tenant"),
        (status = 409, body = super::problem::ProblemBody, description = "already paused, or finished")))]
pub async fn pause(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let done = state
        .engine
        .pause(&tenant, &ExecutionId::new_unchecked(id))
        .await?;
    Ok(answer(done))
}

/// Resumes an execution: a `paused` one continues; a `waiting` one's
/// `wait: {for|until}` steps end now (signal waits keep waiting); a
/// `failed`, `cancelled` or `timed_out` one restarts from its steps that did
/// not succeed (succeeded steps keep their outputs and are not run again),
/// with a fresh deadline and retry budget. The history records the resume
/// (an entry with `reason: "resume"`).
#[utoipa::path(post, path = "/v1/executions/{execution_id}/resume", tag = "executions",
    params(("execution_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Execution, description = "resumed"),
        (status = 202, body = Execution, description = "the resume is stored and will take effect; poll the execution"),
        (status = 404, body = super::problem::ProblemBody, description = "no such execution for this tenant"),
        (status = 409, body = super::problem::ProblemBody, description = "nothing to resume: the execution is queued, running, succeeded, or waits only for signals")))]
pub async fn resume(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let done = state
        .engine
        .resume(&tenant, &ExecutionId::new_unchecked(id))
        .await?;
    Ok(answer(done))
}
