//! `/v1/tenants` and `/v1/admin/tokens`: tenants and tokens. The admin
//! creates tenants; tokens are managed by the admin for everyone and by a
//! tenant for itself.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use axum::body::Bytes;
use axum::http::HeaderMap;

use super::auth::{Admin, Caller, Principal, generate_token, hash_token};
use super::{ApiError, AppState};
use crate::engine::Problem;
use crate::model::{TenantId, Timestamp, check_name};
use crate::store::{self, Scope, Token};

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
    /// When the admin suspended it; null while it is active. A suspended
    /// tenant's tokens get 401, its schedules do not fire and none of its
    /// executions runs until it is unsuspended.
    pub suspended_at: Option<String>,
}

/// A page of tenants, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantPage {
    /// The tenants.
    pub items: Vec<TenantView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /v1/tenants`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct TenantQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A tenant with a new token; the token is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: TenantView,
    /// Its first bearer token (full scope, no expiry). Store it: it is not
    /// shown again.
    pub token: String,
    /// The first token's id.
    pub token_id: String,
}

/// `POST /v1/tenants/{tenant}/tokens` and `POST /v1/admin/tokens` body.
/// Every field is optional, and so is the body: without one the token has
/// full scope and never expires.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A name to recognise it by (1 to 100 characters, no control
    /// characters).
    pub name: Option<String>,
    /// How long it works from now, as a duration: `30d`, `12h`, `PT1H`.
    /// Give this or `expires_at`, not both.
    pub expires_in: Option<String>,
    /// When it stops working, RFC 3339 (`2027-01-01T00:00:00Z`); in the
    /// future.
    pub expires_at: Option<String>,
    /// What it may do: `read` (GET only), `run` (read, plus running
    /// executions, cancel, pause, resume and signals; no uploads or other
    /// changes) and `full`. Default `["full"]`. Admin tokens take `read` or
    /// `full`.
    pub scopes: Option<Vec<String>>,
}

/// A token as listings show it; the secret is never shown again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// Its id: what to revoke it by.
    pub token_id: String,
    /// The tenant it acts for; null for an admin token.
    pub tenant_id: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// What it may do: `read`, `run`, `full`.
    pub scopes: Vec<String>,
    /// When it was created.
    pub created_at: String,
    /// When it stops working; null: never.
    pub expires_at: Option<String>,
}

/// A new token. The secret `token` is shown only here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenCreated {
    /// Its id: what to revoke it by.
    pub token_id: String,
    /// The bearer token. Store it: it is not shown again.
    pub token: String,
    /// Its name.
    pub name: Option<String>,
    /// When it stops working; null: never.
    pub expires_at: Option<String>,
    /// What it may do: `read`, `run`, `full`.
    pub scopes: Vec<String>,
    /// The tenant it acts for; null for an admin token.
    pub tenant_id: Option<String>,
    /// When it was created.
    pub created_at: String,
}

/// A list of tokens, oldest first; revoked ones are left out, expired ones
/// kept until revoked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenList {
    /// The tokens.
    pub items: Vec<TokenView>,
}

fn view(t: &store::Tenant) -> TenantView {
    TenantView {
        id: t.id.to_string(),
        name: t.name.clone(),
        created_at: t.created_at.to_string(),
        suspended_at: t.suspended_at.map(|at| at.to_string()),
    }
}

fn token_view(t: &Token) -> TokenView {
    TokenView {
        token_id: t.id.clone(),
        tenant_id: t.tenant.as_ref().map(ToString::to_string),
        name: t.name.clone(),
        scopes: t.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: t.created_at.to_string(),
        expires_at: t.expires_at.map(|at| at.to_string()),
    }
}

/// A first token: full scope, no name, no expiry.
fn first_token(tenant: &TenantId, now: Timestamp) -> Token {
    Token {
        id: Token::generate_id(),
        tenant: Some(tenant.clone()),
        name: None,
        scopes: vec![Scope::Full],
        created_at: now,
        expires_at: None,
        revoked_at: None,
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
            vec![Problem {
                path: "$.name".into(),
                message: m,
            }],
        )
    })?;
    let now = crate::engine::now_pub();
    let tenant = store::Tenant {
        id: TenantId::generate(),
        name,
        created_at: now,
        suspended_at: None,
        quotas: Default::default(),
        egress: Default::default(),
    };
    let token = generate_token()?;
    let record = first_token(&tenant.id, now);
    state
        .store
        .create_tenant(&tenant, &record, hash_token(&token))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            tenant: view(&tenant),
            token,
            token_id: record.id,
        }),
    ))
}

/// The tenant `{tenant}` (an id or a name) names, if the caller may see
/// it: the admin sees every tenant, a tenant only itself. Anything else is
/// 404, so that a tenant learns nothing about the others.
async fn visible_tenant(
    state: &AppState,
    caller: &Principal,
    tenant: &str,
) -> Result<store::Tenant, ApiError> {
    find_tenant(state, tenant)
        .await?
        .filter(|t| caller.tenant.as_ref().is_none_or(|own| *own == t.id))
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` not found")))
}

/// The tenant `{tenant}` names, by id or else by name.
async fn find_tenant(state: &AppState, tenant: &str) -> Result<Option<store::Tenant>, ApiError> {
    Ok(
        match state.store.tenant(&TenantId::new_unchecked(tenant)).await? {
            Some(t) => Some(t),
            None => state.store.tenant_by_name(tenant).await?,
        },
    )
}

/// The tenant `{tenant}` names, for the admin.
pub(super) async fn admin_tenant(
    state: &AppState,
    tenant: &str,
) -> Result<store::Tenant, ApiError> {
    find_tenant(state, tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` not found")))
}

/// The optional JSON body of a token creation: empty means every default.
fn token_request(headers: &HeaderMap, body: &Bytes) -> Result<CreateToken, ApiError> {
    if body.is_empty() {
        return Ok(CreateToken::default());
    }
    super::executions::parse_json(headers, body)
}

/// Checks a token request and makes the token record.
fn new_token(
    request: CreateToken,
    tenant: Option<&TenantId>,
    now: Timestamp,
) -> Result<Token, ApiError> {
    let mut problems = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    if let Some(name) = &request.name
        && (name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control))
    {
        problem(
            "$.name".into(),
            "a token name is 1 to 100 characters, without control characters".into(),
        );
    }
    let expires_at = match (&request.expires_in, &request.expires_at) {
        (Some(_), Some(_)) => {
            problem(
                "$.expires_at".into(),
                "give `expires_in` or `expires_at`, not both".into(),
            );
            None
        }
        (Some(within), None) => match crate::engine::definition::parse_duration(within) {
            Ok(d) if d.is_zero() => {
                problem("$.expires_in".into(), "must be longer than zero".into());
                None
            }
            Ok(d) => match jiff::SignedDuration::try_from(d)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
            {
                Some(at) => Some(at),
                None => {
                    problem("$.expires_in".into(), format!("`{within}` is too long"));
                    None
                }
            },
            Err(e) => {
                problem("$.expires_in".into(), e);
                None
            }
        },
        (None, Some(at)) => match at.parse::<Timestamp>() {
            Ok(at) if at <= now => {
                problem(
                    "$.expires_at".into(),
                    format!("{at} is not in the future (it is {now} now)"),
                );
                None
            }
            Ok(at) => Some(at),
            Err(e) => {
                problem(
                    "$.expires_at".into(),
                    format!("`{at}` is not an RFC 3339 time such as 2027-01-01T00:00:00Z: {e}"),
                );
                None
            }
        },
        (None, None) => None,
    };
    let mut scopes = Vec::new();
    match &request.scopes {
        None => scopes.push(Scope::Full),
        Some(names) if names.is_empty() => {
            problem("$.scopes".into(), "give at least one scope".into());
        }
        Some(names) => {
            for (i, name) in names.iter().enumerate() {
                match Scope::ALL.iter().find(|s| s.as_str() == name) {
                    Some(Scope::Run) if tenant.is_none() => problem(
                        format!("$.scopes[{i}]"),
                        "admin tokens take `read` or `full`; `run` is for tenant tokens".into(),
                    ),
                    Some(scope) => scopes.push(*scope),
                    None => problem(
                        format!("$.scopes[{i}]"),
                        format!("`{name}` is not a scope: use `read`, `run` or `full`"),
                    ),
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("invalid token request", problems));
    }
    scopes.sort();
    scopes.dedup();
    Ok(Token {
        id: Token::generate_id(),
        tenant: tenant.cloned(),
        name: request.name,
        scopes,
        created_at: now,
        expires_at,
        revoked_at: None,
    })
}

async fn add_token(
    state: &AppState,
    request: CreateToken,
    tenant: Option<&TenantId>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let record = new_token(request, tenant, crate::engine::now_pub())?;
    let token = generate_token()?;
    state.store.add_token(&record, hash_token(&token)).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated::new(token_view(&record), token)),
    ))
}

impl TokenCreated {
    /// A new token's view with its secret.
    fn new(view: TokenView, token: String) -> Self {
        let TokenView {
            token_id,
            tenant_id,
            name,
            scopes,
            created_at,
            expires_at,
        } = view;
        Self {
            token_id,
            token,
            name,
            expires_at,
            scopes,
            tenant_id,
            created_at,
        }
    }
}

/// Creates a token for a tenant (given by id or name): the admin for any
/// tenant, a tenant's `full` token for its own.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/tokens", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    request_body = Option<CreateToken>,
    security(("bearer" = [])),
    responses((status = 201, body = TokenCreated), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody),
        (status = 422, body = super::problem::ProblemBody)))]
pub async fn create_token(
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let tenant = visible_tenant(&state, &caller, &tenant).await?;
    let request = token_request(&headers, &body)?;
    add_token(&state, request, Some(&tenant.id)).await
}

/// Lists a tenant's tokens (never their secrets): the admin any tenant's,
/// a tenant its own.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/tokens", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = TokenList), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn tokens(
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<TokenList>, ApiError> {
    let tenant = visible_tenant(&state, &caller, &tenant).await?;
    let items = state.store.tokens(Some(&tenant.id)).await?;
    Ok(Json(TokenList {
        items: items.iter().map(token_view).collect(),
    }))
}

async fn revoke(
    state: &AppState,
    tenant: Option<&TenantId>,
    token_id: &str,
) -> Result<StatusCode, ApiError> {
    let revoked = state
        .store
        .revoke_token(tenant, token_id, crate::engine::now_pub())
        .await?;
    if !revoked {
        return Err(ApiError::not_found(format!(
            "token `{token_id}` not found (or already revoked)"
        )));
    }
    state.forget_tokens();
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a tenant's token: from the next request on, on every node, it
/// gets 401. The admin for any tenant, a tenant's `full` token for its own
/// (itself included).
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/tokens/{token_id}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name"),
        ("token_id" = String, Path, description = "the token's id")),
    security(("bearer" = [])),
    responses((status = 204, description = "revoked"), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn revoke_token(
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path((tenant, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = visible_tenant(&state, &caller, &tenant).await?;
    revoke(&state, Some(&tenant.id), &token_id).await
}

/// Creates an admin token (beside the one from configuration).
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin",
    request_body = Option<CreateToken>,
    security(("bearer" = [])),
    responses((status = 201, body = TokenCreated), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 422, body = super::problem::ProblemBody)))]
pub async fn create_admin_token(
    _: Admin,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let request = token_request(&headers, &body)?;
    add_token(&state, request, None).await
}

/// Lists the admin tokens created through the API (the one from
/// configuration is not listed).
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = TokenList), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody)))]
pub async fn admin_tokens(
    _: Admin,
    State(state): State<AppState>,
) -> Result<Json<TokenList>, ApiError> {
    let items = state.store.tokens(None).await?;
    Ok(Json(TokenList {
        items: items.iter().map(token_view).collect(),
    }))
}

/// Revokes an admin token created through the API. The token from
/// configuration cannot be revoked here: change the configuration.
#[utoipa::path(delete, path = "/v1/admin/tokens/{token_id}", tag = "admin",
    params(("token_id" = String, Path, description = "the token's id")),
    security(("bearer" = [])),
    responses((status = 204, description = "revoked"), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody),
        (status = 409, body = super::problem::ProblemBody)))]
pub async fn revoke_admin_token(
    _: Admin,
    State(state): State<AppState>,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if token_id == super::auth::BOOTSTRAP_TOKEN_ID {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the admin token from configuration (STEPHOST_ADMIN_TOKEN) cannot be revoked \
             through the API; change the configuration and restart",
        ));
    }
    revoke(&state, None, &token_id).await
}

/// Lists every tenant, oldest first, paged by cursor (the admin only).
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(TenantQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TenantPage), (status = 400, body = super::problem::ProblemBody),
        (status = 401, body = super::problem::ProblemBody), (status = 403, body = super::problem::ProblemBody)))]
pub async fn list(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<TenantQuery>,
) -> Result<Json<TenantPage>, ApiError> {
    let limit = super::executions::page_limit(q.limit.as_deref())?;
    let page = state.store.tenants(limit, q.cursor.as_deref()).await?;
    Ok(Json(TenantPage {
        items: page.items.iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// A tenant (given by id or name): the admin sees any, a tenant itself.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn get(
    Caller(caller): Caller,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(view(&visible_tenant(&state, &caller, &tenant).await?)))
}

async fn set_suspended(
    state: &AppState,
    tenant: &str,
    suspend: bool,
) -> Result<Json<TenantView>, ApiError> {
    let found = admin_tenant(state, tenant).await?;
    let now = state
        .engine
        .suspend_tenant(&found.id, suspend)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("tenant `{tenant}` not found")))?;
    // A token remembered by this process must not outlive the change.
    state.forget_tokens();
    Ok(Json(view(&now)))
}

/// Suspends a tenant (the admin only): from the next request on, on every
/// node, its tokens get 401; its schedules stop firing; none of its
/// executions is claimed, and those running stop within a lease renewal
/// (their attempts are interrupted, and run again once it is unsuspended).
/// Suspending a suspended tenant changes nothing.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/suspend", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn suspend(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    set_suspended(&state, &tenant, true).await
}

/// Undoes a suspension (the admin only): its tokens work again, its
/// executions are due where they were (the ones that were running, at
/// once), and its schedules fire again, catching up on missed ticks by
/// their own `catchup` rule.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/unsuspend", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 200, body = TenantView), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn unsuspend(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    set_suspended(&state, &tenant, false).await
}

/// Deletes a tenant with all its data (the admin only): tokens, steps,
/// workflows, executions, schedules and secrets. Its running executions
/// stop within a lease renewal; nothing of it remains.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or name")),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), (status = 401, body = super::problem::ProblemBody),
        (status = 403, body = super::problem::ProblemBody), (status = 404, body = super::problem::ProblemBody)))]
pub async fn delete(
    _: Admin,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
) -> Result<StatusCode, ApiError> {
    let found = admin_tenant(&state, &tenant).await?;
    if !state.engine.delete_tenant(&found.id).await? {
        return Err(ApiError::not_found(format!("tenant `{tenant}` not found")));
    }
    state.forget_tokens();
    Ok(StatusCode::NO_CONTENT)
}
