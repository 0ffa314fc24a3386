//! An API-only node and a worker node: everything sent to one reaches
//! the other, with notifications and with polling alone.

use super::*;

async fn api_only_node_hands_everything_to_the_worker(notifications: bool) {
    let schema = pg_support::Schema::new();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let worker = node(&schema, &dir_b, "node-b", true, notifications);
    let api = node(&schema, &dir_a, "node-a", false, notifications);
    let client = Client::new();
    let a = api.url.as_str();

    // Each node registers with its first heartbeat, which may come just
    // after it answers: wait until A lists both.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let listed = nodes(&client, a).await;
        if listed.len() >= 2 || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let summary: Vec<(String, bool, bool)> = listed
        .iter()
        .map(|n| {
            (
                n["node_id"].as_str().unwrap().to_owned(),
                n["claim_work"].as_bool().unwrap(),
                n["this_node"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("node-a".to_owned(), false, true),
            ("node-b".to_owned(), true, false)
        ]
    );

    let nap = |n: u64| json!({"op": "nap", "n": n});
    let token = serve_support::tenant(
        &client,
        a,
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[
            (
                "three",
                json!({"steps": [
                    {"id": "a", "step": "h", "input": nap(5)},
                    {"id": "b", "step": "h", "input": nap(5), "needs": ["a"]},
                    {"id": "c", "step": "h", "input": nap(5), "needs": ["b"]}]}),
            ),
            (
                "approval",
                json!({"steps": [
                    {"id": "ok", "wait": {"signal": "approval"}},
                    {"id": "after", "step": "h", "input": nap(1), "needs": ["ok"]}]}),
            ),
            (
                "two_naps",
                json!({"steps": [
                    {"id": "first", "step": "h", "input": nap(1500)},
                    {"id": "second", "step": "h", "input": nap(1), "needs": ["first"]}]}),
            ),
            (
                "slow",
                json!({"steps": [{"id": "nap", "step": "h", "input": {"op": "sleep"}}]}),
            ),
        ],
    )
    .await;

    // A sync call on A: B claims and runs it, and A's waiter hears of its
    // end.
    let (status, body) = promptly(
        "a sync call through the API-only node",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions"),
            &token,
            Some(json!({"workflow_id": "three", "input_data": {}})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded", "{body}");

    // A signal sent to A for an execution B parked.
    let id = submit(&client, a, &token, "approval").await;
    promptly(
        "B starting the execution A accepted",
        until(&client, a, &token, &id, |e| e["status"] == "waiting"),
    )
    .await;
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{a}/v1/executions/{id}/signals/approval"),
        &token,
        Some(json!({"ok": true})),
    )
    .await;
    assert!(status.is_success(), "{status}: {body}");
    let (status, done) = promptly(
        "a long poll on A for the signalled execution",
        call(
            &client,
            Method::GET,
            format!("{a}/v1/executions/{id}?wait_for_seconds=60"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(step_status(&done, "after"), "succeeded", "{done}");

    // Pause and resume, sent to A, of an execution B holds.
    // (A step's start is not committed on its own: `running` is the
    // execution's status, committed when B started it.)
    let id = submit(&client, a, &token, "two_naps").await;
    until(&client, a, &token, &id, |e| e["status"] == "running").await;
    let (status, paused) = promptly(
        "a pause through A",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions/{id}/pause"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(
        matches!(step_status(&paused, "second"), "absent" | "pending"),
        "nothing starts while paused: {paused}"
    );
    let (status, resumed) = promptly(
        "a resume through A",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions/{id}/resume"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let done = promptly(
        "the resumed execution finishing",
        until(&client, a, &token, &id, |e| e["status"] == "succeeded"),
    )
    .await;
    assert_eq!(step_status(&done, "second"), "succeeded", "{done}");

    // A cancel, sent to A, of an attempt running on B; meanwhile A lists
    // B as holding it.
    let id = submit(&client, a, &token, "slow").await;
    until(&client, a, &token, &id, |e| e["status"] == "running").await;
    let held = holdings(&client, a).await;
    assert_eq!(
        held,
        vec![("node-a".to_owned(), 0), ("node-b".to_owned(), 1)]
    );
    let (status, cancelled) = promptly(
        "a cancel through A",
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions/{id}/cancel"),
            &token,
            None,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");

    // A workflow version and a step version published on B are what the
    // next run through A starts, at once: A runs `three` just before, and a
    // node that remembered what it resolved would start the old versions.
    let b = worker.url.as_str();
    let run_three = || {
        call(
            &client,
            Method::POST,
            format!("{a}/v1/executions"),
            &token,
            Some(json!({"workflow_id": "three", "input_data": {}})),
        )
    };
    let (status, v1) = run_three().await;
    assert_eq!(
        (status, v1["workflow_version"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{v1}"
    );
    let (status, v2) = call(
        &client,
        Method::PUT,
        format!("{b}/v1/workflows/three"),
        &token,
        Some(json!({"steps": [{"id": "a", "step": "h", "input": {"x": 1}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    let put = client
        .put(format!("{b}/v1/steps/h"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_programs::ECHO).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let echo: Value = put.json().await.unwrap();
    let (status, body) = run_three().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["workflow_version"], v2["version"], "{body}");
    assert_eq!(body["steps"][0]["digest"], echo["digest"], "{body}");
    assert_eq!(body["output"], json!({"x": 1}), "{body}");

    // A token revoked through one node is refused by the other on the very
    // next request, though both have just accepted it.
    for (revoker, other) in [(a, b), (b, a)] {
        let (status, made) = call(
            &client,
            Method::POST,
            format!("{revoker}/v1/tenants/acme/tokens"),
            &token,
            Some(json!({"name": "short-lived"})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{made}");
        let spare = made["token"].as_str().unwrap();
        for url in [a, b] {
            let (status, body) =
                call(&client, Method::GET, format!("{url}/v1/steps"), spare, None).await;
            assert_eq!(status, StatusCode::OK, "{url}: {body}");
        }
        let (status, body) = call(
            &client,
            Method::DELETE,
            format!(
                "{revoker}/v1/tenants/acme/tokens/{}",
                made["token_id"].as_str().unwrap()
            ),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        for url in [other, revoker] {
            let (status, body) =
                call(&client, Method::GET, format!("{url}/v1/steps"), spare, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}: {body}");
            assert!(
                body["detail"].as_str().unwrap().contains("revoked"),
                "{body}"
            );
        }
    }

    // A tenant suspended through A: its token is refused by both nodes at
    // once, and the execution B runs for it is taken from B; unsuspended
    // through B, B takes it up again. (`h` is `echo` by now.)
    let put = client
        .put(format!("{a}/v1/steps/z"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(test_programs::HOSTILE).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let (status, body) = call(
        &client,
        Method::PUT,
        format!("{a}/v1/workflows/sleepy"),
        &token,
        Some(json!({"steps": [{"id": "nap", "step": "z", "input": {"op": "sleep"}}]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = submit(&client, a, &token, "sleepy").await;
    until(&client, a, &token, &id, |e| e["status"] == "running").await;
    assert_eq!(held_by(&client, a, "node-b").await, 1);
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{a}/v1/tenants/acme/suspend"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for url in [b, a] {
        let (status, body) = call(
            &client,
            Method::GET,
            format!("{url}/v1/steps"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{url}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains("suspended"),
            "{body}"
        );
    }
    assert_eq!(
        held_by(&client, a, "node-b").await,
        0,
        "the lease is taken from B"
    );
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{b}/v1/tenants/acme/unsuspend"),
        ADMIN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while held_by(&client, a, "node-b").await == 0 {
        assert!(
            Instant::now() < deadline,
            "B never took the execution up again"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{a}/v1/executions/{id}/cancel"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_notifications_an_api_only_node_gets_answers_without_polling() {
    api_only_node_hands_everything_to_the_worker(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_polling_carries_the_work_between_nodes() {
    api_only_node_hands_everything_to_the_worker(false).await;
}
