//! Running executions: sync, async, hand-off, cancel, listing, idempotency
//! and precise errors for bad requests.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{assert_problem, resp, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_run_returns_the_full_record() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let input =
        json!({"order": 42, "name": "ünï", "big": 123456789012345678901234567890u128.to_string()});
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": input, "custom_data": {"ref": "x"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = &r.body;
    assert_eq!(e["status"], "succeeded");
    assert_eq!(e["output"], input);
    assert_eq!(e["input_data"], input);
    assert_eq!(e["custom_data"], json!({"ref": "x"}));
    assert_eq!(e["workflow_version"], 1);
    // The duration is from acceptance to the end, to the microsecond.
    let at = |k: &str| e[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    let span = at("finished_at").as_microsecond() - at("created_at").as_microsecond();
    assert!(span > 0, "{e}");
    assert_eq!(
        e["duration_ms"].as_f64().unwrap(),
        span as f64 / 1000.0,
        "{e}"
    );
    let history: Vec<_> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["queued", "running", "succeeded"]);
    let steps = e["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    for step in steps {
        assert_eq!(step["status"], "succeeded");
        let a = &step["attempts"][0];
        assert_eq!(a["number"], 1);
        assert_eq!(a["outcome"], "succeeded");
        assert!(a["fuel_consumed"].as_u64().unwrap() > 0);
        assert!(a["memory_peak_bytes"].as_u64().unwrap() > 0);
        assert!(a["started_at"].is_string() && a["finished_at"].is_string());
    }
    let failed = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "fail"})),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK);
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(
        failed.body["error"],
        json!({"step_name": "boom", "code": "bad_input", "message": "nope"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_runs_are_polled_and_listed() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions/async",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": {"n": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["status"], "queued");
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    let done = s
        .call(
            Method::GET,
            &format!("/v1/executions/{id}?wait_for_seconds=10"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(done.body["status"], "succeeded");
    for n in 0..4 {
        s.call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": {"n": n}})),
        )
        .await;
    }
    s.call(
        Method::POST,
        "/v1/executions",
        Some(&t),
        Some(json!({"workflow_id": "fail"})),
    )
    .await;
    let all = s
        .call(Method::GET, "/v1/executions?limit=100", Some(&t), None)
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 6);
    assert_eq!(all.body["items"][0]["workflow_id"], "fail", "newest first");
    let failed = s
        .call(Method::GET, "/v1/executions?status=failed", Some(&t), None)
        .await;
    assert_eq!(failed.body["items"].as_array().unwrap().len(), 1);
    let three = s
        .call(
            Method::GET,
            "/v1/executions?workflow_id=three",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(three.body["items"].as_array().unwrap().len(), 5);
    // Paging by 2 while new executions arrive: no duplicates, nothing skipped.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/executions?limit=2&cursor={c}"),
            None => "/v1/executions?limit=2".to_owned(),
        };
        let page = s.call(Method::GET, &path, Some(&t), None).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["execution_id"].as_str().unwrap().to_owned());
        }
        s.call(
            Method::POST,
            "/v1/executions/async",
            Some(&t),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let originals: Vec<_> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["execution_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, originals);
    let after = all.body["items"][2]["created_at"].as_str().unwrap();
    let r = s
        .call(
            Method::GET,
            &format!("/v1/executions?created_before={after}&limit=100"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 3);
    assert_problem(
        &s.call(Method::GET, "/v1/executions?status=weird", Some(&t), None)
            .await,
        StatusCode::BAD_REQUEST,
        "status",
    );
    assert_problem(
        &s.call(Method::GET, "/v1/executions?limit=0", Some(&t), None)
            .await,
        StatusCode::BAD_REQUEST,
        "limit",
    );
    assert_problem(
        &s.call(Method::GET, "/v1/executions?cursor=%%%", Some(&t), None)
            .await,
        StatusCode::BAD_REQUEST,
        "cursor",
    );
    assert_problem(
        &s.call(
            Method::GET,
            "/v1/executions?created_after=yesterday",
            Some(&t),
            None,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "created_after",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_call_hands_off_to_async_and_cancel_stops_the_guest() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let started = std::time::Instant::now();
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=0.5",
            Some(&t),
            Some(json!({"workflow_id": "slow"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.body["status"], "running");
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["location"], format!("/v1/executions/{id}"));
    // The header form of the wait, and the partial answer for one step.
    let partial = s
        .client
        .post(format!("{}/v1/executions?wait_until_step=first", s.url))
        .bearer_auth(&t)
        .header("x-wait-for-seconds", "10")
        .json(&json!({"workflow_id": "slow"}))
        .send()
        .await
        .unwrap();
    let partial = resp(partial).await;
    assert_eq!(
        partial.status,
        StatusCode::PARTIAL_CONTENT,
        "{:?}",
        partial.body
    );
    assert_eq!(partial.body["steps"][0]["status"], "succeeded");
    assert_eq!(partial.body["status"], "running");
    let id2 = partial.body["execution_id"].as_str().unwrap().to_owned();

    let cancelled = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(cancelled.body["steps"][1]["status"], "cancelled");
    assert_eq!(
        cancelled.body["steps"][1]["attempts"][0]["outcome"],
        "cancelled"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel did not interrupt the guest"
    );
    let again = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    s.call(
        Method::POST,
        &format!("/v1/executions/{id2}/cancel"),
        Some(&t),
        None,
    )
    .await;
    let done = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
    let done_id = done.body["execution_id"].as_str().unwrap();
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{done_id}/cancel"),
            Some(&t),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::CONFLICT, "already finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_problems() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let raw = s
        .client
        .post(format!("{}/v1/executions", s.url))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_problem(&resp(raw).await, StatusCode::BAD_REQUEST, "malformed JSON");
    let raw = s
        .client
        .post(format!("{}/v1/executions", s.url))
        .bearer_auth(&t)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(
        &resp(raw).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "application/json",
    );
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "none"})),
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "workflow `none` not found");
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "workflow_version": 9})),
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "version");
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "workflow_version": "newest"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow": "three"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=soon",
            Some(&t),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "wait_for_seconds");
    // A wait longer than a duration can hold is the longest wait (found by
    // schemathesis: it was a panic).
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_for_seconds=1e300",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": {"n": 1}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "succeeded", "{:?}", r.body);
    let r = s
        .call(
            Method::POST,
            "/v1/executions?wait_until_step=zzz",
            Some(&t),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "no step `zzz`");
    let big = json!({"workflow_id": "three", "input_data": "x".repeat(2 << 20)});
    let r = s
        .call(Method::POST, "/v1/executions", Some(&t), Some(big))
        .await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "larger");
    // The unread rest of the body poisons the connection; the server must say
    // so, or the client's next request on it fails.
    assert_eq!(r.headers["connection"], "close");
    let r = s
        .call(Method::GET, "/v1/executions/not-an-id", Some(&t), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_deduplicate_even_when_concurrent() {
    let s = std::sync::Arc::new(start().await);
    let t = s.fixture("acme").await;
    let body = json!({"workflow_id": "three", "input_data": {"k": 1}});
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let t = t.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            s.post_keyed(&t, "/v1/executions/async", "order-1", None, &body)
                .await
                .body["execution_id"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let list = s.call(Method::GET, "/v1/executions", Some(&t), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);

    let other = json!({"workflow_id": "three", "input_data": {"k": 2}});
    assert_problem(
        &s.post_keyed(&t, "/v1/executions", "order-1", None, &other)
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "different request body",
    );
    let again = s
        .post_keyed(&t, "/v1/executions", "order-1", None, &body)
        .await;
    assert_eq!(again.body["execution_id"], ids[0].as_str());
    assert_problem(
        &s.post_keyed(&t, "/v1/executions", "order-1", Some("FAIL"), &body)
            .await,
        StatusCode::CONFLICT,
        "already used",
    );
    // FAIL_ON_RUNNING: refused while running, a new execution once finished.
    let slow = json!({"workflow_id": "slow"});
    let r1 = s
        .post_keyed(
            &t,
            "/v1/executions/async",
            "slow-1",
            Some("FAIL_ON_RUNNING"),
            &slow,
        )
        .await;
    let running = s
        .post_keyed(
            &t,
            "/v1/executions/async",
            "slow-1",
            Some("FAIL_ON_RUNNING"),
            &slow,
        )
        .await;
    assert_problem(&running, StatusCode::CONFLICT, "already used");
    let slow_id = r1.body["execution_id"].as_str().unwrap().to_owned();
    s.call(
        Method::POST,
        &format!("/v1/executions/{slow_id}/cancel"),
        Some(&t),
        None,
    )
    .await;
    let fresh = s
        .post_keyed(
            &t,
            "/v1/executions/async",
            "slow-1",
            Some("FAIL_ON_RUNNING"),
            &slow,
        )
        .await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert_ne!(fresh.body["execution_id"], slow_id.as_str());
    let fresh_id = fresh.body["execution_id"].as_str().unwrap();
    s.call(
        Method::POST,
        &format!("/v1/executions/{fresh_id}/cancel"),
        Some(&t),
        None,
    )
    .await;
    // No body at all: not JSON.
    let r = s.call(Method::POST, "/v1/executions", Some(&t), None).await;
    assert_problem(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "application/json");
    let bad = s
        .post_keyed(&t, "/v1/executions", "k", Some("MAYBE"), &body)
        .await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "X-On-Conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_while_every_worker_spins_in_a_guest() {
    let s = start().await; // two workers
    let t = s.fixture("acme").await;
    let spin = json!({"steps": [{"id": "spin", "step": "hostile", "input": {"op": "loop"}}]});
    assert_eq!(
        s.workflow(&t, "spin", spin).await.status,
        StatusCode::CREATED
    );
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = s
            .call(
                Method::POST,
                "/v1/executions/async",
                Some(&t),
                Some(json!({"workflow_id": "spin"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.body["execution_id"].as_str().unwrap().to_owned());
    }
    // Wait until both workers are inside a CPU-bound guest.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = s
            .call(Method::GET, "/v1/executions?status=running", Some(&t), None)
            .await;
        if r.body["items"].as_array().unwrap().len() >= 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every kind of request still answers promptly: the guests yield at each
    // epoch tick and never hold a runtime thread for long.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let started = std::time::Instant::now();
        let health = s.call(Method::GET, "/health/ready", None, None).await;
        assert_eq!(health.status, StatusCode::OK);
        let got = s
            .call(
                Method::GET,
                &format!("/v1/executions/{}", ids[i % 4]),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(got.status, StatusCode::OK);
        let queued = s
            .call(
                Method::POST,
                "/v1/executions?wait_for_seconds=0",
                Some(&t),
                Some(json!({"workflow_id": "three"})),
            )
            .await;
        assert_eq!(queued.status, StatusCode::ACCEPTED, "{:?}", queued.body);
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a request took {slowest:?} while the workers were busy"
    );
    let running = s
        .call(Method::GET, "/v1/executions?status=running", Some(&t), None)
        .await;
    assert!(
        !running.body["items"].as_array().unwrap().is_empty(),
        "the guests finished before the requests were measured"
    );
    for id in &ids {
        s.call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&t),
            None,
        )
        .await;
    }
}
