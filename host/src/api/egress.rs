//! `/v1/tenants/{tenant}/egress`: the hosts a tenant's steps may call over
//! HTTP (the admin sets and reads it), and `/v1/egress` (a tenant reads
//! its own). A step's request goes out only when its definition's
//! `allow_http`, this list and the server's `step-http-allow` all allow
//! the host.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Caller};
use super::{ApiError, AppState};
use crate::engine::Problem;
use crate::model::HostPattern;
use crate::model::egress::parse_patterns;
use crate::store;

/// The most patterns one tenant's list holds.
pub const MAX_EGRESS_PATTERNS: usize = 256;

/// A tenant's egress allowlist, as the admin sets it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressBody {
    /// Host patterns: `api.example.com`, `api.example.com:8443`,
    /// `*.example.org` (names under it), `*` (any host), each with an
    /// optional port (without one, any port). At most 256; empty: the
    /// tenant's steps may call no host.
    #[schema(example = json!(["api.example.com", "*.example.org:443"]))]
    pub allow: Vec<String>,
}

/// A tenant's egress allowlist.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EgressReport {
    /// The tenant.
    pub tenant_id: String,
    /// The hosts its steps may call, normalised (lowercase, no final dot);
    /// each step calls only those of them its `allow_http` lists too.
    #[schema(value_type = Vec<String>, example = json!(["api.example.com", "*.example.org:443"]))]
    pub allow: Vec<HostPattern>,
}

fn report(tenant: &store::Tenant) -> EgressReport {
    EgressReport {
        tenant_id: tenant.id.to_string(),
        allow: tenant.egress.clone(),
    }
}

/// The caller's own egress allowlist.
#[utoipa::path(get, path = "/v1/egress", tag = "tenants",
    security(("bearer" = [])),
    responses((status = 200, body = EgressReport), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody)))]
pub async fn own_egress(
    Caller(caller): Caller,
    State(state): State<AppState>,
) -> Result<Json<EgressReport>, ApiError> {
    let Some(id) = &caller.tenant else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "an admin token has no egress allowlist: read a tenant's with GET \
             /v1/tenants/{tenant}/egress",
        ));
    };
    let tenant = state
        .store
        .tenant(id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the token's tenant no longer exists"))?;
    Ok(Json(report(&tenant)))
}

/// A tenant's egress allowlist (the admin only).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/egress", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = EgressReport), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn get_egress(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<EgressReport>, ApiError> {
    let tenant = super::tenants::admin_tenant(&state, &tenant).await?;
    Ok(Json(report(&tenant)))
}

/// Replaces a tenant's egress allowlist (the admin only). It applies to
/// attempts that start from then on: on this node at once, on the others
/// within 2 s.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/egress", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    request_body = EgressBody,
    security(("bearer" = [])),
    responses((status = 200, body = EgressReport), (status = 400, body = super::problem::ProblemBody),
        (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn put_egress(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    body: super::executions::JsonBody<EgressBody>,
) -> Result<Json<EgressReport>, ApiError> {
    let list = body.0.allow;
    if list.len() > MAX_EGRESS_PATTERNS {
        return Err(ApiError::invalid(
            "invalid egress allowlist",
            vec![Problem {
                path: "$.allow".into(),
                message: format!(
                    "{} patterns are more than the {MAX_EGRESS_PATTERNS} a tenant may have",
                    list.len()
                ),
            }],
        ));
    }
    let mut patterns = parse_patterns(&list).map_err(|bad| {
        ApiError::invalid(
            "invalid egress allowlist",
            bad.into_iter()
                .map(|(i, e)| Problem {
                    path: format!("$.allow[{i}]"),
                    message: e.to_string(),
                })
                .collect(),
        )
    })?;
    let mut seen = std::collections::HashSet::new();
    patterns.retain(|p| seen.insert(p.clone()));
    let found = super::tenants::admin_tenant(&state, &tenant).await?;
    let updated = state
        .store
        .set_egress(&found.id, &patterns)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` not found")))?;
    state.engine.forget_share(&found.id);
    Ok(Json(report(&updated)))
}
