//! Pause and resume, end to end on a manual clock: pausing a running, a
//! waiting and a queued execution; resuming a paused one, a waiting one (its
//! time wait ends now) and a failed, a timed-out and a cancelled one (from
//! the steps that did not succeed, with a fresh retry budget and deadline);
//! a paused execution's deadline; and the transitions that are refused.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    Resp, Server, apply, assert_problem, get, history, live_executions, manual_clock as clock,
    start_with, step, submit, wait_for,
};

async fn post(s: &Server, t: &str, id: &str, action: &str) -> Resp {
    s.call(
        Method::POST,
        &format!("/v1/executions/{id}/{action}"),
        Some(t),
        None,
    )
    .await
}

fn attempts(e: &Value, id: &str) -> Vec<u64> {
    step(e, id)["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["number"].as_u64().unwrap())
        .collect()
}

/// How many of the tenant's executions are listed as `paused`.
async fn paused(s: &Server, t: &str) -> usize {
    let r = s
        .call(Method::GET, "/v1/executions?status=paused", Some(t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"].as_array().unwrap().len()
}

/// Waits until the server drives no execution: the execution parked.
async fn until_parked(s: &Server) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while live_executions(s).await != 0 {
        assert!(std::time::Instant::now() < deadline, "never parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_lets_the_running_attempt_finish_and_starts_nothing_until_resumed() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "two",
        json!({"steps": [
            {"id": "nap", "step": "hostile", "input": {"op": "nap", "n": 700}},
            {"id": "after", "step": "echo"}]}),
    )
    .await;
    let id = submit(&s, &t, "two", json!({})).await;
    // Once `running` is stored, the driver has started the attempt.
    wait_for(&s, &t, &id, |e| e["status"] == "running").await;
    let r = post(&s, &t, &id, "pause").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "paused");
    assert_eq!(
        step(&r.body, "nap")["status"],
        "running",
        "the attempt goes on"
    );
    let e = wait_for(&s, &t, &id, |e| step(e, "nap")["status"] == "succeeded").await;
    until_parked(&s).await;
    let e2 = get(&s, &t, &id).await;
    assert_eq!(e2["status"], "paused", "{e}");
    assert_eq!(
        step(&e2, "after")["status"],
        "pending",
        "nothing new starts"
    );
    assert_problem(
        &post(&s, &t, &id, "pause").await,
        StatusCode::CONFLICT,
        "already paused",
    );

    let r = post(&s, &t, &id, "resume").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(
        attempts(&e, "nap"),
        [1],
        "the finished attempt is not run again"
    );
    assert_eq!(attempts(&e, "after"), [1]);
    assert_eq!(
        history(&e),
        [
            "queued",
            "running",
            "paused",
            "running(resume)",
            "succeeded"
        ]
    );
    assert_problem(
        &post(&s, &t, &id, "resume").await,
        StatusCode::CONFLICT,
        "already finished with status succeeded",
    );
    assert_problem(
        &post(&s, &t, &id, "pause").await,
        StatusCode::CONFLICT,
        "already finished with status succeeded",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_waiting_execution_ends_its_time_wait_but_not_a_signal_wait() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "gated",
        json!({"timeout": "30d", "steps": [
            {"id": "cool_off", "wait": {"for": "7d"}},
            {"id": "approval", "wait": {"signal": "approve"}},
            {"id": "after", "step": "echo", "input": "{{ steps.cool_off.output }}"}]}),
    )
    .await;
    let id = submit(&s, &t, "gated", json!({})).await;
    wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    until_parked(&s).await;

    // A pause of a waiting execution takes effect without a worker.
    let r = post(&s, &t, &id, "pause").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "paused");
    clock.advance(Duration::from_secs(3600));
    // Resuming a paused execution continues it: the wait goes on.
    let r = post(&s, &t, &id, "resume").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    assert_eq!(step(&e, "cool_off")["status"], "waiting");
    // Resuming a waiting execution ends its time wait now.
    let r = post(&s, &t, &id, "resume").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| {
        step(e, "approval")["status"] == "waiting" && e["status"] == "waiting"
    })
    .await;
    assert_eq!(step(&e, "cool_off")["status"], "succeeded");
    assert_eq!(
        step(&e, "cool_off")["output"],
        json!({"waited_ms": 3_600_000})
    );
    // Now it waits only for a signal, which a resume does not end.
    assert_problem(
        &post(&s, &t, &id, "resume").await,
        StatusCode::CONFLICT,
        "waits only for signals (`approve`)",
    );
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/signals/approve"),
            Some(&t),
            Some(json!({"ok": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(e["output"], json!({"waited_ms": 3_600_000}));
    assert_eq!(
        history(&e),
        [
            "queued",
            "running",
            "waiting",
            "paused",
            "running(resume)",
            "waiting",
            "running(resume)",
            "waiting",
            "running",
            "succeeded"
        ]
    );

    // Another tenant's execution and an unknown one are not found.
    let other = s.fixture("other").await;
    for (token, id) in [
        (&other, id.as_str()),
        (&t, "0190b4d2-0000-7000-8000-000000000000"),
    ] {
        for action in ["pause", "resume"] {
            assert_problem(
                &post(&s, token, id, action).await,
                StatusCode::NOT_FOUND,
                "not found",
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_failed_execution_reruns_only_what_did_not_succeed() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "flaky",
        json!({"steps": [
            {"id": "first", "step": "echo"},
            {"id": "boom", "step": "hostile", "input": {"op": "error", "text": "down"},
             "retry": {"max_attempts": 2, "initial_delay": "1s"}},
            {"id": "after", "step": "echo"}]}),
    )
    .await;
    let id = submit(&s, &t, "flaky", json!({})).await;
    wait_for(&s, &t, &id, |e| step(e, "boom")["status"] == "retrying").await;
    clock.advance(Duration::from_secs(1));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "failed").await;
    assert_eq!(attempts(&e, "boom"), [1, 2]);
    assert_eq!(step(&e, "after")["status"], "cancelled");
    let first_finished = e["finished_at"].clone();

    let r = post(&s, &t, &id, "resume").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["error"], Value::Null, "{:?}", r.body);
    // The resumed step has a fresh budget of two attempts.
    wait_for(&s, &t, &id, |e| {
        step(e, "boom")["status"] == "retrying" && attempts(e, "boom") == [1, 2, 3]
    })
    .await;
    clock.advance(Duration::from_secs(1));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "failed").await;
    assert_eq!(attempts(&e, "boom"), [1, 2, 3, 4]);
    assert_eq!(
        attempts(&e, "first"),
        [1],
        "a succeeded step is not run again"
    );
    assert_eq!(e["error"]["code"], "upstream_down");
    assert_ne!(e["finished_at"], first_finished);
    assert_eq!(
        history(&e),
        ["queued", "running", "failed", "running(resume)", "failed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_a_timed_out_and_a_cancelled_execution_restarts_their_steps() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "slowpoke",
        json!({"timeout": "1h", "steps": [
            {"id": "first", "step": "echo"},
            {"id": "nap", "wait": {"for": "2h"}},
            {"id": "gate", "wait": {"signal": "go", "timeout": "10m"}},
            {"id": "after", "step": "echo", "input": "{{ steps.gate.output }}"}]}),
    )
    .await;
    let id = submit(&s, &t, "slowpoke", json!({})).await;
    wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    clock.advance(Duration::from_secs(3600));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "timed_out").await;
    assert_eq!(step(&e, "nap")["status"], "cancelled");
    let deadline = e["deadline_at"].clone();

    // The restart has a fresh deadline; the wait starts again.
    let r = post(&s, &t, &id, "resume").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    assert_eq!(e["deadline_at"], "2030-01-01T02:00:00Z", "was {deadline}");
    assert_eq!(step(&e, "nap")["waiting"]["until"], "2030-01-01T03:00:00Z");
    // End the wait now; then the signal wait times out and fails the
    // execution.
    assert_eq!(post(&s, &t, &id, "resume").await.status, StatusCode::OK);
    wait_for(&s, &t, &id, |e| step(e, "gate")["status"] == "waiting").await;
    clock.advance(Duration::from_secs(600));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "failed").await;
    assert_eq!(e["error"]["code"], "signal_timeout");

    // Cancel it while it waits again after a resume, then resume the
    // cancelled execution and let the signal through.
    assert_eq!(post(&s, &t, &id, "resume").await.status, StatusCode::OK);
    wait_for(&s, &t, &id, |e| step(e, "gate")["status"] == "waiting").await;
    let r = post(&s, &t, &id, "cancel").await;
    assert_eq!(r.body["status"], "cancelled", "{:?}", r.body);
    assert_eq!(post(&s, &t, &id, "resume").await.status, StatusCode::OK);
    wait_for(&s, &t, &id, |e| step(e, "gate")["status"] == "waiting").await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/signals/go"),
            Some(&t),
            Some(json!({"n": 7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(e["output"], json!({"n": 7}));
    assert_eq!(
        attempts(&e, "first"),
        [1],
        "a succeeded step is not run again"
    );
    assert_eq!(
        history(&e),
        [
            "queued",
            "running",
            "waiting",
            "timed_out",
            "running(resume)",
            "waiting",
            "running(resume)",
            "waiting",
            "failed",
            "running(resume)",
            "waiting",
            "cancelled",
            "running(resume)",
            "waiting",
            "running",
            "succeeded"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_execution_keeps_its_deadline_and_can_be_cancelled() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "nap",
        json!({"timeout": "1h", "steps": [{"id": "nap", "wait": {"for": "10m"}}]}),
    )
    .await;
    let late = submit(&s, &t, "nap", json!({})).await;
    let dropped = submit(&s, &t, "nap", json!({})).await;
    for id in [&late, &dropped] {
        wait_for(&s, &t, id, |e| e["status"] == "waiting").await;
        assert_eq!(post(&s, &t, id, "pause").await.body["status"], "paused");
    }
    assert_eq!(paused(&s, &t).await, 2);
    let r = post(&s, &t, &dropped, "cancel").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    // The wait's time passes while paused; the deadline still applies.
    clock.advance(Duration::from_secs(3600));
    let e = wait_for(&s, &t, &late, |e| e["status"] == "timed_out").await;
    assert_eq!(step(&e, "nap")["status"], "cancelled");
    assert_eq!(
        history(&e),
        ["queued", "running", "waiting", "paused", "timed_out"]
    );
    assert_eq!(paused(&s, &t).await, 0);
}
