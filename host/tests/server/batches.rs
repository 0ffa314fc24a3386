//! Batch runs end to end: `POST /v1/executions/batch` creates one
//! execution per input in input order, all or none; each calls back with
//! its own `custom_data`; the batch is listed and summarised; a repeated
//! key returns the same batch; the quotas count every input.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN, Resp, Server, apply, assert_problem, start, start_with, wait_for};
use crate::receiver_support::Receiver;

async fn post_batch(s: &Server, t: &str, body: Value) -> Resp {
    s.call(Method::POST, "/v1/executions/batch", Some(t), Some(body))
        .await
}

fn ids_of(r: &Resp) -> Vec<String> {
    r.body["execution_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", r.body))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

/// Every execution of a batch, through `GET /v1/executions?batch_id=`.
async fn listed(s: &Server, t: &str, batch: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/executions?batch_id={batch}&limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let r = s.call(Method::GET, &path, Some(t), None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        all.extend(r.body["items"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
}

async fn summary(s: &Server, t: &str, batch: &str) -> Resp {
    s.call(Method::GET, &format!("/v1/batches/{batch}"), Some(t), None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_500_runs_500_executions_each_calling_back_with_its_own_custom_data() {
    let rx = Receiver::start().await;
    let s = start_with(
        Arc::new(stephost::engine::SystemClock),
        json!({"outbound-allow-networks": ["127.0.0.0/8"]}),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "one",
        json!({"steps": [{"id": "a", "step": "echo"}]}),
    )
    .await;
    let inputs: Vec<Value> = (0..500)
        .map(|i| json!({"input_data": {"n": i}, "custom_data": {"row": i, "tag": format!("r{i}")}}))
        .collect();
    let r = post_batch(
        &s,
        &t,
        json!({"workflow_id": "one", "inputs": inputs, "callback": {"url": rx.url()}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let batch = r.body["batch_id"].as_str().unwrap().to_owned();
    assert!(batch.starts_with("bat_"), "{batch}");
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("/v1/batches/{batch}")
    );
    let ids = ids_of(&r);
    assert_eq!(ids.len(), 500);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 500, "distinct");

    // 500 callbacks, one per execution, each with its own custom_data.
    let got = rx.wait_for(500, Duration::from_secs(120)).await;
    assert_eq!(got.len(), 500);
    let index: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut seen = HashSet::new();
    for r in &got {
        let body = r.json();
        assert_eq!(body["type"], "execution.finished");
        let id = body["data"]["execution_id"].as_str().unwrap();
        let i = index[id];
        assert!(seen.insert(i), "one callback per execution");
        assert_eq!(
            body["custom_data"],
            json!({"row": i, "tag": format!("r{i}")})
        );
        assert_eq!(body["data"]["status"], "succeeded");
        assert_eq!(body["data"]["output"], json!({"n": i}));
    }

    // Each execution records its batch, its input and custom_data.
    let e = wait_for(&s, &t, &ids[317], |e| e["status"] == "succeeded").await;
    assert_eq!(e["batch_id"], batch.as_str());
    assert_eq!(e["input_data"], json!({"n": 317}));
    assert_eq!(e["custom_data"]["row"], 317);

    // Listed (newest first: the last input first), and summarised.
    let items = listed(&s, &t, &batch).await;
    let mut order: Vec<String> = items
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_owned())
        .collect();
    order.reverse();
    assert_eq!(order, ids);
    assert!(items.iter().all(|e| e["batch_id"] == batch.as_str()));
    let r = summary(&s, &t, &batch).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["batch_id"], batch.as_str());
    assert_eq!(r.body["workflow_id"], "one");
    assert_eq!(r.body["total"], 500);
    assert_eq!(r.body["finished"], 500);
    assert_eq!(r.body["done"], true);
    assert_eq!(r.body["counts"]["succeeded"], 500);
    assert_eq!(r.body["counts"]["queued"], 0);

    // Other tenants see none of it.
    let other = s.tenant("other").await;
    assert_problem(
        &summary(&s, &other, &batch).await,
        StatusCode::NOT_FOUND,
        "batch",
    );
    assert!(listed(&s, &other, &batch).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_an_invalid_input_creates_none_and_names_the_index() {
    let s = start_with(
        Arc::new(stephost::engine::SystemClock),
        json!({"max-batch-executions": 20}),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "typed",
        json!({"input_schema": {"type": "object", "required": ["n"],
                                "properties": {"n": {"type": "integer"}}},
               "steps": [{"id": "a", "step": "echo"}]}),
    )
    .await;
    let mut inputs: Vec<Value> = (0..12).map(|i| json!({"input_data": {"n": i}})).collect();
    inputs[7] = json!({"input_data": {"n": "seven"}});
    inputs[9] = json!({"input_data": {}});
    let r = post_batch(&s, &t, json!({"workflow_id": "typed", "inputs": inputs})).await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "inputs 7, 9 do not match",
    );
    let paths: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["$.inputs[7].input_data.n", "$.inputs[9].input_data"]
    );
    let all = s.call(Method::GET, "/v1/executions", Some(&t), None).await;
    assert_eq!(all.body["items"], json!([]), "none was created");

    // The same inputs fixed: all of them.
    inputs[7] = json!({"input_data": {"n": 7}});
    inputs[9] = json!({"input_data": {"n": 9}});
    let r = post_batch(&s, &t, json!({"workflow_id": "typed", "inputs": inputs})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(ids_of(&r).len(), 12);

    // Every other kind of bad batch, each a precise problem.
    let too_many: Vec<Value> = (0..21).map(|_| json!({"input_data": {"n": 1}})).collect();
    for (body, status, needle, path) in [
        (
            json!({"workflow_id": "typed", "inputs": []}),
            422,
            "does not fit",
            Some("$.inputs"),
        ),
        (
            json!({"workflow_id": "typed", "inputs": too_many}),
            422,
            "does not fit",
            Some("$.inputs"),
        ),
        (
            json!({"workflow_id": "typed"}),
            422,
            "does not fit",
            Some("$"),
        ),
        (
            json!({"workflow_id": "typed", "inputs": [{"input": 1}]}),
            422,
            "does not fit",
            Some("$"),
        ),
        (
            json!({"workflow_id": "typed", "inputs": {"n": 1}}),
            422,
            "does not fit",
            Some("$"),
        ),
        (
            json!({"workflow_id": "no such", "inputs": [{}]}),
            422,
            "does not fit",
            Some("$.workflow_id"),
        ),
        (
            json!({"workflow_id": "nope", "inputs": [{}]}),
            404,
            "`nope` not found",
            None,
        ),
        (
            json!({"workflow_id": "typed", "workflow_version": 9, "inputs": [{}]}),
            404,
            "version `9`",
            None,
        ),
        (
            json!({"workflow_id": "typed", "inputs": [{"input_data": {"n": 1}}],
                "callback": {"url": "http://10.0.0.1/hook"}}),
            422,
            "cannot be delivered",
            Some("$.callback.url"),
        ),
    ] {
        let r = post_batch(&s, &t, body.clone()).await;
        assert_problem(&r, StatusCode::from_u16(status).unwrap(), needle);
        if let Some(path) = path {
            assert_eq!(r.body["errors"][0]["path"], path, "{body}: {:?}", r.body);
        }
    }
    let over = post_batch(
        &s,
        &t,
        json!({"workflow_id": "typed", "inputs": (0..21).map(|_| json!({})).collect::<Vec<_>>()}),
    )
    .await;
    assert!(
        over.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 20"),
        "{:?}",
        over.body
    );
    let r = s
        .client
        .post(format!("{}/v1/executions/batch", s.url))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body("{\"workflow_id\": ")
        .send()
        .await
        .unwrap();
    assert_problem(
        &crate::common::resp(r).await,
        StatusCode::BAD_REQUEST,
        "malformed JSON",
    );
    let r = s
        .post_keyed(
            &t,
            "/v1/executions/batch",
            "k",
            Some("FAIL"),
            &json!({"workflow_id": "typed", "inputs": [{}]}),
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "X-On-Conflict");
    // A read-only token may not run a batch; the admin token is no tenant.
    let r = s
        .call(
            Method::POST,
            "/v1/tenants/acme/tokens",
            Some(ADMIN),
            Some(json!({"scopes": ["read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let reader = r.body["token"].as_str().unwrap().to_owned();
    let batch = json!({"workflow_id": "typed", "inputs": [{"input_data": {"n": 1}}]});
    assert_problem(
        &post_batch(&s, &reader, batch.clone()).await,
        StatusCode::FORBIDDEN,
        "scopes",
    );
    assert_problem(
        &post_batch(&s, ADMIN, batch).await,
        StatusCode::FORBIDDEN,
        "tenant token",
    );
    assert_problem(
        &summary(&s, &t, "bat_nothing").await,
        StatusCode::NOT_FOUND,
        "batch `bat_nothing` not found",
    );
    let r = s
        .call(
            Method::GET,
            "/v1/executions?batch_id=no%20such",
            Some(&t),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::BAD_REQUEST, "query parameter `batch_id`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_batch_with_its_key_returns_the_same_batch() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let body = json!({"workflow_id": "three", "inputs": [{"input_data": 1}, {"input_data": 2}, {"input_data": 3}]});
    let first = s
        .post_keyed(
            &t,
            "/v1/executions/batch",
            "nightly-2030-01-01",
            None,
            &body,
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let again = s
        .post_keyed(
            &t,
            "/v1/executions/batch",
            "nightly-2030-01-01",
            None,
            &body,
        )
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{:?}", again.body);
    assert_eq!(again.body["batch_id"], first.body["batch_id"]);
    assert_eq!(
        ids_of(&again),
        ids_of(&first),
        "the same ids in the same order"
    );
    let all = s.call(Method::GET, "/v1/executions", Some(&t), None).await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        3,
        "no second batch"
    );
    let other = json!({"workflow_id": "three", "inputs": [{"input_data": 9}]});
    let r = s
        .post_keyed(
            &t,
            "/v1/executions/batch",
            "nightly-2030-01-01",
            None,
            &other,
        )
        .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "different request body",
    );
    // A key first used for a single run is not a batch's.
    let single = s
        .post_keyed(
            &t,
            "/v1/executions/async",
            "single",
            None,
            &json!({"workflow_id": "three"}),
        )
        .await;
    assert_eq!(single.status, StatusCode::ACCEPTED, "{:?}", single.body);
    let r = s
        .post_keyed(
            &t,
            "/v1/executions/batch",
            "single",
            None,
            &json!({"workflow_id": "three"}),
        )
        .await;
    assert!(r.status.is_client_error(), "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_counts_every_input_against_the_rate_and_the_backlog() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let set = async |quotas: Value| {
        let r = s
            .call(
                Method::PUT,
                "/v1/tenants/acme/quotas",
                Some(ADMIN),
                Some(quotas),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    };
    let inputs = |n: usize| (0..n).map(|i| json!({"input_data": i})).collect::<Vec<_>>();

    // A burst of 5, refilled once every 100 s.
    set(json!({"submissions_per_second": 0.01, "submissions_burst": 5})).await;
    let r = post_batch(&s, &t, json!({"workflow_id": "three", "inputs": inputs(6)})).await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "larger than the submission burst",
    );
    assert_eq!(r.body["errors"][0]["path"], "$.inputs");
    let r = post_batch(&s, &t, json!({"workflow_id": "three", "inputs": inputs(4)})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let mut earlier = ids_of(&r);
    assert_eq!(
        r.headers["ratelimit"]
            .to_str()
            .unwrap()
            .split(";t=")
            .next()
            .unwrap(),
        "\"tenant\";r=1",
        "four of the five spent"
    );
    let r = post_batch(&s, &t, json!({"workflow_id": "three", "inputs": inputs(2)})).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "submissions_per_second");
    assert!(r.headers.contains_key("retry-after"));
    let r = post_batch(&s, &t, json!({"workflow_id": "three", "inputs": inputs(1)})).await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "the last one fits: {:?}",
        r.body
    );
    earlier.extend(ids_of(&r));
    for id in &earlier {
        wait_for(&s, &t, id, |e| e["status"] == "succeeded").await;
    }

    // One runs at a time and three may wait.
    set(json!({"max_concurrent_executions": 1, "max_queued_executions": 3})).await;
    let r = post_batch(&s, &t, json!({"workflow_id": "slow", "inputs": inputs(4)})).await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "larger than this tenant's backlog",
    );
    let r = post_batch(&s, &t, json!({"workflow_id": "slow", "inputs": inputs(3)})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let first = ids_of(&r)[0].clone();
    wait_for(&s, &t, &first, |e| e["status"] == "running").await;
    // Two wait now: two more would be four.
    let r = post_batch(&s, &t, json!({"workflow_id": "slow", "inputs": inputs(2)})).await;
    assert_problem(&r, StatusCode::TOO_MANY_REQUESTS, "2 more were asked for");
    let r = post_batch(&s, &t, json!({"workflow_id": "slow", "inputs": inputs(1)})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = summary(&s, &t, r.body["batch_id"].as_str().unwrap()).await;
    assert_eq!(r.body["counts"]["queued"], 1, "{:?}", r.body);
    assert_eq!(r.body["done"], false);
}
