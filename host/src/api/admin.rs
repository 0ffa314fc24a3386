//! `/v1/admin`: the server itself (admin only).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::auth::Admin;
use super::{ApiError, AppState};

/// A node (a `stephost serve` process) using the database.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeView {
    /// Its id (`node-id`).
    pub node_id: String,
    /// When its current run started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339); nodes beat every 2 s, and are
    /// forgotten an hour after their last.
    pub last_heartbeat_at: String,
    /// How many executions it holds under a lease that has not lapsed.
    pub executions_held: u64,
    /// Whether it claims work (`claim-work`); `false` for API-only nodes.
    pub claim_work: bool,
    /// Whether this is the node that answered.
    pub this_node: bool,
}

/// `GET /v1/admin/nodes` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeList {
    /// Every node heard from in the last hour, by id.
    pub items: Vec<NodeView>,
}

/// Lists the nodes sharing the database, with their last heartbeat and how
/// many executions each holds.
#[utoipa::path(get, path = "/v1/admin/nodes", tag = "admin",
    security(("bearer" = [])),
    responses((status = 200, body = NodeList), (status = 401, body = super::problem::ProblemBody)))]
pub async fn nodes(_: Admin, State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    let this = state.engine.node().clone();
    let items = state
        .engine
        .nodes()
        .await?
        .into_iter()
        .map(|n| NodeView {
            this_node: n.node_id == this,
            node_id: n.node_id.to_string(),
            started_at: n.started_at.to_string(),
            last_heartbeat_at: n.last_heartbeat_at.to_string(),
            executions_held: n.executions_held,
            claim_work: n.claim_work,
        })
        .collect();
    Ok(Json(NodeList { items }))
}
