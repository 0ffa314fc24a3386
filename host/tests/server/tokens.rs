//! Token lifecycle: ids, names, scopes, expiry, listing, revocation, admin
//! tokens, and what a tenant may do with its own tokens and not another's.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{ADMIN, Server, assert_problem, start};

/// Creates a token through `path` with `body` and returns the response
/// body, asserting 201.
async fn new_token(s: &Server, by: &str, path: &str, body: Value) -> Value {
    let r = s.call(Method::POST, path, Some(by), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

fn secret(created: &Value) -> &str {
    created["token"].as_str().expect("the secret is shown")
}

async fn ids(s: &Server, by: &str, path: &str) -> Vec<String> {
    let r = s.call(Method::GET, path, Some(by), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t.get("token").is_none(), "a listing shows a secret: {t}");
            t["token_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_have_ids_names_expiry_and_scopes() {
    let s = start().await;
    let created = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some(ADMIN),
            Some(json!({"name": "acme"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let first_id = created.body["token_id"].as_str().unwrap().to_owned();
    assert!(first_id.starts_with("tok_"), "{first_id}");
    let tenant_id = created.body["tenant"]["id"].as_str().unwrap().to_owned();
    let owner = created.body["token"].as_str().unwrap().to_owned();

    let before = jiff::Timestamp::now();
    let read = new_token(
        &s,
        ADMIN,
        "/v1/tenants/acme/tokens",
        json!({"name": "dashboards", "scopes": ["read"], "expires_in": "1h"}),
    )
    .await;
    assert_eq!(read["name"], "dashboards");
    assert_eq!(read["scopes"], json!(["read"]));
    assert_eq!(read["tenant_id"], tenant_id.as_str());
    let expires: jiff::Timestamp = read["expires_at"].as_str().unwrap().parse().unwrap();
    let lasts = expires.duration_since(before).as_secs_f64();
    assert!((3599.0..3700.0).contains(&lasts), "expires after {lasts} s");
    // A tenant's own full token makes tokens for it, by id as by name;
    // with no body the token is full and never expires.
    let run = new_token(
        &s,
        &owner,
        &format!("/v1/tenants/{tenant_id}/tokens"),
        json!({"scopes": ["run", "read", "run"], "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(run["scopes"], json!(["read", "run"]), "sorted, once each");
    assert_eq!(run["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(run["name"], Value::Null);
    let plain = s
        .call(Method::POST, "/v1/tenants/acme/tokens", Some(&owner), None)
        .await;
    assert_eq!(plain.status, StatusCode::CREATED, "{:?}", plain.body);
    assert_eq!(plain.body["scopes"], json!(["full"]));
    assert_eq!(plain.body["expires_at"], Value::Null);

    let listed = ids(&s, ADMIN, "/v1/tenants/acme/tokens").await;
    let made = [
        first_id.clone(),
        read["token_id"].as_str().unwrap().to_owned(),
        run["token_id"].as_str().unwrap().to_owned(),
        plain.body["token_id"].as_str().unwrap().to_owned(),
    ];
    assert_eq!(listed, made, "oldest first");
    assert_eq!(ids(&s, &owner, "/v1/tenants/acme/tokens").await, made);

    // `read`: GETs only.
    let read = secret(&read);
    assert_eq!(
        s.call(Method::GET, "/v1/steps", Some(read), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(ids(&s, read, "/v1/tenants/acme/tokens").await.len(), 4);
    for (method, path, body) in [
        (
            Method::PUT,
            "/v1/workflows/wf",
            Some(json!({"steps": [{"id": "a", "step": "echo"}]})),
        ),
        (
            Method::POST,
            "/v1/executions/async",
            Some(json!({"workflow_id": "wf"})),
        ),
        (Method::PUT, "/v1/secrets/key", Some(json!({"value": "x"}))),
        (Method::POST, "/v1/tenants/acme/tokens", None),
        (
            Method::DELETE,
            &format!("/v1/tenants/acme/tokens/{first_id}"),
            None,
        ),
    ] {
        let r = s.call(method.clone(), path, Some(read), body).await;
        assert_problem(&r, StatusCode::FORBIDDEN, "has the scopes [read]");
        assert!(
            r.body["detail"].as_str().unwrap().contains(path),
            "{method} {path}: {:?}",
            r.body
        );
    }

    // `run`: reads and runs, changes nothing else.
    let run = secret(&run);
    let wf = json!({"steps": [{"id": "a", "step": "echo"}]});
    assert_eq!(
        s.push(&owner, "echo", test_programs::ECHO).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.workflow(&owner, "wf", wf.clone()).await.status,
        StatusCode::CREATED
    );
    let ran = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(run),
            Some(json!({"workflow_id": "wf", "input_data": {"n": 1}})),
        )
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{:?}", ran.body);
    assert_eq!(ran.body["status"], "succeeded");
    let id = ran.body["execution_id"].as_str().unwrap();
    assert_eq!(
        s.call(
            Method::GET,
            &format!("/v1/executions/{id}"),
            Some(run),
            None
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = s.workflow(run, "wf", wf).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "needs `full`");
    let r = s.push(run, "echo2", test_programs::ECHO).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "has the scopes [read, run]");
    let r = s
        .call(Method::POST, "/v1/tenants/acme/tokens", Some(run), None)
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "needs `full`");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_are_checked_field_by_field() {
    let s = start().await;
    let owner = s.tenant("acme").await;
    let cases = [
        (json!({"scopes": []}), "$.scopes", "at least one"),
        (
            json!({"scopes": ["read", "write"]}),
            "$.scopes[1]",
            "`write` is not a scope",
        ),
        (json!({"expires_in": "soon"}), "$.expires_in", "duration"),
        (
            json!({"expires_in": "0s"}),
            "$.expires_in",
            "longer than zero",
        ),
        (
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
            "$.expires_at",
            "not in the future",
        ),
        (
            json!({"expires_at": "next tuesday"}),
            "$.expires_at",
            "RFC 3339",
        ),
        (
            json!({"expires_in": "1h", "expires_at": "2099-01-01T00:00:00Z"}),
            "$.expires_at",
            "not both",
        ),
        (json!({"name": ""}), "$.name", "1 to 100"),
        (json!({"name": "a\u{7}b"}), "$.name", "control"),
    ];
    for (body, path, needle) in cases {
        let r = s
            .call(
                Method::POST,
                "/v1/tenants/acme/tokens",
                Some(&owner),
                Some(body.clone()),
            )
            .await;
        assert_problem(
            &r,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid token request",
        );
        assert_eq!(r.body["errors"][0]["path"], path, "{body}: {:?}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: `{message}`");
    }
    let r = s
        .call(
            Method::POST,
            "/v1/tenants/acme/tokens",
            Some(&owner),
            Some(json!({"scopes": ["read"], "ttl": 5})),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the request body does not fit",
    );
    // Nothing was created by the refused requests.
    assert_eq!(ids(&s, &owner, "/v1/tenants/acme/tokens").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_refused_at_once() {
    let s = start().await;
    let owner = s.tenant("acme").await;
    let beta = s.tenant("beta").await;
    let spare = new_token(&s, &owner, "/v1/tenants/acme/tokens", json!({})).await;
    let spare_id = spare["token_id"].as_str().unwrap();
    let spare = secret(&spare).to_owned();
    assert_eq!(
        s.call(Method::GET, "/v1/steps", Some(&spare), None)
            .await
            .status,
        StatusCode::OK,
        "used once, so a cache would know it"
    );
    // Another tenant cannot revoke it, not even through its own path.
    for path in [
        format!("/v1/tenants/acme/tokens/{spare_id}"),
        format!("/v1/tenants/beta/tokens/{spare_id}"),
    ] {
        let r = s.call(Method::DELETE, &path, Some(&beta), None).await;
        assert_problem(&r, StatusCode::NOT_FOUND, "not found");
    }
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/admin/tokens/{spare_id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "not found");
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/tokens/{spare_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = s.call(Method::GET, "/v1/steps", Some(&spare), None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "was revoked at");
    assert!(r.body["detail"].as_str().unwrap().contains(spare_id));
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/tokens/{spare_id}"),
            Some(&owner),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "already revoked");
    assert!(
        !ids(&s, &owner, "/v1/tenants/acme/tokens")
            .await
            .iter()
            .any(|id| id == spare_id)
    );
    // The admin revokes a tenant's token the same way; a token can revoke
    // itself.
    let by_admin = new_token(&s, ADMIN, "/v1/tenants/beta/tokens", json!({})).await;
    let r = s
        .call(
            Method::DELETE,
            &format!(
                "/v1/tenants/beta/tokens/{}",
                by_admin["token_id"].as_str().unwrap()
            ),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s
        .call(Method::GET, "/v1/steps", Some(secret(&by_admin)), None)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "revoked");
    let own_id = ids(&s, &beta, "/v1/tenants/beta/tokens").await[0].clone();
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/tenants/beta/tokens/{own_id}"),
            Some(&beta),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.call(Method::GET, "/v1/steps", Some(&beta), None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "revoked");
    // acme's first token was never touched.
    assert_eq!(
        s.call(Method::GET, "/v1/steps", Some(&owner), None)
            .await
            .status,
        StatusCode::OK
    );

    // Expiry: works until its time, then 401 with no one acting.
    let brief = new_token(
        &s,
        &owner,
        "/v1/tenants/acme/tokens",
        json!({"expires_in": "1s"}),
    )
    .await;
    let expires: jiff::Timestamp = brief["expires_at"].as_str().unwrap().parse().unwrap();
    let brief = secret(&brief).to_owned();
    assert_eq!(
        s.call(Method::GET, "/v1/steps", Some(&brief), None)
            .await
            .status,
        StatusCode::OK
    );
    let wait = expires.duration_since(jiff::Timestamp::now());
    tokio::time::sleep(std::time::Duration::try_from(wait).unwrap_or_default()).await;
    let r = s.call(Method::GET, "/v1/steps", Some(&brief), None).await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "expired at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_tokens_are_made_listed_scoped_and_revoked() {
    let s = start().await;
    let tenant = s.tenant("acme").await;
    let ops = new_token(
        &s,
        ADMIN,
        "/v1/admin/tokens",
        json!({"name": "ops", "expires_in": "30d"}),
    )
    .await;
    assert_eq!(ops["tenant_id"], Value::Null);
    assert_eq!(ops["scopes"], json!(["full"]));
    let ops_id = ops["token_id"].as_str().unwrap().to_owned();
    let ops = secret(&ops).to_owned();
    // It is an admin token: it makes tenants and sees their tokens.
    let r = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&ops),
            Some(json!({"name": "beta"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(ids(&s, &ops, "/v1/tenants/acme/tokens").await.len(), 1);
    let r = s.call(Method::GET, "/v1/steps", Some(&ops), None).await;
    assert_problem(&r, StatusCode::FORBIDDEN, "tenant token");

    let watcher = new_token(&s, &ops, "/v1/admin/tokens", json!({"scopes": ["read"]})).await;
    let watcher_id = watcher["token_id"].as_str().unwrap().to_owned();
    let watcher = secret(&watcher).to_owned();
    assert_eq!(
        ids(&s, ADMIN, "/v1/admin/tokens").await,
        [ops_id.clone(), watcher_id.clone()]
    );
    assert_eq!(
        s.call(Method::GET, "/v1/admin/nodes", Some(&watcher), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = s
        .call(
            Method::POST,
            "/v1/tenants",
            Some(&watcher),
            Some(json!({"name": "gamma"})),
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "has the scopes [read]");
    let r = s
        .call(
            Method::POST,
            "/v1/admin/tokens",
            Some(ADMIN),
            Some(json!({"scopes": ["run"]})),
        )
        .await;
    assert_problem(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid token request",
    );
    assert_eq!(r.body["errors"][0]["path"], "$.scopes[0]");

    // Tenant tokens get nothing here.
    for (method, path) in [
        (Method::GET, "/v1/admin/tokens".to_owned()),
        (Method::POST, "/v1/admin/tokens".to_owned()),
        (Method::DELETE, format!("/v1/admin/tokens/{ops_id}")),
    ] {
        let r = s.call(method.clone(), &path, Some(&tenant), None).await;
        assert_problem(&r, StatusCode::UNAUTHORIZED, "admin token");
    }

    let r = s
        .call(Method::DELETE, "/v1/admin/tokens/admin", Some(&ops), None)
        .await;
    assert_problem(&r, StatusCode::CONFLICT, "configuration");
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/admin/tokens/{ops_id}"),
            Some(&watcher),
            None,
        )
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "needs `full`");
    let r = s
        .call(
            Method::DELETE,
            &format!("/v1/admin/tokens/{ops_id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s
        .call(Method::GET, "/v1/admin/tokens", Some(&ops), None)
        .await;
    assert_problem(&r, StatusCode::UNAUTHORIZED, "revoked");
    assert_eq!(ids(&s, ADMIN, "/v1/admin/tokens").await, [watcher_id]);
}

/// An upload refused by the token check is answered before its body is
/// read; the server must close that connection, or the client's next request
/// on it fails (this test failed one CI run with `IncompleteMessage`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_closes_its_connection_and_the_next_request_works() {
    let s = start().await;
    let owner = s.tenant("acme").await;
    let read = new_token(
        &s,
        &owner,
        "/v1/tenants/acme/tokens",
        json!({"scopes": ["read"]}),
    )
    .await;
    let read = secret(&read);
    for round in 0..20 {
        let r = s.push(read, "echo", test_programs::ECHO).await;
        assert_problem(&r, StatusCode::FORBIDDEN, "needs `full`");
        assert_eq!(r.headers["connection"], "close", "round {round}");
        let r = s.call(Method::GET, "/v1/steps", Some(read), None).await;
        assert_eq!(r.status, StatusCode::OK, "round {round}: {:?}", r.body);
    }
    // A body read to its end keeps the connection.
    let ok = s.push(&owner, "echo", test_programs::ECHO).await;
    assert!(ok.status.is_success(), "{:?}", ok.body);
    assert!(ok.headers.get("connection").is_none(), "{:?}", ok.headers);
    let bad = s
        .call(
            Method::POST,
            "/v1/tenants/acme/tokens",
            Some(&owner),
            Some(json!({"scopes": []})),
        )
        .await;
    assert_problem(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid token request",
    );
    assert!(bad.headers.get("connection").is_none(), "{:?}", bad.headers);
}
