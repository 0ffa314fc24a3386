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

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "stephost", description = "Sandboxed workflow host: every step is an isolated WebAssembly component."),
    modifiers(&Bearer),
    paths(
        super::health::live, super::health::ready,
        super::tenants::create, super::tenants::create_token,
        super::steps::put, super::steps::list, super::steps::get, super::steps::delete,
        super::workflows::put, super::workflows::list, super::workflows::get, super::workflows::delete,
        super::schedules::create, super::schedules::list, super::schedules::get,
        super::schedules::update, super::schedules::update_action, super::schedules::delete,
        super::schedules::delete_action, super::schedules::pause, super::schedules::resume,
        super::schedules::trigger,
        super::executions::run_sync, super::executions::run_async, super::executions::get,
        super::executions::list, super::executions::cancel, super::signals::send,
        super::lifecycle::pause, super::lifecycle::resume,
        super::secrets::put, super::secrets::list, super::secrets::delete,
    ),
    tags(
        (name = "executions", description = "Run workflows and follow their executions"),
        (name = "workflows", description = "Versioned workflow definitions"),
        (name = "schedules", description = "Cron schedules that run a workflow at their ticks"),
        (name = "steps", description = "Step components"),
        (name = "secrets", description = "Tenant secrets (names only; values never leave)"),
        (name = "tenants", description = "Tenants and tokens (admin)"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json` and the reference page at `/docs`.
pub fn routes() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
