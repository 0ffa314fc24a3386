//! Bearer tokens: generation, hashing and the extractors that turn a request
//! into a tenant or the admin.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{ApiError, AppState};
use crate::model::TenantId;
use crate::store::TokenHash;

/// The admin token from configuration, kept only as its hash.
#[derive(Clone, Copy)]
pub struct AdminToken(TokenHash);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken([REDACTED])")
    }
}

impl AdminToken {
    /// Remembers the hash of `token`.
    pub fn new(token: &str) -> Self {
        Self(hash_token(token))
    }
}

/// SHA-256 of a token. Tokens have 256 bits of entropy, so a fast hash is
/// enough; nothing else is stored.
pub fn hash_token(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// A new random token: `sh_` and 32 random bytes, base64url.
pub fn generate_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(ApiError::internal)?;
    Ok(format!(
        "sh_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be `Bearer <token>`",
        )),
    }
}

/// The tenant a request acts for.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hash = hash_token(bearer(parts)?);
        if state.admin.is_some_and(|a| a.0 == hash) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "the admin token manages tenants; use a tenant token for this route",
            ));
        }
        if let Some(tenant) = state.known_token(&hash) {
            return Ok(Self(tenant));
        }
        match state.store.authenticate(&hash).await? {
            Some(tenant) => {
                state.remember_token(hash, &tenant);
                Ok(Self(tenant))
            }
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}

/// A request made with the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let hash = hash_token(bearer(parts)?);
        match state.admin {
            Some(admin) if admin.0 == hash => Ok(Self),
            _ => Err(ApiError::unauthorized(
                "this route needs the admin token (STEPHOST_ADMIN_TOKEN)",
            )),
        }
    }
}
