//! The audit log: every change of a resource (step, workflow, secret,
//! schedule, quota, token, tenant) recorded with who made it (the token
//! id), what (an action and the request) and when; `GET /v1/audit` reads
//! it, newest first (a tenant its own entries, the admin everyone's).
//!
//! One middleware records them all, from the table [`AUDITED`] of
//! (method, route) pairs: after a 2xx answer, one entry. The token that
//! made the request is learnt from the authentication the handler did (the
//! request carries a [`Slot`] that `auth` fills), so the middleware adds no
//! lookup of its own. An admin's change of a tenant's resource
//! (`/v1/tenants/{tenant}/…`) is the tenant's entry too. The entry is
//! written after the change is committed; a store that fails to write it
//! is logged, and the answer stands.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Caller, Principal};
use super::{ApiError, AppState};
use crate::store::audit::{AuditPage, NewAudit};

/// Where the authentication of an audited request leaves its principal.
#[derive(Debug, Clone, Default)]
pub struct Slot(Arc<Mutex<Option<Principal>>>);

impl Slot {
    /// Keeps the principal of the request.
    pub fn set(&self, principal: &Principal) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(principal.clone());
    }

    fn take(&self) -> Option<Principal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The changes the log records: method, route, action.
pub const AUDITED: &[(Method, &str, &str)] = &[
    (Method::PUT, "/v1/steps/{name}", "step.put"),
    (Method::DELETE, "/v1/steps/{name}", "step.delete"),
    (Method::PUT, "/v1/workflows/{workflow_id}", "workflow.put"),
    (
        Method::DELETE,
        "/v1/workflows/{workflow_id}",
        "workflow.delete",
    ),
    (Method::PUT, "/v1/secrets/{name}", "secret.put"),
    (
        Method::POST,
        "/v1/webhook-secret/rotate",
        "webhook_secret.rotate",
    ),
    (
        Method::POST,
        "/v1/executions/{execution_id}/deliveries/{delivery_id}/retry",
        "delivery.retry",
    ),
    (Method::DELETE, "/v1/secrets/{name}", "secret.delete"),
    (Method::POST, "/v1/schedules", "schedule.create"),
    (
        Method::PATCH,
        "/v1/schedules/{schedule_id}",
        "schedule.update",
    ),
    (
        Method::POST,
        "/v1/schedules/{schedule_id}/update",
        "schedule.update",
    ),
    (
        Method::DELETE,
        "/v1/schedules/{schedule_id}",
        "schedule.delete",
    ),
    (
        Method::POST,
        "/v1/schedules/{schedule_id}/delete",
        "schedule.delete",
    ),
    (
        Method::POST,
        "/v1/schedules/{schedule_id}/pause",
        "schedule.pause",
    ),
    (
        Method::POST,
        "/v1/schedules/{schedule_id}/resume",
        "schedule.resume",
    ),
    (Method::PUT, "/v1/tenants/{tenant}/quotas", "quota.set"),
    (Method::PUT, "/v1/tenants/{tenant}/egress", "egress.set"),
    (Method::POST, "/v1/tenants/{tenant}/tokens", "token.create"),
    (
        Method::DELETE,
        "/v1/tenants/{tenant}/tokens/{token_id}",
        "token.revoke",
    ),
    (Method::POST, "/v1/admin/tokens", "admin_token.create"),
    (
        Method::DELETE,
        "/v1/admin/tokens/{token_id}",
        "admin_token.revoke",
    ),
    (Method::POST, "/v1/tenants", "tenant.create"),
    (Method::DELETE, "/v1/tenants/{tenant}", "tenant.delete"),
    (
        Method::POST,
        "/v1/tenants/{tenant}/suspend",
        "tenant.suspend",
    ),
    (
        Method::POST,
        "/v1/tenants/{tenant}/unsuspend",
        "tenant.unsuspend",
    ),
];

/// The largest answer body the middleware reads back (a tenant creation's,
/// for the new tenant's id).
const MAX_READ_BACK: usize = 1 << 20;

/// The middleware that records audited changes.
pub async fn record(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let Some(route) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
    else {
        return next.run(req).await;
    };
    let Some(action) = AUDITED
        .iter()
        .find(|(m, r, _)| *m == method && *r == route)
        .map(|(_, _, a)| *a)
    else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    // `/v1/tenants/{tenant}/…`: the tenant it is about, looked up now (a
    // deletion removes it).
    let mut about = None;
    if route.starts_with("/v1/tenants/{tenant}")
        && let Some(t) = path.split('/').nth(3)
    {
        about = super::tenants::admin_tenant(&state, t)
            .await
            .ok()
            .map(|t| t.id.to_string());
    }
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let Some(principal) = slot.take() else {
        return resp;
    };
    let (resp, created) = if action == "tenant.create" {
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, MAX_READ_BACK).await {
            Ok(bytes) => {
                let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["tenant"]["id"].as_str().map(str::to_owned));
                (
                    Response::from_parts(parts, axum::body::Body::from(bytes)),
                    id,
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "reading back a tenant creation for the audit log failed");
                return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
            }
        }
    } else {
        (resp, None)
    };
    let entry = NewAudit {
        at: crate::engine::now_pub(),
        tenant_id: principal
            .tenant
            .clone()
            .or_else(|| about.or(created).map(crate::model::TenantId::new_unchecked)),
        token_id: principal.token_id.clone(),
        action: action.to_owned(),
        request: format!("{method} {path}"),
    };
    if let Err(e) = state.store.add_audit(&entry).await {
        tracing::error!(error = %e, action, request = %entry.request, "writing the audit log failed");
    }
    resp
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// Only this tenant's entries (id or name; the admin only: a tenant
    /// always sees its own).
    pub tenant: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The audit log, newest first: a tenant's token sees the tenant's own
/// entries (including the admin's changes of its quotas, tokens and
/// state), an admin token everyone's.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = super::problem::ProblemBody),
        (status = 401, body = super::problem::ProblemBody), (status = 403, body = super::problem::ProblemBody),
        (status = 404, body = super::problem::ProblemBody)))]
pub async fn list(
    Caller(caller): Caller,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = super::executions::page_limit(q.limit.as_deref())?;
    let tenant = match (&caller.tenant, q.tenant.as_deref()) {
        (Some(own), None) => Some(own.clone()),
        (Some(own), Some(asked)) => {
            let found = super::tenants::admin_tenant(&state, asked).await.ok();
            match found {
                Some(t) if t.id == *own => Some(own.clone()),
                _ => return Err(ApiError::not_found(format!("tenant `{asked}` not found"))),
            }
        }
        (None, Some(asked)) => Some(super::tenants::admin_tenant(&state, asked).await?.id),
        (None, None) => None,
    };
    Ok(Json(
        state
            .store
            .audit(tenant.as_ref(), limit, q.cursor.as_deref())
            .await?,
    ))
}
