//! Callbacks: the tenant's signing secret (`GET /v1/webhook-secret`,
//! `POST /v1/webhook-secret/rotate`) and redelivering a callback by hand
//! (`POST /v1/executions/{id}/deliveries/{delivery_id}/retry`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::Tenant;
use super::{ApiError, AppState};
use crate::model::{Delivery, ExecutionId, Timestamp, WebhookKeys};

/// A tenant's callback signing secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookSecretBody {
    /// The secret (`whsec_` and base64): callbacks carry `webhook-signature:
    /// v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed with the bytes
    /// the base64 after `whsec_` stands for.
    pub secret: String,
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// After a rotation: the secret it replaced, which still signs
    /// callbacks (a second signature) until `previous_valid_until`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<String>,
    /// Until when the previous secret signs too.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_valid_until: Option<Timestamp>,
}

impl WebhookSecretBody {
    fn of(keys: WebhookKeys, now: Timestamp) -> Self {
        let previous = keys.previous.filter(|(_, until)| now < *until);
        Self {
            secret: keys.current,
            created_at: keys.created_at,
            previous_valid_until: previous.as_ref().map(|(_, until)| *until),
            previous_secret: previous.map(|(secret, _)| secret),
        }
    }
}

/// The secret callbacks are signed with, made on first use. Receivers need
/// it to verify `webhook-signature` (Standard Webhooks v1); it needs a
/// token with `full` scope.
#[utoipa::path(get, path = "/v1/webhook-secret", tag = "callbacks",
    security(("bearer" = [])),
    responses((status = 200, body = WebhookSecretBody)))]
pub async fn get(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Json<WebhookSecretBody>, ApiError> {
    let keys = state.engine.webhook_keys(&tenant).await?;
    Ok(Json(WebhookSecretBody::of(keys, state.engine.now())))
}

/// Makes a new signing secret. The old one keeps signing callbacks (each
/// then carries both signatures) for the rotation window
/// (`webhook-secret-rotation-window`, default 24 h), so receivers can move
/// to the new one without dropping any.
#[utoipa::path(post, path = "/v1/webhook-secret/rotate", tag = "callbacks",
    security(("bearer" = [])),
    responses((status = 200, body = WebhookSecretBody)))]
pub async fn rotate(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Json<WebhookSecretBody>, ApiError> {
    let keys = state.engine.rotate_webhook_secret(&tenant).await?;
    Ok(Json(WebhookSecretBody::of(keys, state.engine.now())))
}

/// Delivers a callback again now, whatever became of it (a pending one is
/// left as it is). It keeps its `webhook-id`, so a receiver that had it
/// already can tell.
#[utoipa::path(post, path = "/v1/executions/{execution_id}/deliveries/{delivery_id}/retry",
    tag = "callbacks",
    params(("execution_id" = String, Path), ("delivery_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = Delivery),
        (status = 404, body = super::problem::ProblemBody, description = "no such execution for this tenant, or no such delivery of it")))]
pub async fn retry(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = ExecutionId::new_unchecked(id);
    let d = state.engine.retry_delivery(&tenant, &id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}
