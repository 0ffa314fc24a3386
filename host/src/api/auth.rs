//! Bearer tokens: generation, hashing and the extractors that turn a request
//! into a tenant or the admin.

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::{ApiError, AppState};
use crate::model::{TenantId, Timestamp};
use crate::store::{Credential, Scope, TokenHash};

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

/// The id the admin token from configuration has in audit records and
/// errors; it is not stored and cannot be revoked through the API.
pub const BOOTSTRAP_TOKEN_ID: &str = "admin";

/// Who is calling: the token's id, the tenant it acts for (`None` for an
/// admin token) and what it may do. Found once per request and kept in the
/// request's extensions.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's id.
    pub token_id: String,
    /// Its tenant; `None`: an admin token.
    pub tenant: Option<TenantId>,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Its tenant's own quotas (empty for an admin token).
    pub quotas: crate::model::Quotas,
}

/// The token of a request, checked: known, not revoked, not expired.
async fn principal(parts: &mut Parts, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(known) = parts.extensions.get::<Principal>() {
        return Ok(known.clone());
    }
    let hash = hash_token(bearer(parts)?);
    let principal = if state.admin.is_some_and(|a| a.0 == hash) {
        Principal {
            token_id: BOOTSTRAP_TOKEN_ID.into(),
            tenant: None,
            scopes: vec![Scope::Full],
            quotas: crate::model::Quotas::default(),
        }
    } else {
        let Credential {
            token,
            suspended_at,
            quotas,
        } = match state.known_token(&hash) {
            Some(known) => known,
            None => {
                let known = state
                    .store
                    .authenticate(&hash)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
                state.remember_token(hash, &known);
                known
            }
        };
        if let (Some(at), Some(tenant)) = (suspended_at, &token.tenant) {
            return Err(ApiError::unauthorized(format!(
                "tenant {tenant} was suspended at {at}; the admin can unsuspend it"
            )));
        }
        if let Some(at) = token.revoked_at {
            return Err(ApiError::unauthorized(format!(
                "this token ({}) was revoked at {at}",
                token.id
            )));
        }
        if let Some(at) = token.expires_at
            && at <= Timestamp::now()
        {
            return Err(ApiError::unauthorized(format!(
                "this token ({}) expired at {at}",
                token.id
            )));
        }
        Principal {
            token_id: token.id,
            tenant: token.tenant,
            scopes: token.scopes,
            quotas,
        }
    };
    if let Some(slot) = parts.extensions.get::<super::audit::Slot>() {
        slot.set(&principal);
    }
    parts.extensions.insert(principal.clone());
    Ok(principal)
}

/// The scope a request needs: `read` for `GET` (but `full` for the
/// webhook signing secret, which is a credential), `run` for a `POST`
/// under `/v1/executions` (running, cancelling, pausing, resuming,
/// signals, redelivering a callback), `full` for everything else.
fn needed_scope(parts: &Parts) -> Scope {
    let path = parts
        .extensions
        .get::<MatchedPath>()
        .map_or(parts.uri.path(), MatchedPath::as_str);
    if path.starts_with("/v1/webhook-secret") {
        return Scope::Full;
    }
    if matches!(parts.method, Method::GET | Method::HEAD) {
        return Scope::Read;
    }
    if parts.method == Method::POST && path.starts_with("/v1/executions") {
        Scope::Run
    } else {
        Scope::Full
    }
}

fn check_scope(principal: &Principal, parts: &Parts) -> Result<(), ApiError> {
    let needed = needed_scope(parts);
    if principal.scopes.iter().any(|s| s.covers(needed)) {
        return Ok(());
    }
    let held: Vec<&str> = principal.scopes.iter().map(|s| s.as_str()).collect();
    let enough: Vec<String> = Scope::ALL
        .iter()
        .filter(|s| s.covers(needed))
        .map(|s| format!("`{}`", s.as_str()))
        .collect();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "this token ({}) has the scopes [{}]; {} {} needs {}",
            principal.token_id,
            held.join(", "),
            parts.method,
            parts.uri.path(),
            enough.join(" or ")
        ),
    ))
}

/// The tenant a request acts for.
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = principal(parts, state).await?;
        let Some(tenant) = principal.tenant.clone() else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the admin token manages tenants; use a tenant token for this route",
            ));
        };
        check_scope(&principal, parts)?;
        Ok(Self(tenant))
    }
}

/// A request made with an admin token: the one from configuration or one
/// created through the API.
#[derive(Debug, Clone)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = principal(parts, state).await?;
        if principal.tenant.is_some() {
            return Err(ApiError::unauthorized(
                "this route needs an admin token (STEPHOST_ADMIN_TOKEN or one made with \
                 POST /v1/admin/tokens)",
            ));
        }
        check_scope(&principal, parts)?;
        Ok(Self)
    }
}

/// A request made with any valid token, admin or tenant, whose scopes allow
/// it; the handler decides what the caller may see.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = principal(parts, state).await?;
        check_scope(&principal, parts)?;
        Ok(Self(principal))
    }
}

/// The most tokens a process on its store's only user (SQLite) keeps read.
pub(crate) const MAX_KNOWN_TOKENS: usize = 100_000;

/// Tokens already read from the store, by hash: at most
/// [`MAX_KNOWN_TOKENS`], the least recently used dropped first (read from
/// the store again when next presented). Unknown tokens are never kept.
#[derive(Debug)]
pub(crate) struct KnownTokens {
    map: std::sync::Mutex<hashlink::LruCache<TokenHash, Credential>>,
}

impl Default for KnownTokens {
    fn default() -> Self {
        Self::with_bound(MAX_KNOWN_TOKENS)
    }
}

impl KnownTokens {
    fn with_bound(max: usize) -> Self {
        Self {
            map: std::sync::Mutex::new(hashlink::LruCache::new(max)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, hashlink::LruCache<TokenHash, Credential>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token of `hash`, if read before, marked as just used.
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Credential> {
        self.lock().get(hash).cloned()
    }

    /// Keeps what the store said of `hash`.
    pub(crate) fn remember(&self, hash: TokenHash, token: Credential) {
        self.lock().insert(hash, token);
    }

    /// Forgets every token (one was revoked, or a tenant changed).
    pub(crate) fn forget_all(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod known_tokens_tests {
    use super::*;

    fn credential(i: u32) -> (TokenHash, Credential) {
        let mut hash = [0; 32];
        hash[..4].copy_from_slice(&i.to_be_bytes());
        let token = crate::store::Token {
            id: format!("tok_{i}"),
            tenant: Some(TenantId::new_unchecked("ten_a")),
            name: None,
            scopes: vec![Scope::Full],
            created_at: Timestamp::UNIX_EPOCH,
            expires_at: None,
            revoked_at: None,
        };
        (
            TokenHash(hash),
            Credential {
                token,
                suspended_at: None,
                quotas: crate::model::Quotas::default(),
            },
        )
    }

    #[test]
    fn known_tokens_keep_the_most_recently_used_within_the_bound() {
        let known = KnownTokens::with_bound(1000);
        for i in 0..1000 {
            let (h, c) = credential(i);
            known.remember(h, c);
        }
        // Token 0 is presented again: token 1 is now the oldest.
        assert!(known.get(&credential(0).0).is_some());
        for i in 1000..1500 {
            let (h, c) = credential(i);
            known.remember(h, c);
        }
        assert_eq!(known.lock().len(), 1000, "the bound holds, full");
        assert_eq!(known.get(&credential(0).0), Some(credential(0).1));
        assert_eq!(known.get(&credential(1).0), None, "the oldest went first");
        assert_eq!(known.get(&credential(500).0), None);
        assert!(known.get(&credential(501).0).is_some());
        known.forget_all();
        assert_eq!(known.get(&credential(1499).0), None);
        assert_eq!(KnownTokens::default().lock().capacity(), MAX_KNOWN_TOKENS);
    }
}
