//! `/v1/executions`: run workflows synchronously or asynchronously, read,
//! list, long-poll and cancel executions.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest as _, Sha256};

use super::auth::Tenant;
use super::{ApiError, AppState};
use crate::engine::{StartAt, Submission, Submitted, Until, VersionSel};
use crate::model::{Execution, ExecutionId, Status, Timestamp, WorkflowId};
use crate::store::{ExecutionFilter, Idempotency, OnConflict};

/// A JSON body whose rejections are precise problems: 415 without a JSON
/// content type, 400 for malformed JSON, 422 for JSON of the wrong shape.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse_json(&headers, &bytes).map(Self)
    }
}

/// The detail of a 422 for a request body of the wrong shape.
pub(super) const BODY_DOES_NOT_FIT: &str = "the request body does not fit";

/// `"latest"` or a version number.
#[derive(Debug, Clone, Copy, Default)]
pub enum VersionField {
    /// The newest version.
    #[default]
    Latest,
    /// A specific version.
    Exact(u32),
}

impl<'de> Deserialize<'de> for VersionField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) if s == "latest" => Ok(Self::Latest),
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(Self::Exact)
                .ok_or_else(|| {
                    serde::de::Error::custom(
                        "`workflow_version` must be a positive integer or \"latest\"",
                    )
                }),
            _ => Err(serde::de::Error::custom(
                "`workflow_version` must be a positive integer or \"latest\"",
            )),
        }
    }
}

/// The body of `POST /v1/executions` and `POST /v1/executions/async`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The workflow to run.
    pub workflow_id: String,
    /// `"latest"` (the default) or a version number.
    #[serde(default)]
    #[schema(value_type = String, example = "latest")]
    pub workflow_version: VersionField,
    /// The execution's input; the first step receives it.
    #[serde(default)]
    #[schema(value_type = serde_json::Value)]
    pub input_data: serde_json::Value,
    /// Opaque data returned with the execution.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub custom_data: Option<serde_json::Value>,
    /// Async only: start at this RFC 3339 time instead of now (status
    /// `scheduled` until then; a time already past starts it at once).
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime, example = "2030-01-01T09:00:00Z")]
    pub scheduled_for: Option<String>,
    /// Async only: start this long after acceptance (`90s`, `15m`, `2h`,
    /// `1d`, `PT1H`). Not with `scheduled_for`.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "15m")]
    pub delay: Option<String>,
    /// Where to POST signed callbacks about this execution, and which
    /// events (default `["execution.finished"]`); without it, the
    /// definition's `callback`, if any.
    #[serde(default)]
    pub callback: Option<crate::model::Callback>,
}

/// A handed-off or accepted execution.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Its status when answered.
    pub status: Status,
    /// Its id; poll `GET /v1/executions/{execution_id}`.
    pub execution_id: String,
}

/// Query of the synchronous run.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SyncQuery {
    /// How long to wait before handing off (202). Also `X-Wait-For-Seconds`.
    pub wait_for_seconds: Option<String>,
    /// Return as soon as this step (by workflow step id) finishes (206 when
    /// the workflow has not finished).
    pub wait_until_step: Option<String>,
}

/// Query of `GET /v1/executions/{id}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct GetQuery {
    /// Long-poll: wait up to this many seconds for a terminal status.
    pub wait_for_seconds: Option<String>,
}

/// Query of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only this status.
    pub status: Option<String>,
    /// Only this workflow.
    pub workflow_id: Option<String>,
    /// Only those created after this RFC 3339 time.
    pub created_after: Option<String>,
    /// Only those created before this RFC 3339 time.
    pub created_before: Option<String>,
    /// Only those started by this schedule.
    pub schedule_id: Option<String>,
    /// Only those of this batch run (`POST /v1/executions/batch`).
    pub batch_id: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of executions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExecutionPage {
    /// The executions.
    pub items: Vec<Execution>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

fn wait_duration(
    query: Option<&str>,
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Duration, ApiError> {
    let header_value = headers
        .get("x-wait-for-seconds")
        .map(|v| v.to_str().unwrap_or("?").to_owned());
    let (source, text) = match (query, header_value.as_deref()) {
        (Some(q), _) => ("query parameter `wait_for_seconds`", q),
        (None, Some(h)) => ("header `X-Wait-For-Seconds`", h),
        (None, None) => return Ok(state.settings.default_wait),
    };
    let secs: f64 = text
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| {
            ApiError::bad_request(format!("{source}: `{text}` is not a number of seconds"))
        })?;
    // More seconds than a Duration holds (1e300) is as long as the server
    // waits at most.
    Ok(Duration::try_from_secs_f64(secs)
        .unwrap_or(Duration::MAX)
        .min(state.settings.max_wait))
}

pub(super) fn idempotency(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Idempotency>, ApiError> {
    let Some(key) = headers.get("idempotency-key") else {
        if headers.contains_key("x-on-conflict") {
            return Err(ApiError::bad_request(
                "header `X-On-Conflict` needs an `Idempotency-Key` header",
            ));
        }
        return Ok(None);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::bad_request("header `Idempotency-Key` must be 1 to 255 visible characters")
        })?;
    let on_conflict = match headers
        .get("x-on-conflict")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("RETURN_EXISTING") => OnConflict::ReturnExisting,
        Some("FAIL") => OnConflict::Fail,
        Some("FAIL_ON_RUNNING") => OnConflict::FailOnRunning,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "header `X-On-Conflict`: `{other}` is not RETURN_EXISTING, FAIL or FAIL_ON_RUNNING"
            )));
        }
    };
    // The hash covers the parsed body, so whitespace and key order do not
    // make the same request look different.
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| v.to_string())
        .unwrap_or_default();
    Ok(Some(Idempotency {
        key: key.to_owned(),
        request_hash: Sha256::digest(canonical.as_bytes()).into(),
        on_conflict,
    }))
}

/// When a postponed run starts, from `scheduled_for` or `delay`.
fn start_at(req: &RunRequest, postpone: bool) -> Result<Option<StartAt>, ApiError> {
    let problem = |path: &str, message: String| ApiError::at(BODY_DOES_NOT_FIT, path, message);
    if !postpone {
        for (field, given) in [
            ("scheduled_for", req.scheduled_for.is_some()),
            ("delay", req.delay.is_some()),
        ] {
            if given {
                return Err(problem(
                    &format!("$.{field}"),
                    format!(
                        "a synchronous run starts now; postpone it with `{field}` on \
                         POST /v1/executions/async"
                    ),
                ));
            }
        }
        return Ok(None);
    }
    match (&req.scheduled_for, &req.delay) {
        (Some(_), Some(_)) => Err(problem(
            "$.delay",
            "give `scheduled_for` or `delay`, not both".into(),
        )),
        (Some(t), None) => t.parse().map(|t| Some(StartAt::Time(t))).map_err(|e| {
            problem(
                "$.scheduled_for",
                format!("`{t}` is not an RFC 3339 time such as `2030-01-01T09:00:00Z`: {e}"),
            )
        }),
        (None, Some(d)) => crate::engine::definition::parse_duration(d)
            .map(|d| Some(StartAt::Delay(d)))
            .map_err(|m| problem("$.delay", m)),
        (None, None) => Ok(None),
    }
}

/// A submission read from a request: what to run, and its idempotency.
fn submission(
    headers: &HeaderMap,
    body: &Bytes,
    postpone: bool,
) -> Result<(Submission, Option<Idempotency>), ApiError> {
    let idem = idempotency(headers, body)?;
    let req: RunRequest = parse_json(headers, body)?;
    let start = start_at(&req, postpone)?;
    let workflow_id: WorkflowId = req
        .workflow_id
        .parse()
        .map_err(|m: String| ApiError::at(BODY_DOES_NOT_FIT, "$.workflow_id", m))?;
    let sub = Submission {
        workflow_id,
        version: match req.workflow_version {
            VersionField::Latest => VersionSel::Latest,
            VersionField::Exact(v) => VersionSel::Exact(v),
        },
        input_data: req.input_data,
        custom_data: req.custom_data,
        start,
        callback: req.callback,
    };
    Ok((sub, idem))
}

async fn submit(
    tenant: &crate::model::TenantId,
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    postpone: bool,
) -> Result<Submitted, ApiError> {
    let (sub, idem) = submission(headers, &body, postpone)?;
    Ok(state.engine.submit(tenant, sub, idem).await?)
}

pub(super) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as `Content-Type: application/json`",
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    serde_json::from_value(value).map_err(|e| ApiError::at(BODY_DOES_NOT_FIT, "$", e.to_string()))
}

/// Runs a workflow and waits for it: 200 with the record when it finishes in
/// time, 206 with the partial record when `wait_until_step` finished first,
/// 202 with `{status, execution_id}` when the wait ends first (the
/// execution goes on; poll it).
#[utoipa::path(post, path = "/v1/executions", tag = "executions", request_body = RunRequest,
    params(SyncQuery,
        ("X-Wait-For-Seconds" = Option<String>, Header, description = "as `wait_for_seconds`"),
        ("Idempotency-Key" = Option<String>, Header, description = "deduplicates submissions per tenant"),
        ("X-On-Conflict" = Option<String>, Header, description = "RETURN_EXISTING (default), FAIL or FAIL_ON_RUNNING")),
    security(("bearer" = [])),
    responses((status = 200, body = Execution), (status = 206, body = Execution), (status = 202, body = Accepted),
        (status = 400, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody),
        (status = 409, body = super::problem::ProblemBody), (status = 422, body = super::problem::ProblemBody)))]
pub async fn run_sync(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(q): Query<SyncQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let wait = wait_duration(q.wait_for_seconds.as_deref(), &headers, &state)?;
    let (sub, idem) = submission(&headers, &body, false)?;
    let until = match q.wait_until_step {
        Some(step) => Until::Step(step),
        None => Until::Terminal,
    };
    let (submitted, exec) = state
        .engine
        .submit_and_wait(&tenant, sub, idem, &until, wait)
        .await?;
    let id = submitted.execution().execution_id.clone();
    if let Until::Step(step) = &until
        && submitted.execution().step(step).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "query parameter `wait_until_step`: the workflow has no step `{step}` (execution {id} was started)"
        )));
    }
    let step_done = until.reached(&exec);
    Ok(if exec.status.is_terminal() {
        (StatusCode::OK, Json(exec)).into_response()
    } else if step_done {
        (StatusCode::PARTIAL_CONTENT, Json(exec)).into_response()
    } else {
        (
            StatusCode::ACCEPTED,
            [(header::LOCATION, format!("/v1/executions/{id}"))],
            Json(Accepted {
                status: exec.status,
                execution_id: id.to_string(),
            }),
        )
            .into_response()
    })
}

/// Accepts a workflow run and answers at once with 202. With
/// `scheduled_for` or `delay` the run is postponed: it is stored at once
/// with status `scheduled` and starts at that time; until then it can be
/// cancelled, signalled (signals wait for it to start) or started now with
/// `POST /v1/executions/{execution_id}/resume`.
#[utoipa::path(post, path = "/v1/executions/async", tag = "executions", request_body = RunRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "deduplicates submissions per tenant"),
        ("X-On-Conflict" = Option<String>, Header, description = "RETURN_EXISTING (default), FAIL or FAIL_ON_RUNNING")),
    security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 404, body = super::problem::ProblemBody),
        (status = 409, body = super::problem::ProblemBody), (status = 422, body = super::problem::ProblemBody)))]
pub async fn run_async(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let submitted = submit(&tenant, &state, &headers, body, true).await?;
    let exec = submitted.execution();
    Ok((
        StatusCode::ACCEPTED,
        [(
            header::LOCATION,
            format!("/v1/executions/{}", exec.execution_id),
        )],
        Json(Accepted {
            status: exec.status,
            execution_id: exec.execution_id.to_string(),
        }),
    )
        .into_response())
}

/// An execution with its history, steps and attempts. With
/// `wait_for_seconds` it long-polls until the execution is terminal.
/// Finished executions are kept for the server's `execution-retention`
/// (default 30 days) after they finished, then deleted: 404.
#[utoipa::path(get, path = "/v1/executions/{execution_id}", tag = "executions",
    params(("execution_id" = String, Path), GetQuery), security(("bearer" = [])),
    responses((status = 200, body = Execution),
        (status = 404, description = "No such execution for this tenant, or it finished longer ago than the retention and was deleted", body = super::problem::ProblemBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Json<Execution>, ApiError> {
    let id = ExecutionId::new_unchecked(id);
    let exec = match q.wait_for_seconds.as_deref() {
        None => state.engine.get(&tenant, &id).await?,
        Some(w) => {
            let wait = wait_duration(Some(w), &headers, &state)?;
            state
                .engine
                .wait(&tenant, &id, &Until::Terminal, wait)
                .await?
        }
    };
    let mut exec = exec;
    exec.blocked = state.engine.blocked(&exec).await?;
    exec.deliveries = state.engine.deliveries(&exec).await?;
    Ok(Json(exec))
}

/// The `limit` query parameter of a list: 1 to 100, 20 by default.
pub(super) fn page_limit(limit: Option<&str>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(20),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "query parameter `limit`: `{l}` is not a number from 1 to 100"
                ))
            }),
    }
}

fn parse_time(name: &str, v: Option<&str>) -> Result<Option<Timestamp>, ApiError> {
    v.map(|t| {
        t.parse::<Timestamp>().map_err(|e| {
            ApiError::bad_request(format!(
                "query parameter `{name}`: `{t}` is not an RFC 3339 time ({e})"
            ))
        })
    })
    .transpose()
}

/// The tenant's executions, newest first, filtered and paged by cursor.
#[utoipa::path(get, path = "/v1/executions", tag = "executions", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = ExecutionPage), (status = 400, body = super::problem::ProblemBody)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<Status>())
        .transpose()
        .map_err(|m| ApiError::bad_request(format!("query parameter `status`: {m}")))?;
    let workflow_id = q
        .workflow_id
        .as_deref()
        .map(|w| w.parse::<WorkflowId>())
        .transpose()
        .map_err(|m| ApiError::bad_request(format!("query parameter `workflow_id`: {m}")))?;
    let schedule_id = q
        .schedule_id
        .as_deref()
        .map(|s| s.parse::<crate::model::ScheduleId>())
        .transpose()
        .map_err(|m| ApiError::bad_request(format!("query parameter `schedule_id`: {m}")))?;
    let batch_id = q
        .batch_id
        .as_deref()
        .map(|s| s.parse::<crate::model::BatchId>())
        .transpose()
        .map_err(|m| ApiError::bad_request(format!("query parameter `batch_id`: {m}")))?;
    let limit = page_limit(q.limit.as_deref())?;
    let filter = ExecutionFilter {
        status,
        workflow_id,
        created_after: parse_time("created_after", q.created_after.as_deref())?,
        created_before: parse_time("created_before", q.created_before.as_deref())?,
        schedule_id,
        batch_id,
    };
    let page = state
        .store
        .executions(&tenant, &filter, limit, q.cursor.as_deref())
        .await?;
    Ok(Json(ExecutionPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Cancels a queued or running execution, interrupting its running attempt.
#[utoipa::path(post, path = "/v1/executions/{execution_id}/cancel", tag = "executions",
    params(("execution_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Execution), (status = 404, body = super::problem::ProblemBody),
        (status = 409, body = super::problem::ProblemBody, description = "already finished"),
        (status = 503, body = super::problem::ProblemBody, description = "the cancel is stored but the execution did not stop within 30 s")))]
pub async fn cancel(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Execution>, ApiError> {
    let exec = state
        .engine
        .cancel(&tenant, &ExecutionId::new_unchecked(id))
        .await?;
    Ok(Json(exec))
}
