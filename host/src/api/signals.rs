//! `POST /v1/executions/{execution_id}/signals/{name}`: deliver a signal to
//! an execution, for a wait step that waits for it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::Tenant;
use super::executions::parse_json;
use super::{ApiError, AppState};
use crate::model::{ExecutionId, check_name};

/// What a delivery did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalAccepted {
    /// The execution.
    pub execution_id: String,
    /// The signal's name.
    pub name: String,
    /// Its position among the execution's events; signals are consumed in
    /// this order.
    pub sequence: u64,
    /// True when an earlier delivery with the same `Idempotency-Key` was
    /// stored: this one changed nothing.
    pub duplicate: bool,
}

/// Delivers a signal with a JSON payload (any JSON value). It is stored
/// before the answer and consumed exactly once, in order, by the wait step
/// that waits for its name, even if that step starts waiting later.
#[utoipa::path(post, path = "/v1/executions/{execution_id}/signals/{name}", tag = "executions",
    params(("execution_id" = String, Path), ("name" = String, Path, description = "the signal name a wait step waits for"),
        ("Idempotency-Key" = Option<String>, Header, description = "a retried delivery with the same key counts once")),
    request_body(content = Object, description = "the payload, any JSON value"),
    security(("bearer" = [])),
    responses((status = 202, body = SignalAccepted),
        (status = 400, body = super::problem::ProblemBody, description = "malformed JSON, a bad name or key"),
        (status = 404, body = super::problem::ProblemBody, description = "no such execution for this tenant"),
        (status = 409, body = super::problem::ProblemBody, description = "the execution has finished (a retry with the key of an earlier delivery gets 202 with `duplicate: true`)"),
        (status = 413, body = super::problem::ProblemBody, description = "the payload is over `max-signal-bytes`"),
        (status = 415, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody, description = "the payload does not match the wait step's `schema`; it was not delivered")))]
pub async fn send(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_name("signal name", &name)
        .map_err(|m| ApiError::bad_request(format!("path parameter `name`: {m}")))?;
    let limit = state.settings.max_signal_bytes;
    if body.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the signal payload is {} bytes, over the limit of {limit} bytes",
                body.len()
            ),
        ));
    }
    let payload: serde_json::Value = parse_json(&headers, &body)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "header `Idempotency-Key` must be 1 to 255 visible characters",
                    )
                })?
                .to_owned(),
        ),
    };
    let id = ExecutionId::new_unchecked(id);
    let sent = state
        .engine
        .signal(&tenant, &id, &name, payload, key)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SignalAccepted {
            execution_id: id.to_string(),
            name,
            sequence: sent.sequence,
            duplicate: sent.duplicate,
        }),
    )
        .into_response())
}
