//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::model::TenantId;

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, description = "alive")))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The store answers and the server is not shutting down, so requests can
/// be served.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses((status = 200, description = "ready"), (status = 503, body = super::problem::ProblemBody, description = "the store does not answer, or the server is shutting down")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.engine.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down: send requests to another node",
        ));
    }
    match state
        .store
        .tenant(&TenantId::new_unchecked("ten_probe"))
        .await
    {
        Ok(_) => Ok(Json(
            json!({"status": "ok", "live_executions": state.engine.live_count()}),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store is not ready: {e}"),
        )),
    }
}
