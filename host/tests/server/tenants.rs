//! A tenant's life as the admin runs it: listing and reading tenants,
//! suspension (every token 401, running work stops, nothing starts) and
//! unsuspension (the work carries on), deletion (nothing of it remains,
//! the others keep everything), and who may do each.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{ADMIN, Server, assert_problem, live_executions, start, submit, wait_for};

/// Waits until the server drives exactly `n` executions.
async fn until_live(s: &Server, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let live = live_executions(s).await;
        if live == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server drives {live} executions, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn admin(s: &Server, method: Method, path: &str) -> crate::common::Resp {
    s.call(method, path, Some(ADMIN), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_lists_and_reads_tenants_and_a_tenant_reads_itself() {
    let s = start().await;
    let acme = s.tenant("acme").await;
    let other = s.tenant("other").await;
    let all = admin(&s, Method::GET, "/v1/tenants").await;
    assert_eq!(all.status, StatusCode::OK, "{:?}", all.body);
    let names: Vec<&str> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "other"], "oldest first");
    assert_eq!(
        all.body["items"][0]["suspended_at"],
        serde_json::Value::Null
    );
    assert_eq!(all.body["next_cursor"], serde_json::Value::Null);
    let first = admin(&s, Method::GET, "/v1/tenants?limit=1").await;
    assert_eq!(first.body["items"][0]["name"], "acme");
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = admin(
        &s,
        Method::GET,
        &format!("/v1/tenants?limit=1&cursor={cursor}"),
    )
    .await;
    assert_eq!(second.body["items"][0]["name"], "other");
    assert_eq!(second.body["next_cursor"], serde_json::Value::Null);
    assert_problem(
        &admin(&s, Method::GET, "/v1/tenants?cursor=nonsense").await,
        StatusCode::BAD_REQUEST,
        "cursor",
    );
    assert_problem(
        &admin(&s, Method::GET, "/v1/tenants?limit=0").await,
        StatusCode::BAD_REQUEST,
        "limit",
    );
    assert_problem(
        &s.call(Method::GET, "/v1/tenants", Some(&acme), None).await,
        StatusCode::UNAUTHORIZED,
        "needs an admin token",
    );
    // By name or id; a tenant sees itself and nobody else.
    let by_name = admin(&s, Method::GET, "/v1/tenants/acme").await;
    assert_eq!(by_name.status, StatusCode::OK, "{:?}", by_name.body);
    let id = by_name.body["id"].as_str().unwrap();
    let own = s
        .call(Method::GET, &format!("/v1/tenants/{id}"), Some(&acme), None)
        .await;
    assert_eq!(own.body, by_name.body);
    assert_problem(
        &s.call(Method::GET, "/v1/tenants/acme", Some(&other), None)
            .await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    assert_problem(
        &admin(&s, Method::GET, "/v1/tenants/nobody").await,
        StatusCode::NOT_FOUND,
        "not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_tenant_is_refused_and_stops_until_unsuspended() {
    let s = start().await;
    let acme = s.fixture("acme").await;
    let other = s.fixture("other").await;
    // `slow` ends in an attempt that sleeps for an hour.
    // Once `first` is stored the driver goes on to the sleeping attempt.
    let id = submit(&s, &acme, "slow", json!({"x": 1})).await;
    wait_for(&s, &acme, &id, |e| e["steps"][0]["status"] == "succeeded").await;
    until_live(&s, 1).await;

    for who in [&acme, &other] {
        assert_problem(
            &s.call(Method::POST, "/v1/tenants/acme/suspend", Some(who), None)
                .await,
            StatusCode::UNAUTHORIZED,
            "needs an admin token",
        );
    }
    let r = admin(&s, Method::POST, "/v1/tenants/acme/suspend").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let at = r.body["suspended_at"]
        .as_str()
        .expect("suspended")
        .to_owned();
    let again = admin(&s, Method::POST, "/v1/tenants/acme/suspend").await;
    assert_eq!(
        again.body["suspended_at"],
        at.as_str(),
        "suspending twice keeps the first time"
    );
    // Every token of the tenant is refused, with the reason.
    let refused = s
        .call(Method::GET, "/v1/executions", Some(&acme), None)
        .await;
    assert_problem(&refused, StatusCode::UNAUTHORIZED, "suspended");
    let refused = s
        .call(
            Method::POST,
            "/v1/executions/async",
            Some(&acme),
            Some(json!({"workflow_id": "three", "input_data": {}})),
        )
        .await;
    assert_problem(&refused, StatusCode::UNAUTHORIZED, "suspended");
    // Its running execution stops: the driver loses its lease.
    until_live(&s, 0).await;
    // Others are untouched.
    let ran = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&other),
            Some(json!({"workflow_id": "three", "input_data": {"n": 1}})),
        )
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{:?}", ran.body);
    assert_eq!(ran.body["status"], "succeeded");
    let listed = admin(&s, Method::GET, "/v1/tenants/acme").await;
    assert_eq!(listed.body["suspended_at"], at.as_str());

    let r = admin(&s, Method::POST, "/v1/tenants/acme/unsuspend").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["suspended_at"], serde_json::Value::Null);
    // The work carries on where it stopped, and the tokens work again.
    until_live(&s, 1).await;
    let e = crate::common::get(&s, &acme, &id).await;
    assert_eq!(e["status"], "running", "{e}");
    assert_eq!(
        e["steps"][0]["status"], "succeeded",
        "the step done before stays done: {e}"
    );
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    until_live(&s, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_removes_it_and_all_its_data() {
    let s = start().await;
    let acme = s.fixture("acme").await;
    let other = s.fixture("other").await;
    let r = s
        .call(
            Method::PUT,
            "/v1/secrets/api_key",
            Some(&acme),
            Some(json!({"value": "s3cret"})),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    let done = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&acme),
            Some(json!({"workflow_id": "three", "input_data": {}})),
        )
        .await;
    assert_eq!(done.body["status"], "succeeded", "{:?}", done.body);
    let running = submit(&s, &acme, "slow", json!({})).await;
    wait_for(&s, &acme, &running, |e| {
        e["steps"][0]["status"] == "succeeded"
    })
    .await;
    until_live(&s, 1).await;

    assert_problem(
        &s.call(Method::DELETE, "/v1/tenants/acme", Some(&acme), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "needs an admin token",
    );
    let r = admin(&s, Method::DELETE, "/v1/tenants/acme").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    // Its running execution stops, its tokens are unknown, it is gone.
    until_live(&s, 0).await;
    assert_problem(
        &s.call(Method::GET, "/v1/steps", Some(&acme), None).await,
        StatusCode::UNAUTHORIZED,
        "unknown token",
    );
    assert_problem(
        &admin(&s, Method::GET, "/v1/tenants/acme").await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    assert_problem(
        &admin(&s, Method::DELETE, "/v1/tenants/acme").await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    // The name is free again, and a new tenant under it starts empty.
    let fresh = s.tenant("acme").await;
    for path in [
        "/v1/steps",
        "/v1/workflows",
        "/v1/executions",
        "/v1/secrets",
    ] {
        let r = s.call(Method::GET, path, Some(&fresh), None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {:?}", r.body);
        assert_eq!(r.body["items"], json!([]), "{path}: {:?}", r.body);
    }
    // The other tenant keeps everything, the components it shares included.
    let ran = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&other),
            Some(json!({"workflow_id": "three", "input_data": {"n": 2}})),
        )
        .await;
    assert_eq!(ran.body["status"], "succeeded", "{:?}", ran.body);
    let listed = admin(&s, Method::GET, "/v1/tenants").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);
}
