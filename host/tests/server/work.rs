//! Work owned by the store, end to end: retry delays park the execution
//! and free its slot, cancel reaches an execution wherever it is (parked,
//! queued behind a full engine), `wait_until_step` waits while the step
//! retries, and a restart claims parked work from the store as it comes due.
//! Time is a manual clock: nothing here sleeps for a retry delay.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    Server, get, live_executions, manual_clock as clock, start_with, submit, wait_for,
};

/// One driver slot and one worker: anything that holds a slot while it
/// waits blocks everything else.
fn one_slot() -> Value {
    json!({"workers": 1, "max-in-flight": 1})
}

/// A workflow whose only step fails with a retryable error and retries
/// once, an hour later (well within the workflow's 3 h timeout).
async fn flaky(s: &Server, t: &str) {
    let r = s
        .workflow(
            t,
            "flaky",
            json!({"timeout": "3h", "steps": [{"id": "call", "step": "hostile",
                "input": {"op": "error", "text": "upstream down"},
                "retry": {"max_attempts": 2, "initial_delay": "1h", "max_delay": "1h",
                          "jitter": 0}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

fn retrying(e: &Value) -> bool {
    e["steps"][0]["status"] == "retrying"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_delay_parks_the_execution_and_frees_its_slot() {
    let clock = clock();
    let s = start_with(clock.clone(), one_slot(), None).await;
    let t = s.fixture("acme").await;
    flaky(&s, &t).await;
    let id = submit(&s, &t, "flaky", Value::Null).await;
    let parked = wait_for(&s, &t, &id, retrying).await;
    assert_eq!(parked["status"], "running");
    assert_eq!(parked["steps"][0]["attempts"].as_array().unwrap().len(), 1);
    // Parked: nothing in memory, and the only slot runs another execution.
    assert_eq!(live_executions(&s).await, 0);
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=30",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": {"n": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    // Nothing retries before its time; then it does, once.
    clock.advance(Duration::from_secs(3599));
    // The engine sleeps until the retry's time; nothing has run again.
    let early = get(&s, &t, &id).await;
    let retry_at: jiff::Timestamp = early["steps"][0]["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        clock
            .sleeping_until(retry_at, Duration::from_secs(10))
            .await,
        "sleepers: {:?}",
        clock.sleepers()
    );
    let early = get(&s, &t, &id).await;
    assert_eq!(
        early["steps"][0]["attempts"].as_array().unwrap().len(),
        1,
        "{early}"
    );
    clock.advance(Duration::from_secs(1));
    let done = wait_for(&s, &t, &id, |e| e["status"] == "failed").await;
    let attempts = done["steps"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done}");
    assert_eq!(attempts[1]["started_at"], "2030-01-01T01:00:00Z");
    let running = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["status"] == "running")
        .count();
    assert_eq!(
        running, 1,
        "a resumed drive is not a new transition: {done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_parked_execution() {
    let clock = clock();
    let s = start_with(clock.clone(), one_slot(), None).await;
    let t = s.fixture("acme").await;
    flaky(&s, &t).await;
    let id = submit(&s, &t, "flaky", Value::Null).await;
    wait_for(&s, &t, &id, retrying).await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["steps"][0]["status"], "cancelled");
    // The retry never happens: nothing waits for any time any more.
    clock.advance(Duration::from_secs(7200));
    assert!(
        clock.no_sleepers(Duration::from_secs(10)).await,
        "sleepers: {:?}",
        clock.sleepers()
    );
    let later = get(&s, &t, &id).await;
    assert_eq!(later["status"], "cancelled");
    assert_eq!(later["steps"][0]["attempts"].as_array().unwrap().len(), 1);
    // Cancelling again answers with the same record; other tenants see
    // nothing.
    let again = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["history"], later["history"]);
    let other = s.fixture("other").await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_reaches_a_queued_execution_while_every_slot_is_busy() {
    let s = start_with(clock(), one_slot(), None).await;
    let t = s.fixture("acme").await;
    let busy = submit(&s, &t, "slow", Value::Null).await;
    wait_for(&s, &t, &busy, |e| e["status"] == "running").await;
    // The only slot is busy, so it stays queued; that it never started is
    // what the empty `started_at` and attempts below show.
    let queued = submit(&s, &t, "three", Value::Null).await;
    assert_eq!(get(&s, &t, &queued).await["status"], "queued");
    let started = std::time::Instant::now();
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{queued}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.body["status"], "cancelled");
    assert!(r.body["started_at"].is_null(), "{:?}", r.body);
    for step in r.body["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "cancelled");
        assert!(step["attempts"].as_array().unwrap().is_empty());
    }
    assert_eq!(get(&s, &t, &busy).await["status"], "running");
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{busy}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "cancelled", "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_until_step_waits_while_the_step_retries() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    flaky(&s, &t).await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=1&wait_until_step=call",
            Some(&t),
            Some(json!({"workflow_id": "flaky"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    assert!(retrying(&get(&s, &t, &id).await));
    // Once the step has settled (failed for good), the sync call would
    // answer: check the record the long poll returns.
    clock.advance(Duration::from_secs(3600));
    let r = s
        .call(
            Method::GET,
            &format!("/v1/executions/{id}?wait_for_seconds=30"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["status"], "failed", "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_claims_parked_work_as_it_comes_due() {
    const N: usize = 20;
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    flaky(&s, &t).await;
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(submit(&s, &t, "flaky", Value::Null).await);
    }
    for id in &ids {
        wait_for(&s, &t, id, retrying).await;
    }
    let s = start_with(clock.clone(), json!({}), Some(s)).await;
    // Nothing is loaded at start: parked work stays in the store.
    assert_eq!(live_executions(&s).await, 0);
    for id in &ids {
        assert!(retrying(&get(&s, &t, id).await));
    }
    clock.advance(Duration::from_secs(3600));
    for id in &ids {
        let e = wait_for(&s, &t, id, |e| e["status"] == "failed").await;
        assert_eq!(
            e["steps"][0]["attempts"].as_array().unwrap().len(),
            2,
            "{e}"
        );
    }
}

/// The admin sees this node registered, with its heartbeat and the
/// execution it holds while it drives one; a tenant token gets 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_lists_the_nodes_and_what_they_hold() {
    let s = crate::common::start_with(
        std::sync::Arc::new(stephost::engine::SystemClock),
        json!({"node-id": "only-node"}),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    let list = |token: &'static str| {
        let s = &s;
        async move {
            s.call(Method::GET, "/v1/admin/nodes", Some(token), None)
                .await
        }
    };
    let r = list(crate::common::ADMIN).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", r.body);
    let me = &items[0];
    assert_eq!(me["node_id"], "only-node");
    assert_eq!(me["this_node"], true);
    assert_eq!(me["claim_work"], true);
    assert_eq!(me["executions_held"], 0);
    let started: jiff::Timestamp = me["started_at"].as_str().unwrap().parse().unwrap();
    let beat: jiff::Timestamp = me["last_heartbeat_at"].as_str().unwrap().parse().unwrap();
    assert!(beat >= started, "{me}");

    let id = submit(&s, &t, "slow", json!({})).await;
    wait_for(&s, &t, &id, |e| e["status"] == "running").await;
    let r = list(crate::common::ADMIN).await;
    assert_eq!(r.body["items"][0]["executions_held"], 1, "{:?}", r.body);
    // The heartbeat moves on (every 2 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = list(crate::common::ADMIN).await;
        let later: jiff::Timestamp = r.body["items"][0]["last_heartbeat_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if later > beat {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat after {beat}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let r = s.call(Method::GET, "/v1/admin/nodes", Some(&t), None).await;
    crate::common::assert_problem(&r, StatusCode::UNAUTHORIZED, "admin token");
}

/// A stopping server lets a running attempt finish and commits it: after
/// a restart on the same data, the execution goes on from there and the
/// step that was running when the stop came ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_finishes_the_running_attempt_and_hands_the_rest_back() {
    let config = json!({"shutdown-grace": "20s"});
    let system = || std::sync::Arc::new(stephost::engine::SystemClock);
    let s = start_with(system(), config.clone(), None).await;
    let t = s.fixture("acme").await;
    crate::common::apply(
        &s,
        &t,
        "two",
        json!({"steps": [
            {"id": "first", "step": "hostile", "input": {"op": "nap", "n": 1500}},
            {"id": "second", "step": "echo", "needs": ["first"]}]}),
    )
    .await;
    let id = submit(&s, &t, "two", json!({})).await;
    wait_for(&s, &t, &id, |e| e["status"] == "running").await;
    let started = std::time::Instant::now();
    let mut s = s;
    s.shutdown().await;
    let stopping = started.elapsed();
    let stopped_at = jiff::Timestamp::now();
    // The stop waited for the 1.5 s attempt, not for the 20 s grace.
    assert!(
        stopping < Duration::from_secs(15),
        "stopping took {stopping:?}"
    );
    let s = start_with(system(), config, Some(s)).await;
    let done = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    // The first step finished before the stop ended, not in a rerun after.
    let finished: jiff::Timestamp =
        crate::common::step(&done, "first")["attempts"][0]["finished_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    assert!(
        finished < stopped_at,
        "finished {finished}, stopped {stopped_at}: {done}"
    );
    for step in ["first", "second"] {
        let attempts = crate::common::step(&done, step)["attempts"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(attempts, 1, "{step} ran {attempts} times: {done}");
    }
}

/// An attempt that outlasts the grace period is abandoned as a crash would
/// leave it: the stop does not wait for it, and the restarted server runs
/// the step again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_abandons_what_outlasts_the_grace() {
    let config = json!({"shutdown-grace": "500ms"});
    let system = || std::sync::Arc::new(stephost::engine::SystemClock);
    let s = start_with(system(), config.clone(), None).await;
    let t = s.fixture("acme").await;
    let id = submit(&s, &t, "slow", json!({})).await;
    wait_for(&s, &t, &id, |e| {
        crate::common::step(e, "first")["status"] == "succeeded"
    })
    .await;
    let started = std::time::Instant::now();
    let s = start_with(system(), config, Some(s)).await;
    let stopping = started.elapsed();
    assert!(
        stopping < Duration::from_secs(10),
        "stopping took {stopping:?}"
    );
    // The stop released the lease; the new life claims the execution again
    // and runs the step anew.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = s
            .call(
                Method::GET,
                "/v1/admin/nodes",
                Some(crate::common::ADMIN),
                None,
            )
            .await;
        if r.body["items"][0]["executions_held"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not claimed again: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = get(&s, &t, &id).await;
    assert_eq!(again["status"], "running", "{again}");
    assert_eq!(
        crate::common::step(&again, "first")["attempts"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{again}"
    );
}
