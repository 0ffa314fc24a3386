//! Several real `stephost serve` nodes on one PostgreSQL database (always
//! PostgreSQL, whatever `TEST_STORE` says; an unreachable server fails the
//! suite), one scenario a module:
//!
//! - `api_only`: node A serves the API only (`claim-work = false`), node B
//!   runs the work: everything sent to A must reach B, and every answer
//!   must come back to A. With notifications on, both nodes poll only once
//!   a minute, so each cross-node answer that arrives within seconds
//!   arrived through a hint; with notifications off (a pooler that drops
//!   them), polling every 200 ms does the same work.
//! - `handover`: `SIGTERM` of a node under load.
//! - `failover`: three nodes through `kill -9` and a stall past the lease.
//! - `schedules`: a one-second schedule while nodes come and go.
//!
//! This file holds what they share: starting nodes and reading them.

#[path = "../pg_support/mod.rs"]
mod pg_support;
#[path = "../serve_support/mod.rs"]
mod serve_support;

mod api_only;
mod failover;
mod handover;
mod schedules;

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use serve_support::{Serve, call, list_all};

const ADMIN: &str = "cluster-admin-token";

/// What every cross-node answer must beat: well under the 60 s poll of the
/// notification runs, well over what a hint takes.
const PROMPT: Duration = Duration::from_secs(10);

/// A node on `schema` with its own data directory.
fn node(
    schema: &pg_support::Schema,
    dir: &tempfile::TempDir,
    id: &str,
    claim_work: bool,
    notifications: bool,
) -> Serve {
    node_with(schema, dir, id, claim_work, notifications, &[])
}

/// [`node`] with more `STEPHOST_*` settings.
fn node_with(
    schema: &pg_support::Schema,
    dir: &tempfile::TempDir,
    id: &str,
    claim_work: bool,
    notifications: bool,
    more: &[(&str, &str)],
) -> Serve {
    let poll = if notifications { "60s" } else { "200ms" };
    let mut env = schema.env();
    env.extend(
        [
            ("STEPHOST_ADMIN_TOKEN", ADMIN),
            ("STEPHOST_WORKERS", "2"),
            ("STEPHOST_NODE_ID", id),
            (
                "STEPHOST_CLAIM_WORK",
                if claim_work { "true" } else { "false" },
            ),
            ("STEPHOST_POLL_INTERVAL", poll),
            (
                "STEPHOST_DATABASE_NOTIFICATIONS",
                if notifications { "true" } else { "false" },
            ),
            ("STEPHOST_DEFAULT_WAIT_SECONDS", "120"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Serve::start(dir.path(), &env)
}

async fn nodes(client: &Client, url: &str) -> Vec<Value> {
    let (status, body) = call(
        client,
        Method::GET,
        format!("{url}/v1/admin/nodes"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

/// Polls an execution on `url` until `done` holds, for at most 30 s.
async fn until(
    client: &Client,
    url: &str,
    token: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, e) = call(
            client,
            Method::GET,
            format!("{url}/v1/executions/{id}"),
            token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn step_status<'a>(e: &'a Value, id: &str) -> &'a str {
    e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["status"].as_str())
        .unwrap_or("absent")
}

async fn submit(client: &Client, url: &str, token: &str, workflow: &str) -> String {
    let (status, body) = call(
        client,
        Method::POST,
        format!("{url}/v1/executions/async"),
        token,
        Some(json!({"workflow_id": workflow, "input_data": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["execution_id"].as_str().unwrap().to_owned()
}

/// Calls `f` and checks that it answered within [`PROMPT`].
async fn promptly<T>(what: &str, f: impl Future<Output = T>) -> T {
    let started = Instant::now();
    let out = f.await;
    let took = started.elapsed();
    assert!(took < PROMPT, "{what} took {took:?}");
    out
}

/// Every step of a finished execution ran exactly once.
fn each_step_ran_once(e: &Value) {
    for s in e["steps"].as_array().unwrap() {
        let attempts = s["attempts"].as_array().map_or(0, Vec::len);
        assert_eq!(attempts, 1, "step {} ran {attempts} times: {e}", s["id"]);
    }
}

/// `(node id, executions held)` of every node, as `url` lists them.
async fn holdings(client: &Client, url: &str) -> Vec<(String, u64)> {
    nodes(client, url)
        .await
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["executions_held"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The executions a node holds, as another node's listing shows them.
async fn held_by(client: &Client, url: &str, node: &str) -> u64 {
    holdings(client, url)
        .await
        .into_iter()
        .find(|(id, _)| id == node)
        .map_or(0, |(_, held)| held)
}
