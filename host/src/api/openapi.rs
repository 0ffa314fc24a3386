//! The OpenAPI 3.1 document, generated from the handlers and DTOs, and the
//! interactive reference page (Swagger UI, served from assets embedded at
//! build time, so it works offline).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Unique operation ids, and every error response the way the server sends
/// it, on every operation where it can happen, so a client (and
/// schemathesis) can rely on the document: error bodies are
/// `application/problem+json`; a secured operation can answer 401 and 403
/// (a scope that does not allow it); one that takes path or query
/// parameters or a body can answer 400 (a malformed parameter or body); one
/// that takes a body can answer 413 (over the body limit) and 415 (not
/// JSON).
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemBody")))
                .build()
        };
        let common = |status: &str| {
            let description = match status {
                "400" => "a path or query parameter, or the body, is malformed",
                "401" => "no token, or a token that is unknown, revoked, expired or not valid here",
                "403" => "the token's scopes do not allow this (a `read` token and a POST, say)",
                "413" => "the body is over the server's limit",
                "415" => "the body is not `application/json`",
                _ => "error",
            };
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/problem+json", problem())
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                // utoipa names an operation after its handler, and handlers
                // of different resources share names (`get`, `pause`): an
                // operationId must be unique, so it takes the tag in front.
                if let (Some(tag), Some(id)) = (
                    op.tags.as_ref().and_then(|t| t.first()).cloned(),
                    op.operation_id.as_mut(),
                ) && !id.starts_with(&format!("{tag}_"))
                {
                    *id = format!("{tag}_{id}");
                }
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.as_str() >= "400"
                        && let Some(content) = response.content.shift_remove("application/json")
                    {
                        response
                            .content
                            .insert("application/problem+json".into(), content);
                    }
                }
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = op.request_body.is_some();
                let mut add = |status: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| common(status));
                };
                if secured {
                    add("401");
                    add("403");
                }
                if has_params || has_body {
                    add("400");
                }
                if has_body {
                    add("413");
                    add("415");
                }
                let id = op.operation_id.as_deref().unwrap_or_default();
                if SUBMISSIONS.contains(&id) {
                    op.responses
                        .responses
                        .entry("429".to_owned())
                        .or_insert_with(too_many);
                }
                if QUOTA_COUNTED.contains(&id) {
                    op.responses
                        .responses
                        .entry("409".to_owned())
                        .or_insert_with(|| {
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(
                                        "over a count or size quota (`max_steps`, \
                                         `max_component_bytes`, `max_workflows`, `max_secrets`), \
                                         named in `detail`",
                                    )
                                    .content("application/problem+json", problem())
                                    .build(),
                            )
                        });
                }
            }
        }
    }
}

/// The operations that are submissions, under the rate limits.
const SUBMISSIONS: [&str; 4] = [
    "executions_run_sync",
    "executions_run_async",
    "executions_run_batch",
    "schedules_trigger",
];

/// The operations that a count or size quota can refuse.
const QUOTA_COUNTED: [&str; 3] = ["steps_put", "workflows_put", "secrets_put"];

/// 429 with its fields.
fn too_many() -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, ResponseBuilder, Type};
    let header = |description: &str, kind: Type| {
        HeaderBuilder::new()
            .schema(utoipa::openapi::ObjectBuilder::new().schema_type(kind))
            .description(Some(description))
            .build()
    };
    RefOr::T(
        ResponseBuilder::new()
            .description(
                "over the tenant's submission rate (quota `submissions_per_second`) or the \
                 server's (`global-submissions-per-second`); `detail` says which",
            )
            .header(
                "Retry-After",
                header("seconds until a submission is admitted", Type::Integer),
            )
            .header(
                "RateLimit-Policy",
                header(
                    "each policy that applies: `\"tenant\";q=<burst>;w=<seconds to refill>`, \
                     `\"server\";…`",
                    Type::String,
                ),
            )
            .header(
                "RateLimit",
                header(
                    "each policy's state: `\"tenant\";r=<remaining>;t=<seconds until full>`",
                    Type::String,
                ),
            )
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemBody")))
                    .build(),
            )
            .build(),
    )
}

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "stephost", description = "Sandboxed workflow host: every step is an isolated WebAssembly component."),
    modifiers(&Bearer, &Problems),
    paths(
        super::health::live, super::health::ready,
        super::tenants::create, super::tenants::list, super::tenants::get,
        super::tenants::suspend, super::tenants::unsuspend, super::tenants::delete,
        super::quotas::own, super::quotas::get, super::quotas::put, super::audit::list,
        super::egress::own_egress, super::egress::get_egress, super::egress::put_egress,
        super::tenants::create_token, super::tenants::tokens,
        super::tenants::revoke_token, super::tenants::create_admin_token,
        super::tenants::admin_tokens, super::tenants::revoke_admin_token, super::admin::nodes,
        super::steps::put, super::steps::list, super::steps::get, super::steps::delete,
        super::workflows::put, super::workflows::list, super::workflows::get, super::workflows::delete,
        super::schedules::create, super::schedules::list, super::schedules::get,
        super::schedules::update, super::schedules::update_action, super::schedules::delete,
        super::schedules::delete_action, super::schedules::pause, super::schedules::resume,
        super::schedules::trigger,
        super::executions::run_sync, super::executions::run_async, super::executions::get,
        super::executions::list, super::executions::cancel, super::signals::send,
        super::batches::run_batch, super::batches::get_batch,
        super::lifecycle::pause, super::lifecycle::resume,
        super::secrets::put, super::secrets::list, super::secrets::delete,
        super::webhooks::get, super::webhooks::rotate, super::webhooks::retry,
    ),
    tags(
        (name = "executions", description = "Run workflows and follow their executions"),
        (name = "workflows", description = "Versioned workflow definitions"),
        (name = "schedules", description = "Cron schedules that run a workflow at their ticks"),
        (name = "steps", description = "Step components"),
        (name = "secrets", description = "Tenant secrets (names only; values never leave)"),
        (name = "callbacks", description = "Signed callbacks: the signing secret and redelivery"),
        (name = "tenants", description = "Tenants (admin) and their tokens (admin, or a tenant for itself)"),
        (name = "admin", description = "The server and its nodes (admin)"),
        (name = "audit", description = "Who changed which resource, and when"),
        (name = "quotas", description = "Tenants' limits and usage"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json` and the reference page at `/docs`.
pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
