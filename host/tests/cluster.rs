//! Several real `stephost serve` nodes on one PostgreSQL database (always
//! PostgreSQL, whatever `TEST_STORE` says; an unreachable server fails the
//! suite). Node A serves the API only (`claim-work = false`), node B runs
//! the work: everything sent to A must reach B, and every answer must come
//! back to A.
//!
//! With notifications on, both nodes poll only once a minute, so each
//! cross-node answer that arrives within seconds arrived through a hint.
//! With notifications off (a pooler that drops them), polling every 200 ms
//! does the same work.

#[path = "pg_support/mod.rs"]
mod pg_support;
#[path = "serve_support/mod.rs"]
mod serve_support;

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use serve_support::{Serve, call};

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

async fn api_only_node_hands_everything_to_the_worker(notifications: bool) {
    let schema = pg_support::Schema::new();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let worker = node(&schema, &dir_b, "node-b", true, notifications);
    let api = node(&schema, &dir_a, "node-a", false, notifications);
    let client = Client::new();
    let a = api.url.as_str();

    let listed = nodes(&client, a).await;
    let summary: Vec<(String, bool, bool)> = listed
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["claim_work"].as_bool().unwrap(),
                n["this_node"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("node-a".to_owned(), false, true),
            ("node-b".to_owned(), true, false)
        ]
    );

    let nap = |n: u64| json!({"op": "nap", "n": n});
    let token = serve_support::tenant(
        &client,
        a,
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[
            (
                "three",
                json!({"steps": [
                    {"id": "a", "step": "h", "input": nap(5)},
                    {"id": "b", "step": "h", "input": nap(5), "needs": ["a"]},
                    {"id": "c", "step": "h", "input": nap(5), "needs": ["b"]}]}),
            ),
            (
                "approval",
                json!({"steps": [
                    {"id": "ok", "wait": {"signal": "approval"}},
                    {"id": "after", "step": "h", "input": nap(1), "needs": ["ok"]}]}),
            ),
            (
                "two_naps",
                json!({"steps": [
                    {"id": "first", "step": "h", "input": nap(1500)},
                    {"id": "second", "step": "h", "input": nap(1), "needs": ["first"]}]}),
            ),
            (
                "slow",
                json!({"steps": [{"id": "nap", "step": "h", "input": {"op": "sleep"}}]}),
            ),
        ],
    )
    .await;

    // A sync call on A: B claims and runs it, and A's waiter hears of its
    // end.
    let (status, body) = promptly(
        "a sync call through the API-only node",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions"),
            &token,
            Some(json!({"workflow_id": "three", "input_data": {}})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded", "{body}");

    // A signal sent to A for an execution B parked.
    let id = submit(&client, a, &token, "approval").await;
    promptly(
        "B starting the execution A accepted",
        until(&client, a, &token, &id, |e| e["status"] == "waiting"),
    )
    .await;
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{a}/v1/executions/{id}/signals/approval"),
        &token,
        Some(json!({"ok": true})),
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
    let (status, done) = promptly(
        "a long poll on A for the signalled execution",
        call(
            &client,
            Method::GET,
            format!("{a}/v1/executions/{id}?wait_for_seconds=60"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(step_status(&done, "after"), "succeeded", "{done}");

    // Pause and resume, sent to A, of an execution B holds.
    // (A step's start is not committed on its own: `running` is the
    // execution's status, committed when B started it.)
    let id = submit(&client, a, &token, "two_naps").await;
    until(&client, a, &token, &id, |e| e["status"] == "running").await;
    let (status, paused) = promptly(
        "a pause through A",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions/{id}/pause"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(
        matches!(step_status(&paused, "second"), "absent" | "pending"),
        "nothing starts while paused: {paused}"
    );
    let (status, resumed) = promptly(
        "a resume through A",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions/{id}/resume"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let done = promptly(
        "the resumed execution finishing",
        until(&client, a, &token, &id, |e| e["status"] == "succeeded"),
    )
    .await;
    assert_eq!(step_status(&done, "second"), "succeeded", "{done}");

    // A cancel, sent to A, of an attempt running on B; meanwhile A lists
    // B as holding it.
    let id = submit(&client, a, &token, "slow").await;
    until(&client, a, &token, &id, |e| e["status"] == "running").await;
    let held: Vec<(String, u64)> = nodes(&client, a)
        .await
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["executions_held"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        held,
        vec![("node-a".to_owned(), 0), ("node-b".to_owned(), 1)]
    );
    let (status, cancelled) = promptly(
        "a cancel through A",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions/{id}/cancel"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_notifications_an_api_only_node_gets_answers_without_polling() {
    api_only_node_hands_everything_to_the_worker(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_polling_carries_the_work_between_nodes() {
    api_only_node_hands_everything_to_the_worker(false).await;
}

/// Every step of a finished execution ran exactly once.
fn each_step_ran_once(e: &Value) {
    for s in e["steps"].as_array().unwrap() {
        let attempts = s["attempts"].as_array().map_or(0, Vec::len);
        assert_eq!(attempts, 1, "step {} ran {attempts} times: {e}", s["id"]);
    }
}

/// `SIGTERM` of a node under load: readiness turns 503 at once, the node
/// claims nothing more, lets its running attempt finish and commits it,
/// hands back what it had not started, releases its leases and exits 0
/// well within its grace; the other node runs the rest. Nothing is lost
/// and no step runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_nodes_work_over_and_loses_and_doubles_nothing() {
    let schema = pg_support::Schema::new();
    let (dir_1, dir_2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let grace = [("STEPHOST_SHUTDOWN_GRACE", "20s")];
    let mut first = node_with(&schema, &dir_1, "node-1", true, true, &grace);
    let second = node_with(&schema, &dir_2, "node-2", true, true, &grace);
    let client = Client::new();
    let urls = [first.url.clone(), second.url.clone()];
    let nap = |n: u64| json!({"op": "nap", "n": n});
    let token = serve_support::tenant(
        &client,
        &urls[0],
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[
            (
                "two",
                json!({"steps": [
                    {"id": "a", "step": "h", "input": nap(300)},
                    {"id": "b", "step": "h", "input": nap(10), "needs": ["a"]}]}),
            ),
            (
                "long",
                json!({"steps": [{"id": "a", "step": "h", "input": nap(3000)}]}),
            ),
        ],
    )
    .await;
    // Submitted to node 1 with a slot free, so node 1 runs it.
    let long = submit(&client, &urls[0], &token, "long").await;
    until(&client, &urls[0], &token, &long, |e| {
        e["status"] == "running"
    })
    .await;
    let mut ids = vec![long.clone()];
    for i in 0..40 {
        ids.push(submit(&client, &urls[i % 2], &token, "two").await);
    }

    first.signal(libc::SIGTERM);
    let stopping = Instant::now();
    let deadline = stopping + Duration::from_secs(2);
    loop {
        let r = client.get(format!("{}/health/ready", urls[0])).send().await;
        if r.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE) {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never said 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(30)));
    let exited_at = jiff::Timestamp::now();
    let took = stopping.elapsed();
    assert!(exit.success(), "{exit}");
    assert!(
        took < Duration::from_secs(15),
        "the stop took {took:?}: it must wait for the 3 s attempt, not the 20 s grace"
    );
    let held: Vec<(String, u64)> = nodes(&client, &urls[1])
        .await
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["executions_held"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(held[0], ("node-1".to_owned(), 0), "{held:?}");

    for id in &ids {
        let done = until(&client, &urls[1], &token, id, |e| {
            e["status"] != "queued" && e["status"] != "running"
        })
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        each_step_ran_once(&done);
    }
    // The long attempt finished on node 1 before it exited, not on node 2
    // after a rerun.
    let long = until(&client, &urls[1], &token, &long, |_| true).await;
    let finished: jiff::Timestamp = long["steps"][0]["attempts"][0]["finished_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        finished < exited_at,
        "finished {finished}, node 1 exited {exited_at}: {long}"
    );
    drop(second);
}
