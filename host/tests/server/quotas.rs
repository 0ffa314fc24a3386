//! Quotas end to end: the admin sets a tenant's limits and a tenant reads
//! its own with its usage; count and size quotas refuse with 409 naming
//! the quota; submissions over a tenant's rate, or the server's, get 429
//! with a computed `Retry-After` that a client can follow to succeed, and
//! the IETF `RateLimit-Policy` / `RateLimit` fields.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN, Resp, Server, assert_problem, start, start_with};

async fn set(s: &Server, tenant: &str, quotas: Value) -> Resp {
    s.call(
        Method::PUT,
        &format!("/v1/tenants/{tenant}/quotas"),
        Some(ADMIN),
        Some(quotas),
    )
    .await
}

async fn submit(s: &Server, t: &str) -> Resp {
    s.call(
        Method::POST,
        "/v1/executions/async",
        Some(t),
        Some(json!({"workflow_id": "three", "input_data": {}})),
    )
    .await
}

fn field(r: &Resp, name: &str) -> String {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_sets_quotas_a_tenant_reads_them_and_counts_and_sizes_are_enforced() {
    let s = start().await;
    let t = s.tenant("acme").await;
    let r = s
        .call(Method::GET, "/v1/tenants/acme/quotas", Some(ADMIN), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["limits"]["max_steps"], 1000, "the server's default");
    assert_eq!(r.body["overrides"]["max_steps"], Value::Null);
    assert_eq!(r.body["limits"]["submissions_per_second"], Value::Null);
    assert_eq!(r.body["usage"]["steps"], 0);
    for (body, path) in [
        (
            json!({"submissions_per_second": 0}),
            "$.submissions_per_second",
        ),
        (
            json!({"submissions_per_second": 1e-300}),
            "$.submissions_per_second",
        ),
        (
            json!({"submissions_per_second": 1e300}),
            "$.submissions_per_second",
        ),
        (json!({"submissions_burst": 0}), "$.submissions_burst"),
    ] {
        let r = set(&s, "acme", body).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid quotas");
        assert_eq!(r.body["errors"][0]["path"], path, "{:?}", r.body);
    }
    for body in [json!({"max_steps": -1}), json!({"max_stepz": 1})] {
        let r = set(&s, "acme", body).await;
        assert!(r.status.is_client_error(), "{:?}", r.body);
        assert_eq!(r.content_type, "application/problem+json");
    }
    assert_problem(
        &s.call(
            Method::PUT,
            "/v1/tenants/acme/quotas",
            Some(&t),
            Some(json!({})),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "needs an admin token",
    );
    assert_problem(
        &set(&s, "nobody", json!({})).await,
        StatusCode::NOT_FOUND,
        "not found",
    );

    let echo = std::fs::metadata(test_programs::ECHO).unwrap().len();
    let hostile = std::fs::metadata(test_programs::HOSTILE).unwrap().len();
    let r = set(
        &s,
        "acme",
        json!({"max_steps": 1, "max_workflows": 1, "max_secrets": 1,
               "max_component_bytes": echo + hostile - 1}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["limits"]["max_steps"], 1);
    assert_eq!(r.body["overrides"]["max_workflows"], 1);
    assert_eq!(r.body["limits"]["max_component_bytes"], echo + hostile - 1);

    // Steps: one name; the same bytes again are free; new bytes under the
    // same name count against the bytes.
    assert_eq!(
        s.push(&t, "echo", test_programs::ECHO).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.push(&t, "echo", test_programs::ECHO).await.status,
        StatusCode::OK
    );
    let r = s.push(&t, "hostile", test_programs::HOSTILE).await;
    assert_problem(&r, StatusCode::CONFLICT, "quota `max_steps`");
    let r = s.push(&t, "echo", test_programs::HOSTILE).await;
    assert_problem(&r, StatusCode::CONFLICT, "quota `max_component_bytes`");
    // Workflows: a new version of one is not a new one; a deleted one
    // frees its place.
    let def = |n: u64| json!({"steps": [{"id": "a", "step": "echo", "input": {"n": n}}]});
    assert_eq!(
        s.workflow(&t, "w1", def(1)).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.workflow(&t, "w1", def(2)).await.status,
        StatusCode::CREATED
    );
    assert_problem(
        &s.workflow(&t, "w2", def(1)).await,
        StatusCode::CONFLICT,
        "quota `max_workflows`",
    );
    let r = s
        .call(Method::DELETE, "/v1/workflows/w1", Some(&t), None)
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
    assert_eq!(
        s.workflow(&t, "w2", def(1)).await.status,
        StatusCode::CREATED
    );
    // Secrets.
    let secret = |name: &'static str| {
        let (s, t) = (&s, &t);
        async move {
            let path = format!("/v1/secrets/{name}");
            s.call(Method::PUT, &path, Some(t), Some(json!({"value": "v"})))
                .await
        }
    };
    assert_eq!(secret("one").await.status, StatusCode::CREATED);
    assert_eq!(secret("one").await.status, StatusCode::OK);
    assert_problem(
        &secret("two").await,
        StatusCode::CONFLICT,
        "quota `max_secrets`",
    );

    // The tenant sees its limits and usage.
    let own = s.call(Method::GET, "/v1/quotas", Some(&t), None).await;
    assert_eq!(own.status, StatusCode::OK, "{:?}", own.body);
    assert_eq!(own.body["limits"]["max_steps"], 1);
    assert_eq!(
        own.body["usage"],
        json!({"steps": 1, "workflows": 1, "component_bytes": echo, "secrets": 1,
               "queued_executions": 0, "running_executions": 0})
    );
    assert_problem(
        &s.call(Method::GET, "/v1/quotas", Some(ADMIN), None).await,
        StatusCode::FORBIDDEN,
        "admin token has no quotas",
    );
    // Back to the defaults.
    let r = set(&s, "acme", json!({})).await;
    assert_eq!(r.body["limits"]["max_steps"], 1000, "{:?}", r.body);
    assert_eq!(
        s.push(&t, "hostile", test_programs::HOSTILE).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_rate_a_tenant_gets_429_with_a_retry_after_that_works() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let quiet = s.fixture("quiet").await;
    // One submission every 5 s, two at once: slow enough that the test's
    // own pace does not refill the bucket between requests.
    let r = set(
        &s,
        "acme",
        json!({"submissions_per_second": 0.2, "submissions_burst": 2}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // `"tenant";r=R;t=T`: R left, full again in T seconds.
    let state = |r: &Resp| -> (u64, u64) {
        let v = field(r, "ratelimit");
        let rest = v
            .strip_prefix("\"tenant\";r=")
            .unwrap_or_else(|| panic!("{v}"));
        let (left, reset) = rest.split_once(";t=").unwrap();
        (left.parse().unwrap(), reset.parse().unwrap())
    };

    let first = submit(&s, &t).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    assert_eq!(field(&first, "ratelimit-policy"), "\"tenant\";q=2;w=10");
    let (left, reset) = state(&first);
    assert_eq!(left, 1);
    assert!((1..=5).contains(&reset), "{reset}");
    // A sync run draws on the same bucket.
    let second = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": {}})),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    let (left, reset) = state(&second);
    assert_eq!(left, 0);
    assert!((6..=10).contains(&reset), "{reset}");
    let refused = submit(&s, &t).await;
    assert_problem(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "submissions_per_second",
    );
    let retry: u64 = field(&refused, "retry-after").parse().unwrap();
    assert!(
        (1..=5).contains(&retry),
        "the next cell is due within 5 s: {retry}"
    );
    assert_eq!(state(&refused), (0, retry));
    assert_eq!(field(&refused, "ratelimit-policy"), "\"tenant\";q=2;w=10");
    // Reads are not submissions.
    let r = s.call(Method::GET, "/v1/executions", Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Another tenant is not limited by acme's rate.
    let other = submit(&s, &quiet).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{:?}", other.body);
    assert!(
        other.headers.get("ratelimit").is_none(),
        "{:?}",
        other.headers
    );
    // Following Retry-After works.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let after = submit(&s, &t).await;
    assert_eq!(after.status, StatusCode::ACCEPTED, "{:?}", after.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_description_names_the_quota_answers() {
    let s = start().await;
    let api = s.call(Method::GET, "/openapi.json", None, None).await.body;
    for (path, method) in [
        ("/v1/executions", "post"),
        ("/v1/executions/async", "post"),
        ("/v1/schedules/{schedule_id}/trigger", "post"),
    ] {
        let too_many = &api["paths"][path][method]["responses"]["429"];
        for name in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            assert!(too_many["headers"][name].is_object(), "{path}: {too_many}");
        }
    }
    for path in [
        "/v1/steps/{name}",
        "/v1/workflows/{workflow_id}",
        "/v1/secrets/{name}",
    ] {
        let conflict = &api["paths"][path]["put"]["responses"]["409"];
        assert!(
            conflict["description"]
                .as_str()
                .unwrap_or_default()
                .contains("quota"),
            "{path}: {conflict}"
        );
    }
    for path in ["/v1/quotas", "/v1/tenants/{tenant}/quotas"] {
        assert!(api["paths"][path]["get"].is_object(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_s_own_rate_bounds_every_tenant_together() {
    let s = start_with(
        std::sync::Arc::new(stephost::engine::SystemClock),
        json!({"global-submissions-per-second": 0.5, "global-submissions-burst": 1}),
        None,
    )
    .await;
    let a = s.fixture("a").await;
    let b = s.fixture("b").await;
    let ok = submit(&s, &a).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{:?}", ok.body);
    assert_eq!(field(&ok, "ratelimit-policy"), "\"server\";q=1;w=2");
    let refused = submit(&s, &b).await;
    assert_problem(
        &refused,
        StatusCode::TOO_MANY_REQUESTS,
        "server's submission rate",
    );
    let retry: u64 = field(&refused, "retry-after").parse().unwrap();
    assert!(
        (1..=2).contains(&retry),
        "half a submission per second: {retry}"
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let after = submit(&s, &b).await;
    assert_eq!(after.status, StatusCode::ACCEPTED, "{:?}", after.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_s_step_ceilings_lower_the_server_s() {
    let s = start().await;
    let t = s.fixture("acme").await;
    let r = set(
        &s,
        "acme",
        json!({"max_step_fuel": 1_000_000, "max_step_memory_bytes": 33_554_432,
               "max_step_timeout_ms": 300}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for (limits, path, quota) in [
        (
            json!({"fuel": 2_000_000}),
            "$.steps[0].limits.fuel",
            "max_step_fuel",
        ),
        (
            json!({"memory": "64MiB"}),
            "$.steps[0].limits.memory",
            "max_step_memory_bytes",
        ),
        (
            json!({"timeout": "1s"}),
            "$.steps[0].limits.timeout",
            "max_step_timeout_ms",
        ),
    ] {
        let def = json!({"steps": [{"id": "w", "step": "hostile", "limits": limits}]});
        let r = s.workflow(&t, "over", def).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
        assert_eq!(r.body["errors"][0]["path"], path, "{:?}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(quota), "{message}");
    }
    // Within the ceilings a step may still lower them.
    let def = json!({"steps": [{"id": "w", "step": "hostile", "limits": {"fuel": 500_000}}]});
    assert_eq!(
        s.workflow(&t, "under", def).await.status,
        StatusCode::CREATED
    );
    // Steps that ask for nothing run under the tenant's ceilings, not the
    // server's defaults.
    let run = |workflow: &'static str, input: Value| {
        let (s, t) = (&s, &t);
        async move {
            s.call(
                Method::POST,
                "/v1/executions",
                Some(t),
                Some(json!({"workflow_id": workflow, "input_data": input})),
            )
            .await
        }
    };
    let spin = json!({"steps": [{"id": "w", "step": "hostile", "input": {"op": "loop"}}]});
    assert_eq!(
        s.workflow(&t, "spin", spin).await.status,
        StatusCode::CREATED
    );
    let r = run("spin", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let attempt = &r.body["steps"][0]["attempts"][0];
    assert_eq!(attempt["outcome"], "fuel_exhausted", "{attempt}");
    assert_eq!(attempt["fuel_consumed"], 1_000_000, "{attempt}");
    let nap = json!({"steps": [{"id": "w", "step": "hostile", "input": {"op": "nap", "n": 5000}}]});
    assert_eq!(s.workflow(&t, "nap", nap).await.status, StatusCode::CREATED);
    let r = run("nap", json!({})).await;
    let attempt = &r.body["steps"][0]["attempts"][0];
    assert_eq!(attempt["outcome"], "timed_out", "{attempt}");
    assert!(
        attempt["duration_ms"].as_f64().unwrap() < 2000.0,
        "{attempt}"
    );
    let hog =
        json!({"steps": [{"id": "w", "step": "hostile", "input": {"op": "hold_memory", "n": 64}}]});
    assert_eq!(s.workflow(&t, "hog", hog).await.status, StatusCode::CREATED);
    let r = run("hog", json!({})).await;
    let attempt = &r.body["steps"][0]["attempts"][0];
    assert_eq!(attempt["outcome"], "memory_limit", "{attempt}");
    // Zero is not a ceiling.
    let r = set(&s, "acme", json!({"max_step_fuel": 0})).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid quotas");
    assert_eq!(r.body["errors"][0]["path"], "$.max_step_fuel");
}
