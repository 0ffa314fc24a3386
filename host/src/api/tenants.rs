//! `/v1/tenants`: tenants and their tokens (admin only).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{Admin, generate_token, hash_token};
use super::{ApiError, AppState};
use crate::model::{TenantId, check_name};
use crate::store;

/// `POST /v1/tenants` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// A unique name: letters, digits, `-`, `_`, `.`.
    pub name: String,
}

/// A tenant as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
}

/// A tenant with a new token; the token is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: TenantView,
    /// Its first bearer token. Store it: it is not shown again.
    pub token: String,
}

/// A new token; shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    /// The tenant it acts for.
    pub tenant_id: String,
    /// The bearer token. Store it: it is not shown again.
    pub token: String,
}

fn view(t: &store::Tenant) -> TenantView {
    TenantView {
        id: t.id.to_string(),
        name: t.name.clone(),
        created_at: t.created_at.to_string(),
    }
}

/// Creates a tenant and its first token.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    security(("bearer" = [])),
    responses((status = 201, body = TenantCreated), (status = 401, body = super::problem::ProblemBody), (status = 409, body = super::problem::ProblemBody), (status = 422, body = super::problem::ProblemBody)))]
pub async fn create(
    _: Admin,
    State(state): State<AppState>,
    body: super::executions::JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<TenantCreated>), ApiError> {
    let name = body.0.name;
    check_name("tenant name", &name).map_err(|m| {
        ApiError::invalid(
            "invalid tenant",
            vec![crate::engine::Problem {
                path: "$.name".into(),
                message: m,
            }],
        )
    })?;
    let tenant = store::Tenant {
        id: TenantId::generate(),
        name,
        created_at: crate::engine::now_pub(),
    };
    let token = generate_token()?;
    state
        .store
        .create_tenant(&tenant, hash_token(&token))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            tenant: view(&tenant),
            token,
        }),
    ))
}

/// Creates another token for a tenant, given by id or name.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 201, body = TokenCreated), (status = 401, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn create_token(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let found = match state
        .store
        .tenant(&TenantId::new_unchecked(&tenant))
        .await?
    {
        Some(t) => Some(t),
        None => state.store.tenant_by_name(&tenant).await?,
    };
    let tenant =
        found.ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` not found")))?;
    let token = generate_token()?;
    state
        .store
        .add_token(&tenant.id, hash_token(&token))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            tenant_id: tenant.id.to_string(),
            token,
        }),
    ))
}
