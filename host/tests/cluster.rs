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

async fn api_only_node_hands_everything_to_the_worker(notifications: bool) {
    let schema = pg_support::Schema::new();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let worker = node(&schema, &dir_b, "node-b", true, notifications);
    let api = node(&schema, &dir_a, "node-a", false, notifications);
    let client = Client::new();
    let a = api.url.as_str();

    // Each node registers with its first heartbeat, which may come just
    // after it answers: wait until A lists both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = nodes(&client, a).await;
        if listed.len() >= 2 || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
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
    let held = holdings(&client, a).await;
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

    // A workflow version and a step version published on B are what the
    // next run through A starts, at once: A runs `three` just before, and a
    // node that remembered what it resolved would start the old versions.
    let b = worker.url.as_str();
    let run_three = || {
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions"),
            &token,
            Some(json!({"workflow_id": "three", "input_data": {}})),
        )
    };
    let (status, v1) = run_three().await;
    assert_eq!(
        (status, v1["workflow_version"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v1}"
    );
    let (status, v2) = call(
        &client,
        Method::PUT,
        format!("{b}/v1/workflows/three"),
        &token,
        Some(json!({"steps": [{"id": "a", "step": "h", "input": {"x": 1}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    let put = client
        .put(format!("{b}/v1/steps/h"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_programs::ECHO).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let echo: Value = put.json().await.unwrap();
    let (status, body) = run_three().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workflow_version"], v2["version"], "{body}");
    assert_eq!(body["steps"][0]["digest"], echo["digest"], "{body}");
    assert_eq!(body["output"], json!({"x": 1}), "{body}");

    // A token revoked through one node is refused by the other on the very
    // next request, though both have just accepted it.
    for (revoker, other) in [(a, b), (b, a)] {
        let (status, made) = call(
            &client,
            Method::POST,
            format!("{revoker}/v1/tenants/acme/tokens"),
            &token,
            Some(json!({"name": "short-lived"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        let spare = made["token"].as_str().unwrap();
        for url in [a, b] {
            let (status, body) =
                call(&client, Method::GET, format!("{url}/v1/steps"), spare, None).await;
            assert_eq!(status, StatusCode::OK, "{url}: {body}");
        }
        let (status, body) = call(
            &client,
            Method::DELETE,
            format!(
                "{revoker}/v1/tenants/acme/tokens/{}",
                made["token_id"].as_str().unwrap()
            ),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        for url in [other, revoker] {
            let (status, body) =
                call(&client, Method::GET, format!("{url}/v1/steps"), spare, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}: {body}");
            assert!(
                body["detail"].as_str().unwrap().contains("revoked"),
                "{body}"
            );
        }
    }

    // A tenant suspended through A: its token is refused by both nodes at
    // once, and the execution B runs for it is taken from B; unsuspended
    // through B, B takes it up again. (`h` is `echo` by now.)
    let put = client
        .put(format!("{a}/v1/steps/z"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_programs::HOSTILE).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let (status, body) = call(
        &client,
        Method::PUT,
        format!("{a}/v1/workflows/sleepy"),
        &token,
        Some(json!({"steps": [{"id": "nap", "step": "z", "input": {"op": "sleep"}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = submit(&client, a, &token, "sleepy").await;
    until(&client, a, &token, &id, |e| e["status"] == "running").await;
    assert_eq!(held_by(&client, a, "node-b").await, 1);
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{a}/v1/tenants/acme/suspend"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for url in [b, a] {
        let (status, body) = call(
            &client,
            Method::GET,
            format!("{url}/v1/steps"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("suspended"),
            "{body}"
        );
    }
    assert_eq!(
        held_by(&client, a, "node-b").await,
        0,
        "the lease is taken from B"
    );
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{b}/v1/tenants/acme/unsuspend"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while held_by(&client, a, "node-b").await == 0 {
        assert!(
            Instant::now() < deadline,
            "B never took the execution up again"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{a}/v1/executions/{id}/cancel"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
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
    let held = holdings(&client, &urls[1]).await;
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

const TOTAL: usize = 3000;

/// Three nodes take 3,000 async executions submitted round robin; one is
/// killed with `kill -9` and another stopped (`SIGSTOP`) for longer than
/// its lease, then continued. Every execution ends exactly once (one
/// terminal entry in its history, `succeeded`), every step of each has
/// exactly one attempt in the record (attempts in flight on the dead or
/// stalled node leave none: they ran again elsewhere), and the stalled
/// node, woken, finds its leases gone and writes nothing over the records
/// the others finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_kill_9_and_a_stall_past_the_lease() {
    let schema = pg_support::Schema::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let lease = [("STEPHOST_LEASE_TTL", "2s")];
    let mut nodes_up: Vec<Serve> = (0..3)
        .map(|i| node_with(&schema, &dirs[i], &format!("node-{i}"), true, true, &lease))
        .collect();
    let urls: Vec<String> = nodes_up.iter().map(|n| n.url.clone()).collect();
    let client = Client::new();
    let nap = json!({"op": "nap", "n": 1});
    let token = serve_support::tenant(
        &client,
        &urls[0],
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[(
            "three",
            json!({"steps": [
                {"id": "a", "step": "h", "input": nap},
                {"id": "b", "step": "h", "input": nap, "needs": ["a"]},
                {"id": "c", "step": "h", "input": nap, "needs": ["b"]}]}),
        )],
    )
    .await;

    let mut alive = [true, true, true];
    let mut accepted: Vec<String> = Vec::with_capacity(TOTAL);
    let mut stopped_at = None;
    let mut next = 0usize;
    for round in 0..TOTAL / 50 {
        if round == 15 {
            nodes_up[0].kill_9();
            alive[0] = false;
        }
        if round == 25 {
            // Node 1 holds work when it stalls.
            let deadline = Instant::now() + Duration::from_secs(20);
            while held_by(&client, &urls[2], "node-1").await == 0 {
                assert!(Instant::now() < deadline, "node 1 never held anything");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            nodes_up[1].signal(libc::SIGSTOP);
            stopped_at = Some(Instant::now());
            alive[1] = false;
        }
        let mut batch = Vec::new();
        for _ in 0..50 {
            while !alive[next % 3] {
                next += 1;
            }
            let url = urls[next % 3].clone();
            next += 1;
            let (client, token) = (client.clone(), token.clone());
            batch.push(tokio::spawn(async move {
                submit(&client, &url, &token, "three").await
            }));
        }
        for b in batch {
            accepted.push(b.await.unwrap());
        }
    }
    // Stalled for longer than the 2 s lease (its work taken over meanwhile).
    let stopped_at = stopped_at.unwrap();
    let stall = Duration::from_secs(5);
    if stopped_at.elapsed() < stall {
        tokio::time::sleep(stall - stopped_at.elapsed()).await;
    }
    nodes_up[1].signal(libc::SIGCONT);

    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        let done = list_all(&client, &urls[2], &token, "").await;
        let unfinished = done
            .iter()
            .filter(|e| {
                !["succeeded", "failed", "cancelled", "timed_out"]
                    .contains(&e["status"].as_str().unwrap_or(""))
            })
            .count();
        if done.len() == TOTAL && unfinished == 0 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} of {} executions unfinished",
            done.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut ids: Vec<&str> = finished
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut wanted: Vec<&str> = accepted.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(
        ids, wanted,
        "the listing holds exactly the accepted executions"
    );
    for id in &accepted {
        let (status, e) = call(
            &client,
            Method::GET,
            format!("{}/v1/executions/{id}", urls[2]),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "succeeded", "{e}");
        let terminal = e["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| {
                ["succeeded", "failed", "cancelled", "timed_out"]
                    .contains(&h["status"].as_str().unwrap_or(""))
            })
            .count();
        assert_eq!(terminal, 1, "ended {terminal} times: {e}");
        each_step_ran_once(&e);
    }
    // The woken node found its leases taken over and stopped those drivers
    // (the record checks above show nothing of its late writes survived).
    let lost = nodes_up[1].logged("lease was lost") + nodes_up[1].logged("the lease of executions");
    assert!(lost >= 1, "node 1 never noticed a lost lease");
    eprintln!(
        "{TOTAL} executions on three nodes: node 1 noticed {lost} lost-lease events after its stall"
    );
}

/// A schedule ticking every second for 30 s while nodes are killed and
/// restarted (and one stopped gracefully): exactly one execution per tick,
/// no tick skipped, none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_fires_once_per_tick_while_nodes_come_and_go() {
    let schema = pg_support::Schema::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let lease = [("STEPHOST_LEASE_TTL", "2s")];
    let start = |i: usize| node_with(&schema, &dirs[i], &format!("node-{i}"), true, true, &lease);
    let mut up: Vec<Serve> = (0..3).map(start).collect();
    let client = Client::new();
    let token = serve_support::tenant(
        &client,
        &up[0].url,
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[(
            "tick",
            json!({"steps": [{"id": "a", "step": "h", "input": {"op": "nap", "n": 1}}]}),
        )],
    )
    .await;
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{}/v1/schedules", up[0].url),
        &token,
        Some(json!({"schedule_id": "every-second", "workflow_id": "tick",
                    "cron": "* * * * * *", "overlap": "allow_all"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let begun = Instant::now();
    let at = |s: u64| begun + Duration::from_secs(s);
    let sleep_until = |t: Instant| tokio::time::sleep_until(t.into());
    sleep_until(at(5)).await;
    up[0].kill_9();
    sleep_until(at(10)).await;
    up[0] = start(0);
    sleep_until(at(15)).await;
    up[1].kill_9();
    sleep_until(at(20)).await;
    up[1] = start(1);
    sleep_until(at(25)).await;
    up[2].signal(libc::SIGTERM);
    let exit = tokio::task::block_in_place(|| up[2].wait_exit(Duration::from_secs(30)));
    assert!(exit.success(), "{exit}");
    up[2] = start(2);
    sleep_until(at(30)).await;
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{}/v1/schedules/every-second/pause", up[1].url),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Ticks that were due when the pause came may still be firing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = list_all(&client, &up[1].url, &token, "&schedule_id=every-second").await;
    let mut ticks: Vec<jiff::Timestamp> = runs
        .iter()
        .map(|e| e["scheduled_at"].as_str().unwrap().parse().unwrap())
        .collect();
    ticks.sort();
    let distinct: std::collections::BTreeSet<_> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick ran twice: {ticks:?}");
    assert!(
        ticks.len() >= 25,
        "only {} ticks in 30 s: {ticks:?}",
        ticks.len()
    );
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]),
            jiff::SignedDuration::from_secs(1),
            "a tick is missing between {} and {}",
            pair[0],
            pair[1]
        );
    }
}
