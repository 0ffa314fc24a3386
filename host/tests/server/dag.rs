//! Workflow definitions at run time, end to end: parallel DAGs, templates,
//! conditions, retries with backoff (on a manual clock), the workflow
//! deadline, `continue_on_error`, per-step limits, input schemas and
//! secrets.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stephost::engine::ManualClock;

use crate::common::{Server, apply, assert_problem, get, start, start_with_clock, step, wait_for};

/// Runs `workflow` synchronously (waiting up to 60 s) and returns the record.
async fn run(s: &Server, t: &str, workflow: &str, input: Value) -> Value {
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=60",
            Some(t),
            Some(json!({"workflow_id": workflow, "input_data": input})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

fn ts(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diamond_runs_its_branches_in_parallel_and_joins_them() {
    let s = start().await; // two workers
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "diamond",
        json!({
            "steps": [
                {"id": "start", "step": "echo"},
                {"id": "left", "step": "hostile", "needs": ["start"], "input": {"op": "nap", "n": 400}},
                {"id": "right", "step": "hostile", "needs": ["start"], "input": {"op": "nap", "n": 400}},
                {"id": "join", "step": "echo", "needs": ["left", "right"],
                 "input": {"l": "{{ steps.left.output.slept_ms }}", "r": "{{ steps.right.output }}",
                           "who": "{{ input.who }}", "items": "{{ steps.start.output.items }}"}}
            ],
            "output": {"joined": "{{ steps.join.output }}", "run": "{{ execution.id }}", "v": "{{ workflow.version }}"}
        }),
    )
    .await;
    let e = run(&s, &t, "diamond", json!({"who": "ünï", "items": [1, 2, 3]})).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    let (left, right) = (
        &step(&e, "left")["attempts"][0],
        &step(&e, "right")["attempts"][0],
    );
    // The two branches overlap in time: each started before the other ended.
    assert!(ts(&left["started_at"]) < ts(&right["finished_at"]), "{e}");
    assert!(ts(&right["started_at"]) < ts(&left["finished_at"]), "{e}");
    assert_eq!(step(&e, "join")["needs"], json!(["left", "right"]));
    // Templates keep JSON types: numbers, objects and arrays stay themselves.
    let joined = json!({"l": 400, "r": {"slept_ms": 400}, "who": "ünï", "items": [1, 2, 3]});
    assert_eq!(e["output"]["joined"], joined);
    assert_eq!(e["output"]["run"], e["execution_id"]);
    assert_eq!(e["output"]["v"], 1);
    // Each attempt records the input it received.
    assert_eq!(step(&e, "join")["attempts"][0]["input"], joined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_skip_steps_and_their_dependents() {
    let s = start().await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "branchy",
        json!({"steps": [
            {"id": "gate", "step": "echo", "if": "input.go"},
            {"id": "after", "step": "echo", "needs": ["gate"]},
            {"id": "fallback", "step": "echo", "needs": ["gate"],
             "if": "steps.gate.status == 'skipped'", "input": {"fell_back": true}}
        ], "output": "{{ steps.fallback.output }}"}),
    )
    .await;
    let e = run(&s, &t, "branchy", json!({"go": false})).await;
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(step(&e, "gate")["status"], "skipped");
    assert!(
        step(&e, "gate")["skipped_reason"]
            .as_str()
            .unwrap()
            .contains("input.go"),
        "{e}"
    );
    assert_eq!(step(&e, "after")["status"], "skipped");
    assert_eq!(
        step(&e, "after")["skipped_reason"],
        "it needs `gate`, which was skipped"
    );
    assert!(step(&e, "after")["attempts"].as_array().unwrap().is_empty());
    assert_eq!(step(&e, "fallback")["status"], "succeeded");
    assert_eq!(e["output"], json!({"fell_back": true}));

    let e = run(&s, &t, "branchy", json!({"go": true})).await;
    assert_eq!(step(&e, "gate")["status"], "succeeded");
    assert_eq!(step(&e, "after")["status"], "succeeded");
    assert_eq!(step(&e, "fallback")["status"], "skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_wait_the_backoff_delays_on_the_engine_clock() {
    let start_at: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let clock = Arc::new(ManualClock::new(start_at));
    let s = start_with_clock(clock.clone()).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "flaky",
        json!({"steps": [{"id": "call", "step": "hostile",
            "input": {"op": "error", "text": "upstream down"},
            "retry": {"max_attempts": 3, "backoff": "exponential", "initial_delay": "10s",
                      "max_delay": "1m", "jitter": 0}}]}),
    )
    .await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions/async",
            Some(&t),
            Some(json!({"workflow_id": "flaky"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.body["execution_id"].as_str().unwrap().to_owned();

    let mut expected_delays = vec![10, 20];
    let mut attempts_seen = 1;
    while !expected_delays.is_empty() {
        let e = wait_for(&s, &t, &id, |e| {
            step(e, "call")["status"] == "retrying"
                && step(e, "call")["attempts"].as_array().unwrap().len() == attempts_seen
        })
        .await;
        let call = step(&e, "call");
        let last = &call["attempts"][attempts_seen - 1];
        assert_eq!(last["error"]["code"], "upstream_down");
        let delay = ts(&call["next_attempt_at"]).duration_since(ts(&last["finished_at"]));
        let want = expected_delays.remove(0);
        assert_eq!(delay, jiff::SignedDuration::from_secs(want), "{e}");
        // Nothing happens until the clock reaches the retry time.
        clock.advance(Duration::from_secs(want as u64 - 1));
        assert!(
            clock
                .sleeping_until(ts(&call["next_attempt_at"]), Duration::from_secs(10))
                .await,
            "sleepers: {:?}",
            clock.sleepers()
        );
        let still = get(&s, &t, &id).await;
        assert_eq!(
            step(&still, "call")["attempts"].as_array().unwrap().len(),
            attempts_seen,
            "retried before its time: {still}"
        );
        clock.advance(Duration::from_secs(1));
        attempts_seen += 1;
    }
    let e = wait_for(&s, &t, &id, |e| e["status"] == "failed").await;
    let attempts = step(&e, "call")["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{e}");
    let starts: Vec<i64> = attempts
        .iter()
        .map(|a| ts(&a["started_at"]).duration_since(start_at).as_secs())
        .collect();
    assert_eq!(starts, [0, 10, 30]);
    assert_eq!(e["error"]["code"], "upstream_down");
    assert!(step(&e, "call").get("next_attempt_at").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retryable_errors_and_unlisted_outcomes_are_not_retried() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let retry = json!({"max_attempts": 5, "initial_delay": "10ms"});
    apply(
        &s,
        &t,
        "fatal",
        json!({"steps": [{"id": "x", "step": "hostile", "input": {"op": "fatal", "text": "no"}, "retry": retry}]}),
    )
    .await;
    let e = run(&s, &t, "fatal", json!(null)).await;
    assert_eq!(e["status"], "failed");
    assert_eq!(step(&e, "x")["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(e["error"]["code"], "bad_input");

    // Fuel exhaustion is retried only when the policy lists it; the step's
    // own fuel limit lowers the server default.
    apply(
        &s,
        &t,
        "spin",
        json!({"retry": retry, "steps": [
            {"id": "once", "step": "hostile", "input": {"op": "loop"}, "limits": {"fuel": 1000000},
             "continue_on_error": true},
            {"id": "thrice", "step": "hostile", "input": {"op": "loop"}, "needs": [],
             "limits": {"fuel": 1000000, "timeout": "5s", "memory": "32MiB"},
             "retry": {"max_attempts": 3, "initial_delay": "10ms", "retry_on": ["fuel_exhausted"]}}]}),
    )
    .await;
    let e = run(&s, &t, "spin", json!(null)).await;
    let once = step(&e, "once")["attempts"].as_array().unwrap().clone();
    let thrice = step(&e, "thrice")["attempts"].as_array().unwrap().clone();
    assert_eq!(once.len(), 1, "{e}");
    assert_eq!(thrice.len(), 3, "{e}");
    assert!(
        once.iter()
            .chain(&thrice)
            .all(|a| a["outcome"] == "fuel_exhausted" && a["fuel_consumed"] == 1000000),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_deadline_cuts_a_long_step_short() {
    let s = start().await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "late",
        json!({"timeout": "1s", "steps": [
            {"id": "quick", "step": "echo"},
            {"id": "long", "step": "hostile", "input": {"op": "nap", "n": 60000}},
            {"id": "never", "step": "echo"}]}),
    )
    .await;
    let started = std::time::Instant::now();
    let e = run(&s, &t, "late", json!({"a": 1})).await;
    assert!(started.elapsed() < Duration::from_secs(10), "{e}");
    assert_eq!(e["status"], "timed_out", "{e}");
    assert_eq!(step(&e, "quick")["status"], "succeeded");
    let long = step(&e, "long");
    assert_eq!(long["attempts"][0]["outcome"], "timed_out", "{e}");
    assert!(long["attempts"][0]["duration_ms"].as_f64().unwrap() < 5000.0);
    assert_eq!(step(&e, "never")["status"], "cancelled");
    assert!(e["deadline_at"].is_string());
    assert!(
        e["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["status"] == "timed_out")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_on_error_ends_partially_succeeded() {
    let s = start().await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "tolerant",
        json!({"steps": [
            {"id": "optional", "step": "hostile", "input": {"op": "fatal", "text": "meh"},
             "continue_on_error": true},
            {"id": "main", "step": "echo", "needs": [], "input": {"ok": true}},
            {"id": "uses_optional", "step": "echo", "needs": ["optional"]},
            {"id": "reports", "step": "echo", "needs": ["optional", "main"],
             "if": "steps.optional.status == 'failed'",
             "input": {"code": "{{ steps.optional.error.code }}"}}],
         "output": "{{ steps.reports.output }}"}),
    )
    .await;
    let e = run(&s, &t, "tolerant", json!(null)).await;
    assert_eq!(e["status"], "partially_succeeded", "{e}");
    assert_eq!(step(&e, "optional")["status"], "failed");
    assert_eq!(step(&e, "optional")["error"]["code"], "bad_input");
    assert_eq!(step(&e, "uses_optional")["status"], "skipped");
    assert_eq!(e["output"], json!({"code": "bad_input"}));
    assert!(e["error"].is_null(), "{e}");

    // Without it, the failure fails the workflow and stops its siblings.
    apply(
        &s,
        &t,
        "strict",
        json!({"steps": [
            {"id": "boom", "step": "hostile", "input": {"op": "fatal", "text": "no"}},
            {"id": "slow", "step": "hostile", "needs": [], "input": {"op": "nap", "n": 60000}}]}),
    )
    .await;
    let started = std::time::Instant::now();
    let e = run(&s, &t, "strict", json!(null)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(e["status"], "failed");
    assert_eq!(e["error"]["step_name"], "boom");
    assert_eq!(step(&e, "slow")["status"], "cancelled", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_template_names_itself_and_its_path() {
    let s = start().await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "typo",
        json!({"steps": [{"id": "a", "step": "echo", "input": {"to": "{{ input.customer.email }}"}}]}),
    )
    .await;
    let e = run(&s, &t, "typo", json!({"customer": {}})).await;
    assert_eq!(e["status"], "failed");
    assert_eq!(e["error"]["code"], "template_error");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("{{ input.customer.email }}"), "{msg}");
    assert!(msg.contains("$.steps[0].input.to"), "{msg}");
    assert!(msg.contains("undefined"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_schema_rejects_bad_input_and_creates_nothing() {
    let s = start().await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "typed",
        json!({"input_schema": {"type": "object", "required": ["email", "n"],
                "properties": {"email": {"type": "string"}, "n": {"type": "integer", "minimum": 1}}},
               "steps": [{"id": "a", "step": "echo"}]}),
    )
    .await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions/async",
            Some(&t),
            Some(json!({"workflow_id": "typed", "input_data": {"email": 5, "n": 0}})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "input_schema");
    let paths: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"$.input_data.email"), "{paths:?}");
    assert!(paths.contains(&"$.input_data.n"), "{paths:?}");
    let list = s.call(Method::GET, "/v1/executions", Some(&t), None).await;
    assert!(list.body["items"].as_array().unwrap().is_empty());
    let ok = run(&s, &t, "typed", json!({"email": "a@b.c", "n": 2})).await;
    assert_eq!(ok["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_version_is_used_and_later_uploads_change_nothing() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let echo = s.call(Method::GET, "/v1/steps/echo", Some(&t), None).await;
    let digest = echo.body["latest_digest"].as_str().unwrap().to_owned();
    apply(
        &s,
        &t,
        "pinned",
        json!({"steps": [{"id": "a", "step": format!("echo@{digest}")}, {"id": "b", "step": "echo"}]}),
    )
    .await;
    // A new `echo` version (other bytes) arrives after the workflow.
    assert_eq!(
        s.push(&t, "echo", test_programs::HOSTILE).await.status,
        StatusCode::CREATED
    );
    let e = run(&s, &t, "pinned", json!({"op": "counter"})).await;
    assert_eq!(step(&e, "a")["digest"], digest.as_str());
    assert_ne!(step(&e, "b")["digest"], digest.as_str(), "{e}");
    assert_eq!(e["output"], json!({"calls": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_guest_and_never_leave() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let secret = "s3cr3t-Value-42";
    let r = s
        .client
        .put(format!("{}/v1/secrets/api_key", s.url))
        .bearer_auth(&t)
        .body(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let listed = s.call(Method::GET, "/v1/secrets", Some(&t), None).await;
    assert_eq!(listed.body, json!({"items": [{"name": "api_key"}]}));
    apply(
        &s,
        &t,
        "leaky",
        json!({"steps": [
            {"id": "leak", "step": "hostile", "input": {"op": "leak"},
             "config": {"key": "{{ secrets.api_key }}"}},
            {"id": "leak_error", "step": "hostile", "input": {"op": "leak", "n": 1},
             "config": {"key": "Bearer {{ secrets.api_key }}"}}],
         "output": {"echoed": "{{ steps.leak.output }}"}}),
    )
    .await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=60",
            Some(&t),
            Some(json!({"workflow_id": "leaky"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let e = &r.body;
    assert_eq!(e["status"], "failed", "{e}");
    // The guest saw the real value (it echoed it), and the host redacted it
    // from the output, the logs and the error.
    assert_eq!(step(e, "leak")["output"], json!({"leaked": "[REDACTED]"}));
    let logs = step(e, "leak")["attempts"][0]["logs"].to_string();
    assert!(logs.contains("the key is [REDACTED]"), "{logs}");
    assert!(logs.contains("stdout says [REDACTED]"), "{logs}");
    assert_eq!(e["error"]["message"], "failed with Bearer [REDACTED]");
    let everything = [
        get_text(
            &s,
            &t,
            &format!("/v1/executions/{}", e["execution_id"].as_str().unwrap()),
        )
        .await,
        get_text(&s, &t, "/v1/executions").await,
        get_text(&s, &t, "/v1/secrets").await,
        get_text(&s, &t, "/v1/workflows/leaky").await,
        r.body.to_string(),
    ];
    for text in everything {
        assert!(!text.contains(secret), "the secret leaked: {text}");
    }
    // Referring to a secret the tenant lacks is refused at submission.
    apply(
        &s,
        &t,
        "missing",
        json!({"steps": [{"id": "a", "step": "hostile", "input": {"op": "leak"},
                          "config": {"key": "{{ secrets.nope }}"}}]}),
    )
    .await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions/async",
            Some(&t),
            Some(json!({"workflow_id": "missing"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "missing secrets");
    assert_eq!(r.body["errors"][0]["path"], "secrets.nope");
    // Deleting works, and another tenant sees nothing.
    let other = s.tenant("other").await;
    let theirs = s.call(Method::GET, "/v1/secrets", Some(&other), None).await;
    assert_eq!(theirs.body, json!({"items": []}));
    let gone = s
        .call(Method::DELETE, "/v1/secrets/api_key", Some(&other), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let gone = s
        .call(Method::DELETE, "/v1/secrets/api_key", Some(&t), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let bad = s
        .call(Method::DELETE, "/v1/secrets/not-valid!", Some(&t), None)
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "secret name");
}

async fn get_text(s: &Server, t: &str, path: &str) -> String {
    let r = s
        .client
        .get(format!("{}{path}", s.url))
        .bearer_auth(t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "{path}");
    r.text().await.unwrap()
}
