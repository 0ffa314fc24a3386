//! HTTP from steps end to end: a workflow step whose definition lists a
//! host in `allow_http` reaches the test's receiver only once the admin
//! adds it to the tenant's egress allowlist (`PUT
//! /v1/tenants/{tenant}/egress`) and the server's `step-http-allow` covers
//! it; the attempt's record shows each request. Bad lists and caps are
//! precise 422s.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::*;
use crate::receiver_support::{Answer, Receiver};

async fn egress(s: &Server, tenant: &str, token: &str, body: Value) -> Resp {
    s.call(
        Method::PUT,
        &format!("/v1/tenants/{tenant}/egress"),
        Some(token),
        Some(body),
    )
    .await
}

/// Runs `workflow` synchronously and returns its execution record.
async fn run(s: &Server, t: &str, workflow: &str, input: Value) -> Value {
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(t),
            Some(json!({"workflow_id": workflow, "input_data": input})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    wait_for(s, t, &id, |e| e["status"] == "succeeded").await
}

fn first_attempt(e: &Value) -> &Value {
    &step(e, "call")["attempts"][0]
}

fn result(e: &Value) -> &Value {
    &step(e, "call")["output"]["results"][0]
}

async fn server(extra: Value) -> Server {
    let mut config = json!({"outbound-allow-networks": ["127.0.0.0/8"]});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    start_with(Arc::new(stephost::engine::SystemClock), config, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_reaches_a_host_its_definition_and_its_tenant_allow() {
    let rx = Receiver::start().await;
    rx.answer_by_default(Answer::status(200).body(r#"{"ok":true}"#));
    let host = rx.addr.to_string();
    let s = server(json!({})).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "fetch",
        json!({"steps": [{"id": "call", "step": "hostile", "allow_http": [host],
                          "limits": {"http_requests": 3}}]}),
    )
    .await;
    let input = json!({"op": "http", "urls": [rx.url()]});

    // The tenant allows no host yet: denied, and nothing connects.
    let r = s.call(Method::GET, "/v1/egress", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["allow"], json!([]));
    let e = run(&s, &t, "fetch", input.clone()).await;
    assert_eq!(result(&e)["error"], "HttpRequestDenied", "{e}");
    let rec = &first_attempt(&e)["http_requests"][0];
    assert_eq!(rec["method"], "GET");
    assert_eq!(rec["host"], host.as_str());
    assert!(
        rec["error"]
            .as_str()
            .unwrap()
            .contains("is not in the tenant's egress allowlist"),
        "{rec}"
    );
    assert_eq!(rx.connections(), 0);

    // The admin allows loopback for the tenant (a repeat kept once).
    let r = egress(
        &s,
        "acme",
        ADMIN,
        json!({"allow": ["127.0.0.1", "127.0.0.1", "*.Example.org:443"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["allow"], json!(["127.0.0.1", "*.example.org:443"]));
    let r = s
        .call(Method::GET, "/v1/tenants/acme/egress", Some(ADMIN), None)
        .await;
    assert_eq!(r.body["allow"], json!(["127.0.0.1", "*.example.org:443"]));
    let e = run(&s, &t, "fetch", input.clone()).await;
    assert_eq!(
        *result(&e),
        json!({"status": 200, "body": r#"{"ok":true}"#}),
        "{e}"
    );
    let rec = &first_attempt(&e)["http_requests"][0];
    assert_eq!(rec["status"], 200, "{rec}");
    assert_eq!(rec["bytes"], 11);
    assert!(rec["duration_ms"].as_u64().is_some(), "{rec}");
    assert!(rec.get("error").is_none(), "{rec}");
    assert_eq!(rx.requests().len(), 1);

    // The step's own cap of 3 requests holds.
    let e = run(
        &s,
        &t,
        "fetch",
        json!({"op": "http", "urls": vec![rx.url(); 4]}),
    )
    .await;
    let results = step(&e, "call")["output"]["results"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(results[2]["status"], 200);
    assert_eq!(results[3]["error"], "HttpRequestDenied");
    assert_eq!(rx.requests().len(), 4);

    // Emptied again, the tenant's steps are off the network at once.
    let r = egress(&s, "acme", ADMIN, json!({"allow": []})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let e = run(&s, &t, "fetch", input).await;
    assert_eq!(result(&e)["error"], "HttpRequestDenied", "{e}");
    assert_eq!(rx.requests().len(), 4);

    // Another tenant's steps have no such list.
    let other = s.fixture("other").await;
    apply(
        &s,
        &other,
        "fetch",
        json!({"steps": [{"id": "call", "step": "hostile", "allow_http": [host]}]}),
    )
    .await;
    let e = run(
        &s,
        &other,
        "fetch",
        json!({"op": "http", "urls": [rx.url()]}),
    )
    .await;
    assert_eq!(result(&e)["error"], "HttpRequestDenied", "{e}");
    assert_eq!(rx.requests().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_ceiling_and_the_outbound_rules_hold_over_every_list() {
    let rx = Receiver::start().await;
    let host = rx.addr.to_string();
    // The server allows only example.com names.
    let s = server(json!({"step-http-allow": ["*.example.com"]})).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "fetch",
        json!({"steps": [{"id": "call", "step": "hostile", "allow_http": ["*"]}]}),
    )
    .await;
    assert_eq!(
        egress(&s, "acme", ADMIN, json!({"allow": ["*"]}))
            .await
            .status,
        StatusCode::OK
    );
    let e = run(&s, &t, "fetch", json!({"op": "http", "urls": [rx.url()]})).await;
    assert_eq!(result(&e)["error"], "HttpRequestDenied", "{e}");
    let why = first_attempt(&e)["http_requests"][0]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        why.contains(&format!("{host} is not in the server's `step-http-allow`")),
        "{why}"
    );
    assert_eq!(rx.connections(), 0);

    // Without the operator's switch, loopback stays refused even when
    // every list allows any host.
    let s = start_with(Arc::new(stephost::engine::SystemClock), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "fetch",
        json!({"steps": [{"id": "call", "step": "hostile", "allow_http": ["*"]}]}),
    )
    .await;
    assert_eq!(
        egress(&s, "acme", ADMIN, json!({"allow": ["*"]}))
            .await
            .status,
        StatusCode::OK
    );
    let e = run(&s, &t, "fetch", json!({"op": "http", "urls": [rx.url()]})).await;
    assert_eq!(result(&e)["error"], "HttpRequestDenied", "{e}");
    let why = first_attempt(&e)["http_requests"][0]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        why.starts_with("refused: ") && why.contains("loopback"),
        "{why}"
    );
    assert_eq!(rx.connections(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_allowlists_and_caps_are_precise_problems() {
    let s = server(json!({"step-http-max-requests": 20})).await;
    let t = s.fixture("acme").await;

    // The tenant's list.
    let r = egress(
        &s,
        "acme",
        ADMIN,
        json!({"allow": ["ok.example", "https://x.example", "", "a b"]}),
    )
    .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid egress allowlist",
    );
    let paths: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["$.allow[1]", "$.allow[2]", "$.allow[3]"],
        "{:?}",
        r.body
    );
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("without a scheme")
    );
    let too_many: Vec<String> = (0..257).map(|i| format!("h{i}.example")).collect();
    let r = egress(&s, "acme", ADMIN, json!({"allow": too_many})).await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid egress allowlist",
    );
    assert_eq!(r.body["errors"][0]["path"], "$.allow");
    let r = egress(&s, "acme", ADMIN, json!({"allow": "ok.example"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = egress(&s, "acme", ADMIN, json!({"hosts": []})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_problem(
        &egress(&s, "nobody", ADMIN, json!({"allow": []})).await,
        StatusCode::NOT_FOUND,
        "nobody",
    );
    assert_problem(
        &egress(&s, "acme", &t, json!({"allow": ["*"]})).await,
        StatusCode::UNAUTHORIZED,
        "needs an admin token",
    );
    assert_eq!(
        s.call(Method::GET, "/v1/egress", Some(ADMIN), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // A step's list and caps.
    let cases = [
        (
            json!({"id": "call", "step": "hostile", "allow_http": ["api.example.com", "bad host"]}),
            "$.steps[0].allow_http[1]",
            "not a host pattern",
        ),
        (
            json!({"id": "call", "step": "hostile", "allow_http": "api.example.com"}),
            "$.steps[0].allow_http",
            "",
        ),
        (
            json!({"id": "call", "step": "hostile", "allow_http": ["*"], "limits": {"http_requests": 0}}),
            "$.steps[0].limits.http_requests",
            "above zero",
        ),
        (
            json!({"id": "call", "step": "hostile", "allow_http": ["*"], "limits": {"http_requests": 21}}),
            "$.steps[0].limits.http_requests",
            "above the server's `step-http-max-requests` of 20",
        ),
        (
            json!({"id": "call", "step": "hostile", "allow_http": ["*"], "limits": {"http_response_bytes": "1GiB"}}),
            "$.steps[0].limits.http_response_bytes",
            "`step-http-max-response-bytes`",
        ),
        (
            json!({"id": "call", "step": "hostile", "allow_http": ["*"], "limits": {"http_concurrent": 5}}),
            "$.steps[0].limits.http_concurrent",
            "`step-http-max-concurrent` of 4",
        ),
        (
            json!({"id": "call", "wait": {"for": "1s"}, "allow_http": ["*"]}),
            "$.steps[0].allow_http",
            "a wait step has no `allow_http`",
        ),
    ];
    for (step, path, needle) in cases {
        let r = s.workflow(&t, "bad", json!({"steps": [step]})).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{step}: {:?}",
            r.body
        );
        let found = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("{step}: no problem at {path}: {:?}", r.body));
        assert!(
            found["message"].as_str().unwrap().contains(needle),
            "{step}: {found}"
        );
    }
    // Within the caps, stored as written.
    let def = json!({"steps": [{"id": "call", "step": "hostile", "allow_http": ["API.example.com:443"],
        "limits": {"http_requests": 20, "http_response_bytes": "1MiB", "http_concurrent": 2}}]});
    let r = s.workflow(&t, "good", def).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}
