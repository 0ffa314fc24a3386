//! `/v1/secrets`: a tenant's secrets. Values go in and never come out: no
//! endpoint returns them, and they are encrypted at rest (see
//! `crate::secrets`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

use super::auth::{Caller, Tenant};
use super::{ApiError, AppState};
use crate::secrets::MAX_SECRET_BYTES;

/// A stored secret: its name only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretView {
    /// The secret's name, used in templates as `{{ secrets.NAME }}`.
    pub name: String,
}

/// The names of a tenant's secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SecretList {
    /// The secrets, by name.
    pub items: Vec<SecretView>,
}

/// The JSON form of a secret's body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The value.
    pub value: String,
}

/// A secret name is a template identifier: 1 to 64 ASCII letters, digits
/// and `_`, not starting with a digit.
fn secret_name(name: &str) -> Result<String, ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "path segment `name`: `{name}` is not a valid secret name: use 1 to 64 ASCII \
             letters, digits and `_`, not starting with a digit"
        )))
    }
}

/// Stores a secret, replacing any earlier value. The body is the value as
/// plain text, or `{"value": "..."}` with a JSON content type.
#[utoipa::path(put, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "secret name")),
    request_body(content = SecretValue, description = "`{\"value\": …}` as JSON, or the raw value as text/plain"),
    security(("bearer" = [])),
    responses((status = 201, body = SecretView, description = "created"),
        (status = 200, body = SecretView, description = "replaced"),
        (status = 400, body = super::problem::ProblemBody)))]
pub async fn put(
    Tenant(tenant): Tenant,
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let name = secret_name(&name)?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let value = if json {
        serde_json::from_slice::<SecretValue>(&body)
            .map_err(|e| {
                ApiError::bad_request(format!("the body must be {{\"value\": \"…\"}}: {e}"))
            })?
            .value
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_request("the secret value is not UTF-8 text"))?
    };
    if value.is_empty() {
        return Err(ApiError::bad_request("the secret value is empty"));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a secret value may be at most {MAX_SECRET_BYTES} bytes"),
        ));
    }
    let existed = state
        .vault
        .names(&tenant)
        .await
        .map_err(ApiError::internal)?
        .contains(&name);
    if !existed {
        let quotas = state.quotas(&caller);
        if quotas.max_secrets.is_some() {
            let usage = state.store.usage(&tenant).await?;
            super::quotas::check(
                "max_secrets",
                quotas.max_secrets,
                usage.secrets,
                1,
                "secrets",
            )?;
        }
    }
    state
        .vault
        .put(&tenant, &name, &value)
        .await
        .map_err(ApiError::internal)?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(SecretView { name })))
}

/// Lists the names of the tenant's secrets; values are never returned.
#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", security(("bearer" = [])),
    responses((status = 200, body = SecretList)))]
pub async fn list(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
) -> Result<Json<SecretList>, ApiError> {
    let names = state
        .vault
        .names(&tenant)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(SecretList {
        items: names.into_iter().map(|name| SecretView { name }).collect(),
    }))
}

/// Deletes a secret.
#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets",
    params(("name" = String, Path, description = "secret name")), security(("bearer" = [])),
    responses((status = 204), (status = 404, body = super::problem::ProblemBody)))]
pub async fn delete(
    Tenant(tenant): Tenant,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = secret_name(&name)?;
    if state
        .vault
        .delete(&tenant, &name)
        .await
        .map_err(ApiError::internal)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("secret `{name}` not found")))
    }
}
