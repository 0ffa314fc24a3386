//! Postponed runs, end to end on a manual clock: `delay` and
//! `scheduled_for` on `POST /v1/executions/async` store the execution as
//! `scheduled` and start it at that time; signals wait for it; a resume
//! starts it now; a cancel ends it; and bad requests get precise problems.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    Resp, Server, apply, assert_problem, get, history, manual_clock as clock, start_with, step,
    wait_for,
};

async fn start_later(s: &Server, t: &str, body: Value) -> Resp {
    s.call(Method::POST, "/v1/executions/async", Some(t), Some(body))
        .await
}

async fn post(s: &Server, t: &str, path: &str, body: Option<Value>) -> Resp {
    s.call(Method::POST, path, Some(t), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_run_starts_at_its_time_and_takes_the_signals_sent_meanwhile() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "gated",
        json!({"steps": [
            {"id": "gate", "wait": {"signal": "go"}},
            {"id": "after", "step": "echo"}]}),
    )
    .await;
    let r = start_later(
        &s,
        &t,
        json!({"workflow_id": "gated", "delay": "1h", "input_data": {"x": 1}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["status"], "scheduled");
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    let e = get(&s, &t, &id).await;
    assert_eq!(e["status"], "scheduled");
    assert_eq!(e["scheduled_for"], "2030-01-01T01:00:00Z");
    assert_eq!(e["started_at"], Value::Null);
    // A signal is stored and waits for the run.
    let r = post(
        &s,
        &t,
        &format!("/v1/executions/{id}/signals/go"),
        Some(json!({"ok": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let e = get(&s, &t, &id).await;
    assert_eq!(e["status"], "scheduled", "{e}");
    // Not startable by a pause; listed as scheduled.
    assert_problem(
        &post(&s, &t, &format!("/v1/executions/{id}/pause"), None).await,
        StatusCode::CONFLICT,
        "has not started",
    );
    let listed = s
        .call(
            Method::GET,
            "/v1/executions?status=scheduled",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(listed.body["items"][0]["execution_id"], id.as_str());

    clock.advance(Duration::from_secs(3600));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    // On a manual clock, a start before its time would show 00:00.
    assert_eq!(e["started_at"], "2030-01-01T01:00:00Z", "{e}");
    assert_eq!(step(&e, "gate")["output"], json!({"ok": true}));
    assert_eq!(e["output"], json!({"ok": true}));
    assert_eq!(history(&e), ["scheduled", "running", "succeeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_can_be_started_now_or_cancelled() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    let later = json!({"workflow_id": "three", "scheduled_for": "2030-06-01T09:00:00+02:00"});
    let now = start_later(&s, &t, later.clone()).await;
    let never = start_later(&s, &t, later).await;
    for r in [&now, &never] {
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        assert_eq!(r.body["status"], "scheduled");
    }
    let now = now.body["execution_id"].as_str().unwrap().to_owned();
    let never = never.body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&s, &t, &now).await["scheduled_for"],
        "2030-06-01T07:00:00Z"
    );

    let r = post(&s, &t, &format!("/v1/executions/{now}/resume"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = wait_for(&s, &t, &now, |e| e["status"] == "succeeded").await;
    assert_eq!(e["started_at"], "2030-01-01T00:00:00Z");
    assert_eq!(history(&e), ["scheduled", "running(resume)", "succeeded"]);

    let r = post(&s, &t, &format!("/v1/executions/{never}/cancel"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(history(&r.body), ["scheduled", "cancelled"]);
    assert_eq!(r.body["started_at"], Value::Null);

    // A time already past starts the run at once.
    let r = start_later(
        &s,
        &t,
        json!({"workflow_id": "three", "scheduled_for": "2029-12-31T23:00:00Z"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["status"], "queued");
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(e["scheduled_for"], "2029-12-31T23:00:00Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_postponements_get_precise_problems() {
    let s = start_with(clock(), json!({}), None).await;
    let t = s.fixture("acme").await;
    for (body, path, needle) in [
        (
            json!({"workflow_id": "three", "delay": "1h", "scheduled_for": "2030-01-01T00:00:00Z"}),
            "$.delay",
            "not both",
        ),
        (
            json!({"workflow_id": "three", "scheduled_for": "tomorrow"}),
            "$.scheduled_for",
            "not an RFC 3339 time",
        ),
        (
            json!({"workflow_id": "three", "delay": "soon"}),
            "$.delay",
            "not a duration",
        ),
        (
            json!({"workflow_id": "three", "delay": "1mo"}),
            "$.delay",
            "not a duration",
        ),
    ] {
        let r = start_later(&s, &t, body.clone()).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
        assert_eq!(r.body["errors"][0]["path"], path, "{body}: {:?}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "delay": "1h"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
    assert_eq!(r.body["errors"][0]["path"], "$.delay");
    let message = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("POST /v1/executions/async"), "{message}");
    let r = start_later(&s, &t, json!({"workflow_id": "three", "delay": 60})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
}
