//! Retention (`execution-retention`): a finished execution is deleted once
//! it has been finished for longer than the retention, with the
//! idempotency key that points at it; an unfinished one never is. The
//! engine's clock is a manual one, so "longer than" is a step of the clock,
//! not a wait.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{
    Server, apply, assert_problem, get, manual_clock, start_with, submit, wait_for,
};

/// Polls until reading `id` answers 404 (at most 30 s of real time: the
/// sweep runs every 250 ms with a retention of 1 s).
async fn until_gone(s: &Server, t: &str, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = s
            .call(Method::GET, &format!("/v1/executions/{id}"), Some(t), None)
            .await;
        if r.status == StatusCode::NOT_FOUND {
            assert_problem(&r, StatusCode::NOT_FOUND, id);
            return;
        }
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(
            std::time::Instant::now() < deadline,
            "{id} was not deleted: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_executions_go_after_the_retention_and_unfinished_ones_stay() {
    let clock = manual_clock();
    let s = start_with(clock.clone(), json!({"execution-retention": "1s"}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "approval",
        json!({"steps": [{"id": "approve", "wait": {"signal": "approval"}},
                         {"id": "after", "step": "echo"}]}),
    )
    .await;

    // One finished with an idempotency key, one waiting for a signal.
    let body = json!({"workflow_id": "three", "input_data": {"n": 1}});
    let r = s
        .post_keyed(&t, "/v1/executions", "order-1", None, &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "succeeded");
    let done = r.body["execution_id"].as_str().unwrap().to_owned();
    let waiting = submit(&s, &t, "approval", json!({})).await;
    wait_for(&s, &t, &waiting, |e| e["status"] == "waiting").await;

    // Finished for longer than the retention: it goes, the waiting one
    // (older than the cutoff too) stays.
    clock.advance(Duration::from_secs(2));
    until_gone(&s, &t, &done).await;
    assert_eq!(get(&s, &t, &waiting).await["status"], "waiting");
    let listed = s.call(Method::GET, "/v1/executions", Some(&t), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [waiting.as_str()]);

    // Its idempotency key went with it: the same request runs again.
    let r = s
        .post_keyed(&t, "/v1/executions", "order-1", None, &body)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let again = r.body["execution_id"].as_str().unwrap().to_owned();
    assert_ne!(again, done);

    // Once the waiting one finishes, it is deleted in its turn.
    let r = s
        .client
        .post(format!(
            "{}/v1/executions/{waiting}/signals/approval",
            s.url
        ))
        .bearer_auth(&t)
        .json(&json!({"ok": true}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    wait_for(&s, &t, &waiting, |e| e["status"] == "succeeded").await;
    clock.advance(Duration::from_secs(2));
    until_gone(&s, &t, &waiting).await;
    until_gone(&s, &t, &again).await;
}
