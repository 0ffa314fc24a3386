//! The REST API: axum routes, one file per resource, and the one error type.
//! It is the only module that knows HTTP.

mod admin;
mod audit;
mod auth;
mod batches;
mod connection;
mod egress;
mod executions;
mod health;
mod lifecycle;
mod limits;
mod openapi;
mod problem;
mod quotas;
mod schedules;
mod secrets;
mod signals;
mod steps;
mod tenants;
mod webhooks;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler as _;
use axum::routing::{delete, get, post, put};

pub use self::auth::{AdminToken, generate_token, hash_token};
pub use self::limits::Rate;
pub use self::problem::{ApiError, PROBLEM_JSON};
use crate::engine::Engine;
use crate::model::Overrides;
use crate::secrets::Vault;
use crate::store::{Credential, Store};

/// Limits and defaults of the API.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body, except component uploads.
    pub max_body_bytes: usize,
    /// Largest component upload.
    pub max_component_bytes: usize,
    /// Largest signal payload.
    pub max_signal_bytes: usize,
    /// The most executions one batch creates.
    pub max_batch_executions: u32,
    /// Largest batch request body.
    pub max_batch_body_bytes: usize,
    /// How long a sync call waits when the client does not say.
    pub default_wait: std::time::Duration,
    /// The longest wait a client may ask for.
    pub max_wait: std::time::Duration,
    /// The quotas of a tenant where the admin set none of its own.
    pub quotas: crate::model::Quotas,
    /// The submissions per second this node accepts from all tenants.
    pub global_rate: Option<Rate>,
    /// The server's HTTP caps of a step's attempt, which a definition may
    /// lower (`step-http-max-*`).
    pub step_http_caps: crate::model::HttpCaps,
}

/// Registers components: validation and precompilation, behind a trait so
/// that the API does not know the sandbox.
#[async_trait::async_trait]
pub trait Registrar: Send + Sync + 'static {
    /// Validates and precompiles a component.
    async fn register(&self, bytes: Arc<Vec<u8>>) -> Result<Registered, String>;
    /// Checks per-step limits against the server's ceilings.
    fn check_limits(&self, overrides: &Overrides) -> Result<(), String>;
}

/// What registering a component found.
#[derive(Debug, Clone)]
pub struct Registered {
    /// Content digest.
    pub digest: crate::model::Digest,
    /// What it imports.
    pub imports: Vec<String>,
    /// How long validation and compilation took.
    pub compile_ms: u64,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) engine: Engine,
    pub(crate) registrar: Arc<dyn Registrar>,
    pub(crate) vault: Vault,
    pub(crate) admin: Option<AdminToken>,
    pub(crate) settings: Arc<Settings>,
    /// Tokens already read from the store, by hash, when this process is
    /// the store's only user (SQLite): revoking a token through the API
    /// empties it, and expiry is checked on every use. A shared store
    /// (PostgreSQL) is asked on every request, so that a token revoked
    /// through any node is refused by every node at once. Unknown tokens
    /// are never cached.
    /// At most [`auth::MAX_KNOWN_TOKENS`], least recently used dropped.
    tokens: Arc<auth::KnownTokens>,
    /// The submission rate buckets.
    rates: Arc<limits::RateLimits>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Bundles the state.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Engine,
        registrar: Arc<dyn Registrar>,
        vault: Vault,
        admin: Option<AdminToken>,
        settings: Settings,
    ) -> Self {
        Self {
            store,
            engine,
            registrar,
            vault,
            admin,
            rates: Arc::new(limits::RateLimits::new(settings.global_rate)),
            settings: Arc::new(settings),
            tokens: Arc::default(),
        }
    }

    /// The quotas that apply to the caller's tenant: its own, else the
    /// server's defaults.
    fn quotas(&self, caller: &auth::Principal) -> crate::model::Quotas {
        caller.quotas.or(&self.settings.quotas)
    }

    fn known_token(&self, hash: &crate::store::TokenHash) -> Option<Credential> {
        self.tokens.get(hash)
    }

    fn remember_token(&self, hash: crate::store::TokenHash, token: &Credential) {
        if self.store.shared() {
            return;
        }
        self.tokens.remember(hash, token.clone());
    }

    /// Forgets every cached token: one was revoked.
    fn forget_tokens(&self) {
        self.tokens.forget_all();
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_body_bytes;
    let component_limit = state.settings.max_component_bytes;
    let steps = Router::new()
        .route(
            "/v1/steps/{name}",
            put(steps::put)
                .get(steps::get)
                .delete(steps::delete)
                .layer(DefaultBodyLimit::max(component_limit)),
        )
        .route("/v1/steps", get(steps::list));
    let submissions = axum::middleware::from_fn_with_state(state.clone(), limits::submissions);
    // A batch admits itself (one submission per input) once it has read
    // how many inputs it has.
    let batches = Router::new().route(
        "/v1/executions/batch",
        post(batches::run_batch).layer(DefaultBodyLimit::max(state.settings.max_batch_body_bytes)),
    );
    let api = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/v1/admin/nodes", get(admin::nodes))
        .route("/v1/tenants", post(tenants::create).get(tenants::list))
        .route(
            "/v1/tenants/{tenant}",
            get(tenants::get).delete(tenants::delete),
        )
        .route("/v1/tenants/{tenant}/suspend", post(tenants::suspend))
        .route("/v1/tenants/{tenant}/unsuspend", post(tenants::unsuspend))
        .route(
            "/v1/admin/tokens",
            post(tenants::create_admin_token).get(tenants::admin_tokens),
        )
        .route(
            "/v1/admin/tokens/{token_id}",
            delete(tenants::revoke_admin_token),
        )
        .route(
            "/v1/tenants/{tenant}/tokens",
            post(tenants::create_token).get(tenants::tokens),
        )
        .route(
            "/v1/tenants/{tenant}/tokens/{token_id}",
            delete(tenants::revoke_token),
        )
        .route("/v1/workflows", get(workflows::list))
        .route(
            "/v1/workflows/{workflow_id}",
            put(workflows::put)
                .get(workflows::get)
                .delete(workflows::delete),
        )
        .route(
            "/v1/schedules",
            post(schedules::create).get(schedules::list),
        )
        .route(
            "/v1/schedules/{schedule_id}",
            get(schedules::get)
                .patch(schedules::update)
                .delete(schedules::delete),
        )
        .route(
            "/v1/schedules/{schedule_id}/update",
            post(schedules::update_action),
        )
        .route(
            "/v1/schedules/{schedule_id}/delete",
            post(schedules::delete_action),
        )
        .route("/v1/schedules/{schedule_id}/pause", post(schedules::pause))
        .route(
            "/v1/schedules/{schedule_id}/resume",
            post(schedules::resume),
        )
        .route(
            "/v1/schedules/{schedule_id}/trigger",
            post(schedules::trigger.layer(submissions.clone())),
        )
        .route(
            "/v1/executions",
            post(executions::run_sync.layer(submissions.clone())).get(executions::list),
        )
        .route(
            "/v1/executions/async",
            post(executions::run_async.layer(submissions.clone())),
        )
        .route("/v1/batches/{batch_id}", get(batches::get_batch))
        .route("/v1/quotas", get(quotas::own))
        .route("/v1/egress", get(egress::own_egress))
        .route(
            "/v1/tenants/{tenant}/egress",
            get(egress::get_egress).put(egress::put_egress),
        )
        .route("/v1/audit", get(audit::list))
        .route(
            "/v1/tenants/{tenant}/quotas",
            get(quotas::get).put(quotas::put),
        )
        .route("/v1/secrets", get(secrets::list))
        .route(
            "/v1/secrets/{name}",
            put(secrets::put).delete(secrets::delete),
        )
        .route("/v1/executions/{execution_id}", get(executions::get))
        .route(
            "/v1/executions/{execution_id}/cancel",
            post(executions::cancel),
        )
        .route(
            "/v1/executions/{execution_id}/pause",
            post(lifecycle::pause),
        )
        .route(
            "/v1/executions/{execution_id}/resume",
            post(lifecycle::resume),
        )
        .route(
            "/v1/executions/{execution_id}/signals/{name}",
            post(signals::send),
        )
        .route(
            "/v1/executions/{execution_id}/deliveries/{delivery_id}/retry",
            post(webhooks::retry),
        )
        .route("/v1/webhook-secret", get(webhooks::get))
        .route("/v1/webhook-secret/rotate", post(webhooks::rotate))
        .layer(DefaultBodyLimit::max(body_limit));
    Router::new()
        .merge(api)
        .merge(steps)
        .merge(batches)
        .merge(openapi::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::record,
        ))
        .layer(axum::middleware::map_response(problem::ensure_problem_json))
        .layer(axum::middleware::from_fn(connection::close_unread))
        .with_state(state)
}
