//! `/v1/schedules`: cron schedules that run a workflow at their ticks.
//! Edges' clients' `POST /v1/schedules/{id}/update` and `.../delete` are
//! the same operations as `PATCH` and `DELETE`.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};

use super::auth::Tenant;
use super::executions::{Accepted, VersionField, parse_json};
use super::{ApiError, AppState};
use crate::engine::VersionSel;
use crate::engine::schedule::{NewSchedule, ScheduleChange, ScheduleView};
use crate::model::{
    FireError, Overlap, Schedule, ScheduleId, ScheduleState, Status, Timestamp, WorkflowId,
};
use crate::store::ScheduleFilter;

/// The body of `POST /v1/schedules`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// The schedule's id (1 to 64 letters, digits, `-`, `_`, `.`);
    /// generated when absent.
    #[serde(default)]
    pub schedule_id: Option<String>,
    /// The workflow each tick runs.
    pub workflow_id: String,
    /// `"latest"` (the default: the newest version at each tick) or a
    /// version number.
    #[serde(default)]
    #[schema(value_type = String, example = "latest")]
    pub workflow_version: VersionField,
    /// 5 fields (minute hour day-of-month month day-of-week) or 6 with a
    /// leading seconds field; lists, ranges, steps, names, `L`, `W`, `#`
    /// and `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    #[schema(example = "0 9 * * MON-FRI")]
    pub cron: String,
    /// The IANA time zone the expression is read in (default `UTC`).
    #[serde(default)]
    #[schema(example = "Europe/Berlin")]
    pub timezone: Option<String>,
    /// The input of every execution.
    #[serde(default)]
    #[schema(value_type = serde_json::Value)]
    pub input_data: serde_json::Value,
    /// Opaque data copied to every execution.
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub custom_data: Option<serde_json::Value>,
    /// Where callbacks about every execution go: `{url, events?}`.
    #[serde(default)]
    pub callback: Option<crate::model::Callback>,
    /// `skip` (default), `buffer_one`, `allow_all` or `cancel_other`.
    #[serde(default)]
    #[schema(example = "skip")]
    pub overlap: Option<String>,
    /// How old a missed tick may be and still fire after downtime (default
    /// `1h`); older ticks are counted in `missed`.
    #[serde(default)]
    #[schema(example = "1h")]
    pub catchup_window: Option<String>,
    /// No tick before this RFC 3339 time.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_at: Option<String>,
    /// No tick after this RFC 3339 time; the schedule is then `completed`.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end_at: Option<String>,
    /// Create it paused.
    #[serde(default)]
    pub paused: bool,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
}

/// `null` and absent told apart: `Some(None)` is an explicit `null`.
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `PATCH /v1/schedules/{id}` (and `POST .../update`): each
/// field given replaces the stored one; `null` clears an optional one.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSchedule {
    /// The workflow.
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// `"latest"` or a version number.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub workflow_version: Option<VersionField>,
    /// The cron expression.
    #[serde(default)]
    pub cron: Option<String>,
    /// The IANA time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The input of every execution.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub input_data: Option<serde_json::Value>,
    /// Opaque data copied to every execution.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub custom_data: Option<Option<serde_json::Value>>,
    /// Where callbacks go (`null` removes it).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<crate::model::Callback>)]
    pub callback: Option<Option<crate::model::Callback>>,
    /// The overlap policy.
    #[serde(default)]
    pub overlap: Option<String>,
    /// The catch-up window.
    #[serde(default)]
    pub catchup_window: Option<String>,
    /// No tick before this time.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_at: Option<Option<String>>,
    /// No tick after this time.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end_at: Option<Option<String>>,
    /// Pause (`true`) or resume (`false`) it.
    #[serde(default)]
    pub paused: Option<bool>,
    /// Free text.
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
}

/// One execution a schedule started.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunView {
    /// The execution.
    pub execution_id: String,
    /// The tick it ran for (for a trigger, when it was triggered).
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_at: Timestamp,
    /// Whether a trigger started it rather than a tick.
    pub triggered: bool,
    /// Its status now (absent from lists, and when the execution is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// A schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleBody {
    /// Its id.
    pub schedule_id: String,
    /// The workflow each tick runs.
    pub workflow_id: String,
    /// `"latest"` or the version number.
    pub workflow_version: serde_json::Value,
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The input of every execution.
    #[schema(value_type = serde_json::Value)]
    pub input_data: serde_json::Value,
    /// Opaque data copied to every execution.
    #[schema(value_type = Option<serde_json::Value>)]
    pub custom_data: Option<serde_json::Value>,
    /// Where callbacks about every execution go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<crate::model::Callback>,
    /// The overlap policy.
    pub overlap: Overlap,
    /// The catch-up window (`1h`, `30m`).
    pub catchup_window: String,
    /// No tick before.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub start_at: Option<Timestamp>,
    /// No tick after.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub end_at: Option<Timestamp>,
    /// Free text.
    pub description: Option<String>,
    /// `active`, `paused`, `invalid` or `completed`.
    pub state: ScheduleState,
    /// Why it is `invalid`.
    pub invalid_reason: Option<String>,
    /// The last fire that failed.
    pub last_error: Option<FireError>,
    /// The next tick, while active.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_fire_at: Option<Timestamp>,
    /// The next ticks (at most 5), while active.
    #[schema(value_type = Vec<String>)]
    pub next_fire_times: Vec<Timestamp>,
    /// With `buffer_one`: the tick waiting for the running execution.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub buffered_at: Option<Timestamp>,
    /// Executions started (ticks and triggers).
    pub fired: u64,
    /// Ticks skipped by the overlap policy.
    pub skipped: u64,
    /// Ticks older than the catch-up window when the server got to them.
    pub missed: u64,
    /// The latest executions it started, newest first (at most 10).
    pub last_executions: Vec<RunView>,
    /// When it was created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When a client last changed it.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// A page of schedules, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SchedulePage {
    /// The schedules.
    pub items: Vec<ScheduleBody>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of the list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only schedules of this workflow.
    pub workflow_id: Option<String>,
    /// Only schedules in this state.
    pub state: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn body(view: ScheduleView) -> ScheduleBody {
    let ScheduleView {
        schedule: s,
        next_fire_times,
        statuses,
    } = view;
    let catchup =
        jiff::SignedDuration::try_from(s.catchup_window).unwrap_or(jiff::SignedDuration::MAX);
    let last_executions = s
        .last_executions
        .iter()
        .enumerate()
        .map(|(i, r)| RunView {
            execution_id: r.execution_id.to_string(),
            scheduled_at: r.scheduled_at,
            triggered: r.triggered,
            status: statuses.get(i).copied().flatten(),
        })
        .collect();
    let Schedule {
        schedule_id,
        workflow_id,
        workflow_version,
        cron,
        timezone,
        input_data,
        custom_data,
        callback,
        overlap,
        start_at,
        end_at,
        description,
        state,
        invalid_reason,
        last_error,
        next_fire_at,
        buffered_at,
        fired,
        skipped,
        missed,
        created_at,
        updated_at,
        ..
    } = s;
    ScheduleBody {
        schedule_id: schedule_id.to_string(),
        workflow_id: workflow_id.to_string(),
        workflow_version: workflow_version.map_or_else(|| "latest".into(), Into::into),
        cron,
        timezone,
        input_data,
        custom_data,
        callback,
        overlap,
        catchup_window: format!("{catchup:#}"),
        start_at,
        end_at,
        description,
        state,
        invalid_reason,
        last_error,
        next_fire_at,
        next_fire_times,
        buffered_at,
        fired,
        skipped,
        missed,
        last_executions,
        created_at,
        updated_at,
    }
}

fn problem(path: &str, message: String) -> ApiError {
    ApiError::at("the schedule does not fit", path, message)
}

fn workflow(field: &str, text: &str) -> Result<WorkflowId, ApiError> {
    text.parse()
        .map_err(|m: String| problem(&format!("$.{field}"), m))
}

fn overlap(text: &str) -> Result<Overlap, ApiError> {
    text.parse().map_err(|m: String| problem("$.overlap", m))
}

fn window(text: &str) -> Result<Duration, ApiError> {
    crate::engine::definition::parse_duration(text).map_err(|m| problem("$.catchup_window", m))
}

fn time(field: &str, text: &str) -> Result<Timestamp, ApiError> {
    text.parse().map_err(|e| {
        problem(
            &format!("$.{field}"),
            format!("`{text}` is not an RFC 3339 time such as `2030-01-01T09:00:00Z`: {e}"),
        )
    })
}

fn version(v: VersionField) -> VersionSel {
    match v {
        VersionField::Latest => VersionSel::Latest,
        VersionField::Exact(n) => VersionSel::Exact(n),
    }
}

fn schedule_id(id: &str) -> Result<ScheduleId, ApiError> {
    id.parse()
        .map_err(|m: String| ApiError::bad_request(format!("path segment `schedule_id`: {m}")))
}

/// Creates a schedule. Its cron, time zone, window, workflow and input are
/// checked now (the input is resolved as a run's would be).
#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body = CreateSchedule,
    security(("bearer" = [])),
    responses((status = 201, body = ScheduleBody), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody, description = "no such workflow"),
        (status = 409, body = super::problem::ProblemBody, description = "the id is taken"),
        (status = 415, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn create(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateSchedule = parse_json(&headers, &bytes)?;
    let new = NewSchedule {
        schedule_id: req
            .schedule_id
            .as_deref()
            .map(|id| id.parse().map_err(|m: String| problem("$.schedule_id", m)))
            .transpose()?,
        workflow_id: workflow("workflow_id", &req.workflow_id)?,
        workflow_version: version(req.workflow_version),
        cron: req.cron,
        timezone: req.timezone.unwrap_or_else(|| "UTC".into()),
        input_data: req.input_data,
        custom_data: req.custom_data,
        callback: req.callback,
        overlap: req
            .overlap
            .as_deref()
            .map(overlap)
            .transpose()?
            .unwrap_or_default(),
        catchup_window: req
            .catchup_window
            .as_deref()
            .map(window)
            .transpose()?
            .unwrap_or(Schedule::CATCHUP_WINDOW),
        start_at: req
            .start_at
            .as_deref()
            .map(|t| time("start_at", t))
            .transpose()?,
        end_at: req
            .end_at
            .as_deref()
            .map(|t| time("end_at", t))
            .transpose()?,
        paused: req.paused,
        description: req.description,
    };
    let view = state.engine.create_schedule(&tenant, new).await?;
    let location = format!("/v1/schedules/{}", view.schedule.schedule_id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body(view)),
    )
        .into_response())
}

/// The tenant's schedules, newest first, filtered and paged by cursor.
#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", params(ListQuery),
    security(("bearer" = [])),
    responses((status = 200, body = SchedulePage), (status = 400, body = super::problem::ProblemBody)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<SchedulePage>, ApiError> {
    let filter = ScheduleFilter {
        workflow_id: q
            .workflow_id
            .as_deref()
            .map(|w| w.parse::<WorkflowId>())
            .transpose()
            .map_err(|m| ApiError::bad_request(format!("query parameter `workflow_id`: {m}")))?,
        state: q
            .state
            .as_deref()
            .map(|s| s.parse::<ScheduleState>())
            .transpose()
            .map_err(|m| ApiError::bad_request(format!("query parameter `state`: {m}")))?,
    };
    let limit = super::executions::page_limit(q.limit.as_deref())?;
    let page = state
        .store
        .schedules(&tenant, &filter, limit, q.cursor.as_deref())
        .await?;
    let items = page
        .items
        .into_iter()
        .map(|s| {
            body(ScheduleView {
                next_fire_times: crate::engine::schedule::next_fire_times(&s),
                statuses: Vec::new(),
                schedule: s,
            })
        })
        .collect();
    Ok(Json(SchedulePage {
        items,
        next_cursor: page.next_cursor,
    }))
}

/// A schedule with its next 5 ticks, its counters and the statuses of its
/// latest executions.
#[utoipa::path(get, path = "/v1/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ScheduleBody), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleBody>, ApiError> {
    let view = state.engine.schedule(&tenant, &schedule_id(&id)?).await?;
    Ok(Json(body(view)))
}

async fn apply_update(
    state: &AppState,
    tenant: &crate::model::TenantId,
    id: &str,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Json<ScheduleBody>, ApiError> {
    let id = schedule_id(id)?;
    let req: UpdateSchedule = parse_json(headers, bytes)?;
    let change = ScheduleChange {
        workflow_id: req
            .workflow_id
            .as_deref()
            .map(|w| workflow("workflow_id", w))
            .transpose()?,
        workflow_version: req.workflow_version.map(version),
        cron: req.cron,
        timezone: req.timezone,
        input_data: req.input_data,
        custom_data: req.custom_data,
        callback: req.callback,
        overlap: req.overlap.as_deref().map(overlap).transpose()?,
        catchup_window: req.catchup_window.as_deref().map(window).transpose()?,
        start_at: req
            .start_at
            .map(|t| t.as_deref().map(|t| time("start_at", t)).transpose())
            .transpose()?,
        end_at: req
            .end_at
            .map(|t| t.as_deref().map(|t| time("end_at", t)).transpose())
            .transpose()?,
        paused: req.paused,
        description: req.description,
    };
    let view = state.engine.update_schedule(tenant, &id, change).await?;
    Ok(Json(body(view)))
}

/// Changes a schedule: each field given replaces the stored one. A change
/// of the cron, time zone or window plans the ticks afresh from now; an
/// `invalid` schedule whose change checks out is `active` again.
#[utoipa::path(patch, path = "/v1/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path)), request_body = UpdateSchedule, security(("bearer" = [])),
    responses((status = 200, body = ScheduleBody), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody), (status = 415, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn update(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<ScheduleBody>, ApiError> {
    apply_update(&state, &tenant, &id, &headers, &bytes).await
}

/// The same as `PATCH /v1/schedules/{schedule_id}` (Edges' action path).
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/update", tag = "schedules",
    params(("schedule_id" = String, Path)), request_body = UpdateSchedule, security(("bearer" = [])),
    responses((status = 200, body = ScheduleBody), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody), (status = 415, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn update_action(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<ScheduleBody>, ApiError> {
    apply_update(&state, &tenant, &id, &headers, &bytes).await
}

async fn remove(
    state: &AppState,
    tenant: &crate::model::TenantId,
    id: &str,
) -> Result<StatusCode, ApiError> {
    state
        .engine
        .delete_schedule(tenant, &schedule_id(id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a schedule; the executions it started stay.
#[utoipa::path(delete, path = "/v1/schedules/{schedule_id}", tag = "schedules",
    params(("schedule_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody)))]
pub async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove(&state, &tenant, &id).await
}

/// The same as `DELETE /v1/schedules/{schedule_id}` (Edges' action path).
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/delete", tag = "schedules",
    params(("schedule_id" = String, Path)), security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody)))]
pub async fn delete_action(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove(&state, &tenant, &id).await
}

/// Pauses a schedule: ticks pass without firing and are not caught up.
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/pause", tag = "schedules",
    params(("schedule_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ScheduleBody), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody),
        (status = 409, body = super::problem::ProblemBody, description = "invalid or completed")))]
pub async fn pause(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleBody>, ApiError> {
    let view = state
        .engine
        .pause_schedule(&tenant, &schedule_id(&id)?)
        .await?;
    Ok(Json(body(view)))
}

/// Resumes a paused schedule from now; the ticks it passed do not fire.
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/resume", tag = "schedules",
    params(("schedule_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ScheduleBody), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody),
        (status = 409, body = super::problem::ProblemBody, description = "invalid or completed: update it")))]
pub async fn resume(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleBody>, ApiError> {
    let view = state
        .engine
        .resume_schedule(&tenant, &schedule_id(&id)?)
        .await?;
    Ok(Json(body(view)))
}

/// Runs the schedule's workflow once now, whatever its state and overlap
/// policy: 202 with the execution, which carries `schedule_id` and
/// `scheduled_at`.
#[utoipa::path(post, path = "/v1/schedules/{schedule_id}/trigger", tag = "schedules",
    params(("schedule_id" = String, Path)), security(("bearer" = [])),
    responses((status = 202, body = Accepted), (status = 400, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody, description = "the workflow or its input no longer fits")))]
pub async fn trigger(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let exec = state
        .engine
        .trigger_schedule(&tenant, &schedule_id(&id)?)
        .await?;
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
