//! `/v1/tenants/{tenant}/quotas` (the admin sets and reads a tenant's
//! limits) and `/v1/quotas` (a tenant reads its own limits and usage), and
//! the count and size checks the upload routes make: a change that would
//! pass a quota gets 409 naming it (waiting would not help; deleting
//! something, or a higher quota, would).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;

use super::auth::{Admin, Caller};
use super::{ApiError, AppState};
use crate::engine::Problem;
use crate::model::{Quotas, Usage};
use crate::store;

/// A tenant's limits and what it holds.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QuotaReport {
    /// The tenant.
    pub tenant_id: String,
    /// The limits that apply: the tenant's own, else the server's defaults
    /// (`quota-*` configuration); null: no limit.
    pub limits: Quotas,
    /// The limits the admin set for this tenant; null: the server's default
    /// applies.
    pub overrides: Quotas,
    /// What the tenant holds now.
    pub usage: Usage,
}

async fn report(state: &AppState, tenant: &store::Tenant) -> Result<QuotaReport, ApiError> {
    Ok(QuotaReport {
        tenant_id: tenant.id.to_string(),
        limits: tenant.quotas.or(&state.settings.quotas),
        overrides: tenant.quotas.clone(),
        usage: state.store.usage(&tenant.id).await?,
    })
}

/// The caller's own limits and usage.
#[utoipa::path(get, path = "/v1/quotas", tag = "quotas",
    security(("bearer" = [])),
    responses((status = 200, body = QuotaReport), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody)))]
pub async fn own(
    Caller(caller): Caller,
    State(state): State<AppState>,
) -> Result<Json<QuotaReport>, ApiError> {
    let Some(id) = &caller.tenant else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an admin token has no quotas: read a tenant's with GET /v1/tenants/{tenant}/quotas",
        ));
    };
    let tenant = state
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token's tenant no longer exists"))?;
    Ok(Json(report(&state, &tenant).await?))
}

/// A tenant's limits and usage (the admin only).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/quotas", tag = "quotas",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = QuotaReport), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn get(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<QuotaReport>, ApiError> {
    let tenant = super::tenants::admin_tenant(&state, &tenant).await?;
    Ok(Json(report(&state, &tenant).await?))
}

/// Sets a tenant's own limits (the admin only), replacing the ones set
/// before: a limit left out or null falls back to the server's default.
/// They apply from the next request on, on every node (the weight and
/// `max_concurrent_executions` on the other nodes within 2 s).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/quotas", tag = "quotas",
    params(("tenant" = String, Path, description = "tenant id or name")),
    request_body = Quotas,
    security(("bearer" = [])),
    responses((status = 200, body = QuotaReport), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn put(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: super::executions::JsonBody<Quotas>,
) -> Result<Json<QuotaReport>, ApiError> {
    let quotas = body.0;
    let problems: Vec<Problem> = quotas
        .problems()
        .into_iter()
        .map(|(field, message)| Problem {
            path: format!("$.{field}"),
            message,
        })
        .collect();
    if !problems.is_empty() {
        return Err(ApiError::invalid("invalid quotas", problems));
    }
    let found = super::tenants::admin_tenant(&state, &tenant).await?;
    let updated = state
        .store
        .set_quotas(&found.id, &quotas)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` not found")))?;
    // A token remembered by this process carries the old quotas, and the
    // engine the old weight and running limit.
    state.forget_tokens();
    state.engine.forget_share(&found.id);
    Ok(Json(report(&state, &updated).await?))
}

/// Refuses a change that would take the tenant past a count or size quota:
/// it holds `usage` and the change adds `adding`.
pub(super) fn check(
    quota: &'static str,
    limit: Option<u64>,
    usage: u64,
    adding: u64,
    what: &str,
) -> Result<(), ApiError> {
    match limit {
        Some(limit) if usage.saturating_add(adding) > limit => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "over quota `{quota}`: the tenant may keep {limit} {what} and has {usage}{}; \
                 delete some, or ask the admin to raise the quota",
                if adding == 1 {
                    String::new()
                } else {
                    format!(" (this adds {adding})")
                }
            ),
        )),
        _ => Ok(()),
    }
}
