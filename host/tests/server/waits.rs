//! Wait steps and signals, end to end on a manual clock: a wait for time
//! holds no worker and ends when the clock passes it, a wait until a
//! templated time, signals sent before the step waits, idempotency keys,
//! payload schemas, signal timeouts, and the API's refusals.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{
    Resp, Server, apply, assert_problem, get, history, manual_clock as clock, start_with, step,
    submit, wait_for,
};

async fn signal(s: &Server, t: &str, id: &str, name: &str, key: Option<&str>, body: &str) -> Resp {
    let mut req = s
        .client
        .post(format!("{}/v1/executions/{id}/signals/{name}", s.url))
        .bearer_auth(t)
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    crate::common::resp(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_of_an_hour_holds_no_worker_and_ends_with_the_clock() {
    let clock = clock();
    let s = start_with(
        clock.clone(),
        json!({"workers": 1, "max-in-flight": 1}),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "nap",
        json!({"timeout": "2h", "steps": [
            {"id": "first", "step": "echo"},
            {"id": "pause", "wait": {"for": "1h"}},
            {"id": "after", "step": "echo", "input": "{{ steps.pause.output }}"}]}),
    )
    .await;
    let id = submit(&s, &t, "nap", json!({"x": 1})).await;
    let e = wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    assert_eq!(step(&e, "first")["status"], "succeeded");
    assert_eq!(step(&e, "pause")["status"], "waiting");
    assert_eq!(step(&e, "pause")["step"], "wait");
    assert_eq!(
        step(&e, "pause")["waiting"]["until"],
        "2030-01-01T01:00:00Z"
    );
    let ready = s.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(
        ready.body["live_executions"], 0,
        "a waiting execution is a row"
    );
    // The only worker and slot are free: another execution runs meanwhile.
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=30",
            Some(&t),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
    assert_eq!(r.body["status"], "succeeded", "{:?}", r.body);
    clock.advance(Duration::from_secs(3599));
    // The engine sleeps until the wait's end, and the execution waits.
    let end: jiff::Timestamp = "2030-01-01T01:00:00Z".parse().unwrap();
    assert!(
        clock.sleeping_until(end, Duration::from_secs(10)).await,
        "sleepers: {:?}",
        clock.sleepers()
    );
    assert_eq!(get(&s, &t, &id).await["status"], "waiting");
    clock.advance(Duration::from_secs(1));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(step(&e, "pause")["output"], json!({"waited_ms": 3_600_000}));
    assert_eq!(e["output"], json!({"waited_ms": 3_600_000}));
    assert_eq!(
        history(&e),
        ["queued", "running", "waiting", "running", "succeeded"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_until_a_templated_time() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "later",
        json!({"steps": [{"id": "until", "wait": {"until": "{{ input.send_at }}"}}]}),
    )
    .await;
    let soon = submit(&s, &t, "later", json!({"send_at": "2030-01-01T00:10:00Z"})).await;
    let past = submit(&s, &t, "later", json!({"send_at": "2029-12-31T00:00:00Z"})).await;
    let bad = submit(&s, &t, "later", json!({"send_at": "tomorrow"})).await;
    let e = wait_for(&s, &t, &past, |e| e["status"] == "succeeded").await;
    assert_eq!(step(&e, "until")["output"], json!({"waited_ms": 0}));
    let e = wait_for(&s, &t, &bad, |e| e["status"] == "failed").await;
    assert_eq!(e["error"]["code"], "invalid_wait", "{e}");
    wait_for(&s, &t, &soon, |e| e["status"] == "waiting").await;
    clock.advance(Duration::from_secs(600));
    let e = wait_for(&s, &t, &soon, |e| e["status"] == "succeeded").await;
    assert_eq!(step(&e, "until")["output"], json!({"waited_ms": 600_000}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_wait_for_their_step_count_once_per_key_and_time_out() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "approve",
        json!({"timeout": "5h", "steps": [
            {"id": "cool_off", "wait": {"for": "1h"}},
            {"id": "first", "wait": {"signal": "approval"}},
            {"id": "second", "wait": {"signal": "approval", "timeout": "1h"},
             "continue_on_error": true},
            {"id": "report", "step": "echo", "needs": ["first", "second"],
             "if": "steps.first.status == 'succeeded'",
             "input": {"first": "{{ steps.first.output }}",
                       "second": "{{ steps.second.error.code }}"}}]}),
    )
    .await;
    let id = submit(&s, &t, "approve", json!({})).await;
    wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    // Sent before any step waits for it, twice with one key.
    let r = signal(
        &s,
        &t,
        &id,
        "approval",
        Some("k-1"),
        r#"{"by": "ana", "n": 12.50}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["duplicate"], false);
    let again = signal(
        &s,
        &t,
        &id,
        "approval",
        Some("k-1"),
        r#"{"by": "ana", "n": 12.50}"#,
    )
    .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["duplicate"], true);
    assert_eq!(again.body["sequence"], r.body["sequence"]);
    let e = wait_for(&s, &t, &id, |e| {
        e["pending_signals"]
            .as_array()
            .is_some_and(|p| p.len() == 1)
    })
    .await;
    assert_eq!(e["status"], "waiting");
    clock.advance(Duration::from_secs(3600));
    // `first` takes the stored signal; `second` gets none (the duplicate
    // counted once) and times out an hour later.
    let e = wait_for(&s, &t, &id, |e| step(e, "first")["status"] == "succeeded").await;
    assert_eq!(step(&e, "first")["output"]["by"], "ana");
    assert!(e.get("pending_signals").is_none(), "{e}");
    wait_for(&s, &t, &id, |e| step(e, "second")["status"] == "waiting").await;
    clock.advance(Duration::from_secs(3600));
    let e = wait_for(&s, &t, &id, |e| e["status"] == "partially_succeeded").await;
    assert_eq!(step(&e, "second")["status"], "failed");
    assert_eq!(step(&e, "second")["error"]["code"], "signal_timeout");
    // The payload is the step's output exactly as sent, digits included.
    assert_eq!(
        step(&e, "first")["output"].to_string(),
        r#"{"by":"ana","n":12.50}"#
    );
    assert_eq!(step(&e, "report")["output"]["first"]["by"], "ana");
    assert_eq!(step(&e, "report")["output"]["second"], "signal_timeout");
    // A finished execution takes no signal, but a retried delivery is
    // still answered as the duplicate it is.
    let late = signal(&s, &t, &id, "approval", None, "{}").await;
    assert_problem(&late, StatusCode::CONFLICT, "already finished");
    let late = signal(&s, &t, &id, "approval", Some("k-new"), "{}").await;
    assert_problem(&late, StatusCode::CONFLICT, "already finished");
    let retried = signal(&s, &t, &id, "approval", Some("k-1"), "{}").await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    assert_eq!(retried.body["duplicate"], true);
    assert_eq!(retried.body["sequence"], r.body["sequence"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_does_not_fit_the_schema_is_refused_and_not_consumed() {
    let s = start_with(clock(), json!({"max-signal-bytes": 1024}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "gate",
        json!({"steps": [{"id": "gate", "wait": {"signal": "decision", "schema": {
            "type": "object", "required": ["approved"],
            "properties": {"approved": {"type": "boolean"}}}}}]}),
    )
    .await;
    let id = submit(&s, &t, "gate", json!({})).await;
    wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    let r = signal(&s, &t, &id, "decision", None, r#"{"approved": "yes"}"#).await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "does not match the `schema` of step `gate`",
    );
    assert_eq!(r.body["errors"][0]["path"], "$.approved", "{:?}", r.body);
    // Refused before it was stored: the record shows nothing of it (and the
    // valid signal below is the one the step takes).
    let e = get(&s, &t, &id).await;
    assert_eq!(e["status"], "waiting");
    assert!(e.get("pending_signals").is_none(), "{e}");
    // The API's other refusals.
    let big = format!(r#"{{"approved": true, "pad": "{}"}}"#, "x".repeat(2000));
    let r = signal(&s, &t, &id, "decision", None, &big).await;
    assert_problem(
        &r,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over the limit of 1024 bytes",
    );
    let r = signal(&s, &t, &id, "decision", None, "{nope").await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "malformed JSON");
    let r = signal(&s, &t, &id, "no%20spaces", None, "{}").await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "not a valid signal name");
    let r = signal(
        &s,
        &t,
        "0190f0c2-0000-7000-8000-000000000000",
        "decision",
        None,
        "{}",
    )
    .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not found");
    let other = s.fixture("other").await;
    let r = signal(&s, &other, &id, "decision", None, r#"{"approved": true}"#).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not found");
    // A fitting payload is taken, and is the step's output.
    let r = signal(&s, &t, &id, "decision", None, r#"{"approved": true}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(e["output"], json!({"approved": true}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_call_at_a_wait_hands_off_and_a_signal_finishes_it() {
    let s = start_with(clock(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "human",
        json!({"steps": [{"id": "ok", "wait": {"signal": "ok"}}, {"id": "done", "step": "echo"}]}),
    )
    .await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=1",
            Some(&t),
            Some(json!({"workflow_id": "human"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["status"], "waiting");
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    let poll = {
        let (client, url, t, id) = (s.client.clone(), s.url.clone(), t.clone(), id.clone());
        tokio::spawn(async move {
            let r = client
                .get(format!("{url}/v1/executions/{id}?wait_for_seconds=30"))
                .bearer_auth(t)
                .send()
                .await
                .unwrap();
            crate::common::resp(r).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = signal(&s, &t, &id, "ok", None, r#"[1, 2]"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let done = poll.await.unwrap();
    assert_eq!(done.body["status"], "succeeded", "{:?}", done.body);
    assert_eq!(done.body["output"], json!([1, 2]));
}
