//! Tenants, tokens, steps, workflows, health, the API description and
//! tenant isolation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN, assert_problem, resp, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_openapi_and_reference_page() {
    let s = start().await;
    assert_eq!(
        s.call(Method::GET, "/health/live", None, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.call(Method::GET, "/health/ready", None, None)
            .await
            .status,
        StatusCode::OK
    );
    let doc = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/executions",
        "/v1/executions/async",
        "/v1/executions/{execution_id}/cancel",
        "/v1/steps/{name}",
        "/v1/workflows/{workflow_id}",
        "/v1/tenants",
    ] {
        assert!(
            doc.body["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    // Operation ids are unique; every error response is problem+json; a
    // secured operation documents 401, one with a body 400, 413 and 415.
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "{method} {path}: `{id}` twice");
            let responses = op["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.as_str() >= "400" {
                    let content = response["content"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{method} {path} {status}: no body"));
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        ["application/problem+json"],
                        "{method} {path} {status}"
                    );
                }
            }
            if op.get("security").is_some() {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413", "415"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    assert!(
        ids.contains("executions_get") && ids.contains("workflows_get"),
        "{ids:?}"
    );
    let page = s
        .client
        .get(format!("{}/docs/", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger"), "{html}");
    let unknown = s.call(Method::GET, "/nope", None, None).await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "no such route");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_checked() {
    let s = start().await;
    let r = s.call(Method::GET, "/v1/steps", None, None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "Authorization");
    assert!(
        r.headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = s
        .call(Method::GET, "/v1/steps", Some("sh_wrong"), None)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unknown token");
    let r = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some("sh_wrong"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "unknown token");
    let t = s.tenant("acme").await;
    let r = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&t),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "needs an admin token");
    let r = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_problem(&r, StatusCode::CONFLICT, "already exists");
    let r = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"name": "bad name!"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid tenant");
    assert_eq!(r.body["errors"][0]["path"], "$.name");
    assert_eq!(
        s.call(Method::GET, "/v1/steps", Some(&t), None)
            .await
            .status,
        StatusCode::OK
    );
    let second = s
        .call(Method::POST, "/v1/tenants/acme/tokens", Some(ADMIN), None)
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    let t2 = second.body["token"].as_str().unwrap();
    assert_ne!(t2, t);
    assert_eq!(
        s.call(Method::GET, "/v1/steps", Some(t2), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_validated_versioned_and_deleted() {
    let s = start().await;
    let t = s.tenant("acme").await;
    let r = s.push(&t, "echo", test_programs::ECHO).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert!(r.body["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(r.body["size_bytes"].as_u64().unwrap() > 1000);
    assert!(
        r.body["imports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().starts_with("wasi:cli/"))
    );
    assert!(r.body["compile_ms"].is_u64());
    assert_eq!(
        s.push(&t, "echo", test_programs::ECHO).await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.push(&t, "echo", test_programs::HOSTILE).await.status,
        StatusCode::CREATED
    );
    let step = s.call(Method::GET, "/v1/steps/echo", Some(&t), None).await;
    assert_eq!(step.body["versions"].as_array().unwrap().len(), 2);
    let junk = s
        .client
        .put(format!("{}/v1/steps/junk", s.url))
        .bearer_auth(&t)
        .body("not wasm")
        .send()
        .await
        .unwrap();
    assert_problem(
        &resp(junk).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "magic number",
    );
    let wrong = s.push(&t, "wrong", test_programs::WRONG_WORLD).await;
    assert_problem(&wrong, StatusCode::UNPROCESSABLE_ENTITY, "wrong type");
    // A component past the shape bounds is refused before it is compiled.
    let funcs: String = (0..100_001).map(|_| "(func)").collect();
    let many = wat::parse_str(format!("(component (core module {funcs}))")).unwrap();
    let r = s
        .client
        .put(format!("{}/v1/steps/many", s.url))
        .bearer_auth(&t)
        .body(many)
        .send()
        .await
        .unwrap();
    assert_problem(
        &resp(r).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the host compiles at most 100000 per component",
    );
    let big = vec![0u8; 65 << 20];
    let r = s
        .client
        .put(format!("{}/v1/steps/big", s.url))
        .bearer_auth(&t)
        .body(big)
        .send()
        .await
        .unwrap();
    let r = resp(r).await;
    assert_problem(&r, StatusCode::PAYLOAD_TOO_LARGE, "larger");
    assert_eq!(r.headers["connection"], "close");
    let list = s.call(Method::GET, "/v1/steps", Some(&t), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.call(Method::DELETE, "/v1/steps/echo", Some(&t), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_problem(
        &s.call(Method::GET, "/v1/steps/echo", Some(&t), None).await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    assert_problem(
        &s.call(Method::DELETE, "/v1/steps/echo", Some(&t), None)
            .await,
        StatusCode::NOT_FOUND,
        "not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_versioned_and_validated() {
    let s = start().await;
    let t = s.tenant("acme").await;
    s.push(&t, "echo", test_programs::ECHO).await;
    let def = json!({"steps": [{"id": "a", "step": "echo"}]});
    let r = s.workflow(&t, "wf", def.clone()).await;
    assert_eq!(
        (r.status, r.body["version"].clone()),
        (StatusCode::CREATED, json!(1))
    );
    let r = s.workflow(&t, "wf", def).await;
    assert_eq!(
        (r.status, r.body["version"].clone()),
        (StatusCode::OK, json!(1))
    );
    let yaml = "description: two\nsteps:\n  - id: a\n    step: echo\n  - id: b\n    step: echo\n";
    let r = s
        .client
        .put(format!("{}/v1/workflows/wf", s.url))
        .bearer_auth(&t)
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    let r = resp(r).await;
    assert_eq!(
        (r.status, r.body["version"].clone()),
        (StatusCode::CREATED, json!(2))
    );
    let v1 = s
        .call(Method::GET, "/v1/workflows/wf?version=1", Some(&t), None)
        .await;
    assert_eq!(v1.body["definition"]["steps"].as_array().unwrap().len(), 1);
    let latest = s
        .call(Method::GET, "/v1/workflows/wf", Some(&t), None)
        .await;
    assert_eq!(latest.body["version"], 2);
    let bad = s
        .workflow(
            &t,
            "wf",
            json!({"steps": [{"id": "a", "step": "nope"}, {"id": "a"}], "extra": 1}),
        )
        .await;
    assert_problem(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let paths: Vec<_> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["$.extra", "$.steps[1].step"]);
    let bad = s
        .workflow(
            &t,
            "wf",
            json!({"steps": [{"id": "a", "step": "nope"}, {"id": "a", "step": "echo"}]}),
        )
        .await;
    let paths: Vec<_> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths, ["$.steps[0].step", "$.steps[1].id"]);
    assert_problem(
        &s.call(Method::GET, "/v1/workflows/none", Some(&t), None)
            .await,
        StatusCode::NOT_FOUND,
        "not found",
    );
    assert_problem(
        &s.call(Method::GET, "/v1/workflows/wf?version=x", Some(&t), None)
            .await,
        StatusCode::BAD_REQUEST,
        "version",
    );
    let list = s.call(Method::GET, "/v1/workflows", Some(&t), None).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_ids_are_not_found_on_every_endpoint() {
    let s = start().await;
    let a = s.fixture("alpha").await;
    let b = s.tenant("beta").await;
    let exec = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&a),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
    let id = exec.body["execution_id"].as_str().unwrap();
    let alpha_tokens = s
        .call(Method::GET, "/v1/tenants/alpha/tokens", Some(ADMIN), None)
        .await;
    let alpha_token = alpha_tokens.body["items"][0]["token_id"].as_str().unwrap();
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/v1/tenants/alpha".into(), None),
        (Method::GET, "/v1/tenants/alpha/tokens".into(), None),
        (
            Method::POST,
            "/v1/tenants/alpha/tokens".into(),
            Some(json!({})),
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/alpha/tokens/{alpha_token}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/beta/tokens/{alpha_token}"),
            None,
        ),
        (Method::GET, "/v1/steps/echo".into(), None),
        (Method::DELETE, "/v1/steps/echo".into(), None),
        (Method::GET, "/v1/workflows/three".into(), None),
        (Method::GET, "/v1/workflows/three?version=1".into(), None),
        (Method::GET, format!("/v1/executions/{id}"), None),
        (
            Method::GET,
            format!("/v1/executions/{id}?wait_for_seconds=1"),
            None,
        ),
        (Method::POST, format!("/v1/executions/{id}/cancel"), None),
        (
            Method::POST,
            "/v1/executions".into(),
            Some(json!({"workflow_id": "three"})),
        ),
        (
            Method::POST,
            "/v1/executions/async".into(),
            Some(json!({"workflow_id": "three"})),
        ),
        (Method::GET, "/v1/audit?tenant=alpha".into(), None),
    ];
    for (method, path, body) in cases {
        let r = s.call(method.clone(), &path, Some(&b), body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {:?}",
            r.body
        );
        assert_eq!(r.content_type, "application/problem+json");
    }
    for path in ["/v1/steps", "/v1/workflows", "/v1/executions"] {
        let r = s.call(Method::GET, path, Some(&b), None).await;
        assert_eq!(r.body["items"], json!([]), "{path}");
    }
    // Beta's audit log holds its own creation, nothing of alpha's.
    let r = s.call(Method::GET, "/v1/audit", Some(&b), None).await;
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["tenant.create"], "{:?}", r.body);
    // What only the admin may do to a tenant, B cannot do to A (or itself).
    for (method, path) in [
        (Method::GET, "/v1/tenants"),
        (Method::POST, "/v1/tenants/alpha/suspend"),
        (Method::POST, "/v1/tenants/alpha/unsuspend"),
        (Method::DELETE, "/v1/tenants/alpha"),
        (Method::POST, "/v1/tenants/beta/suspend"),
        (Method::DELETE, "/v1/tenants/beta"),
    ] {
        let r = s.call(method.clone(), path, Some(&b), None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "needs an admin token");
    }
    let alpha = s
        .call(Method::GET, "/v1/tenants/alpha", Some(&a), None)
        .await;
    assert_eq!(alpha.body["suspended_at"], Value::Null, "{:?}", alpha.body);
    // The workflow that B defines under the same id is B's own.
    let r = s
        .workflow(&b, "three", json!({"steps": [{"id": "a", "step": "echo"}]}))
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    // A's data is untouched.
    assert_eq!(
        s.call(Method::GET, "/v1/steps/echo", Some(&a), None)
            .await
            .status,
        StatusCode::OK
    );
}
