//! Batch runs: `POST /v1/executions/batch` creates one execution per
//! input in one transaction; `GET /v1/batches/{batch_id}` says where they
//! stand. The executions themselves are read, listed (`?batch_id=`) and
//! cancelled as any others.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Tenant};
use super::executions::{BODY_DOES_NOT_FIT, VersionField, idempotency, parse_json};
use super::{ApiError, AppState, limits};
use crate::engine::{BatchInput, BatchSubmission, VersionSel};
use crate::model::{BatchId, BatchSummary, WorkflowId};

/// One input of a batch.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInputBody {
    /// The execution's input; the first step receives it.
    #[serde(default)]
    #[schema(value_type = serde_json::Value)]
    pub input_data: serde_json::Value,
    /// This execution's own opaque data, returned with it and copied into
    /// each of its callbacks.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub custom_data: Option<serde_json::Value>,
}

/// The body of `POST /v1/executions/batch`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The workflow every execution runs.
    pub workflow_id: String,
    /// `"latest"` (the default) or a version number, resolved once for
    /// the whole batch.
    #[serde(default)]
    #[schema(value_type = String, example = "latest")]
    pub workflow_version: VersionField,
    /// One execution per input, 1 to `max-batch-executions` (default
    /// 1,000) of them.
    pub inputs: Vec<BatchInputBody>,
    /// Where every execution's signed callbacks go, and which events;
    /// without it, the definition's `callback`, if any.
    #[serde(default)]
    pub callback: Option<crate::model::Callback>,
}

/// A created batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchCreated {
    /// The batch; `GET /v1/batches/{batch_id}` summarises it.
    pub batch_id: String,
    /// Its executions' ids, in the order of the inputs.
    pub execution_ids: Vec<String>,
}

/// Creates one queued execution of a workflow per input, all in one
/// transaction: every input is checked first, and one that does not fit
/// refuses the whole batch (422, each problem at `$.inputs[i]…`), so a
/// batch is created whole or not at all. Each execution carries its own
/// `custom_data`, and so do its callbacks. A batch counts as one
/// submission per input against the tenant's rate and backlog quotas. With
/// an `Idempotency-Key`, a repeat of the same request returns the batch it
/// created (a different body with that key is a 422).
#[utoipa::path(post, path = "/v1/executions/batch", tag = "executions", request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "deduplicates batches per tenant: a repeat returns the batch first created")),
    security(("bearer" = [])),
    responses((status = 202, body = BatchCreated),
        (status = 400, body = super::problem::ProblemBody, description = "malformed JSON or header"),
        (status = 404, body = super::problem::ProblemBody, description = "no such workflow (version)"),
        (status = 413, body = super::problem::ProblemBody, description = "the body is over `max-batch-body-bytes`"),
        (status = 415, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody, description = "an input that does not fit (its index in the path), no inputs, more than `max-batch-executions`, more than the tenant's burst or backlog can take, or a callback that cannot be delivered")))]
pub async fn run_batch(
    Tenant(tenant): Tenant,
    Caller(caller): Caller,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if headers.contains_key("x-on-conflict") {
        return Err(ApiError::bad_request(
            "header `X-On-Conflict` does not apply to batches: a repeated `Idempotency-Key` \
             returns the batch it created",
        ));
    }
    let idem = idempotency(&headers, &body)?;
    let req: BatchRequest = parse_json(&headers, &body)?;
    let max = state.settings.max_batch_executions;
    let count = u32::try_from(req.inputs.len()).unwrap_or(u32::MAX);
    if count == 0 || count > max {
        return Err(ApiError::at(
            BODY_DOES_NOT_FIT,
            "$.inputs",
            format!(
                "{count} inputs: a batch has 1 to {max} (config `max-batch-executions`); \
                 split a larger one"
            ),
        ));
    }
    let workflow_id: WorkflowId = req
        .workflow_id
        .parse()
        .map_err(|m: String| ApiError::at(BODY_DOES_NOT_FIT, "$.workflow_id", m))?;
    let admitted = match limits::admit(&state, &caller, count).await {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refusal),
    };
    let batch = BatchSubmission {
        workflow_id,
        version: match req.workflow_version {
            VersionField::Latest => VersionSel::Latest,
            VersionField::Exact(v) => VersionSel::Exact(v),
        },
        inputs: req
            .inputs
            .into_iter()
            .map(|i| BatchInput {
                input_data: i.input_data,
                custom_data: i.custom_data,
            })
            .collect(),
        callback: req.callback,
    };
    let accepted = state.engine.submit_batch(&tenant, batch, idem).await?;
    let mut resp = (
        StatusCode::ACCEPTED,
        [(
            header::LOCATION,
            format!("/v1/batches/{}", accepted.batch_id),
        )],
        Json(BatchCreated {
            batch_id: accepted.batch_id.to_string(),
            execution_ids: accepted
                .execution_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
        }),
    )
        .into_response();
    admitted.add_to(&mut resp);
    Ok(resp)
}

/// Where a batch stands: how many of its executions are in each status,
/// how many have finished, and whether all have. List them with
/// `GET /v1/executions?batch_id=`. Counts cover the executions kept: the
/// finished ones go after the server's `execution-retention`, and the
/// batch is a 404 once all have gone.
#[utoipa::path(get, path = "/v1/batches/{batch_id}", tag = "executions",
    params(("batch_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = BatchSummary),
        (status = 404, body = super::problem::ProblemBody, description = "no such batch for this tenant, or all of its executions were deleted")))]
pub async fn get_batch(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<BatchSummary>, ApiError> {
    let summary = state
        .engine
        .batch(&tenant, &BatchId::new_unchecked(id))
        .await?;
    Ok(Json(summary))
}
