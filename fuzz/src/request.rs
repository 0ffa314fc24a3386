//! The `request` target: arbitrary HTTP requests through the whole API
//! router, in process, against a real engine on a SQLite store in a
//! temporary directory.
//!
//! The input is text:
//!
//! ```text
//! PUT /v1/workflows/wf?x=1
//! content-type: application/yaml
//!
//! steps: [{id: a, step: echo}]
//! ```
//!
//! a request line (method and target), header lines, an empty line and
//! the body. Without an `authorization` header the request carries the
//! fuzz tenant's token; `authorization: tenant` and `authorization: admin`
//! stand for the tenant's and the admin token, any other value is sent as
//! it is.
//!
//! Every answer must be below 500. Every 4xx must be
//! `application/problem+json` whose `status` is the response's and which
//! has a `title` and a `detail`; every JSON answer must parse. An answer
//! that takes longer than 20 s is a hang.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use serde_json::Value;
use stephost::config::{Config, Secret};
use tower::ServiceExt;

/// The admin token of the target's server.
pub const ADMIN_TOKEN: &str = "sht_admin_fuzz_0123456789abcdef";

struct Server {
    router: axum::Router,
    tenant_token: String,
    /// Holds the data directory for as long as the process runs.
    _dir: tempfile::TempDir,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = Config {
        data_dir: dir.path().to_owned(),
        admin_token: Some(Secret::new(ADMIN_TOKEN)),
        workers: 1,
        // A synchronous run or a long poll answers within two seconds.
        default_wait_seconds: 1,
        max_wait_seconds: 2,
        ..Config::default()
    };
    let app = super::runtime()
        .block_on(stephost::app(
            &config,
            Arc::new(stephost::engine::SystemClock),
        ))
        .expect("the server starts");
    let (status, body) = call(
        &app.router,
        Request::post("/v1/tenants")
            .header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name": "fuzz"}"#))
            .expect("a request"),
    );
    assert_eq!(status, StatusCode::CREATED, "creating the fuzz tenant");
    let created: Value = serde_json::from_slice(&body).expect("a JSON answer");
    let tenant_token = created["token"].as_str().expect("a token").to_owned();
    Server {
        router: app.router,
        tenant_token,
        _dir: dir,
    }
});

fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let (status, _, body) = call_full(router, request);
    (status, body)
}

fn call_full(
    router: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, Option<HeaderValue>, Vec<u8>) {
    let what = format!("{} {}", request.method(), request.uri());
    super::runtime().block_on(async {
        let answer = tokio::time::timeout(Duration::from_secs(20), async {
            let response = router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
            let body = axum::body::to_bytes(response.into_body(), 64 << 20)
                .await
                .expect("the body is read");
            (status, content_type, body.to_vec())
        })
        .await;
        answer.unwrap_or_else(|_| panic!("{what}: no answer within 20 s"))
    })
}

/// The server's OpenAPI document, as `GET /openapi.json` serves it (the
/// seed writer makes one request per operation from it).
pub fn openapi() -> Value {
    let (status, body) = call(
        &SERVER.router,
        Request::get("/openapi.json")
            .body(Body::empty())
            .expect("a request"),
    );
    assert_eq!(status, StatusCode::OK, "GET /openapi.json");
    serde_json::from_slice(&body).expect("the document is JSON")
}

/// A request read from the input's text, or `None` when the text is not
/// one (an invalid method, target or header is not the server's business:
/// hyper refuses those before routing).
fn parse(text: &str, tenant_token: &str) -> Option<Request<Body>> {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let (method, target) = lines.next()?.trim().split_once(' ')?;
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let target = target.trim();
    if !target.starts_with('/') {
        return None;
    }
    let mut builder = Request::builder().method(method).uri(target);
    let mut authorized = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
        let value = value.trim();
        let value = if name == header::AUTHORIZATION {
            authorized = true;
            match value {
                "tenant" => format!("Bearer {tenant_token}"),
                "admin" => format!("Bearer {ADMIN_TOKEN}"),
                other => other.to_owned(),
            }
        } else {
            value.to_owned()
        };
        builder = builder.header(name, HeaderValue::from_str(&value).ok()?);
    }
    if !authorized {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {tenant_token}"));
    }
    builder.body(Body::from(body.to_owned())).ok()
}

/// The `request` target (see the module's documentation).
pub fn request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let server = &*SERVER;
    let Some(request) = parse(text, &server.tenant_token) else {
        return;
    };
    let what = format!("{} {}", request.method(), request.uri());
    let head = request.method() == Method::HEAD;
    let (status, content_type, body) = call_full(&server.router, request);
    let shown = String::from_utf8_lossy(&body[..body.len().min(2_000)]).into_owned();
    assert!(!status.is_server_error(), "{what}: {status} {shown}");
    let content_type = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if head {
        return;
    }
    if status.is_client_error() {
        assert!(
            content_type.starts_with("application/problem+json"),
            "{what}: {status} answered with content type `{content_type}`: {shown}"
        );
        let problem: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("{what}: {status} with a body that is not JSON ({e}): {shown}")
        });
        assert_eq!(
            problem["status"].as_u64(),
            Some(u64::from(status.as_u16())),
            "{what}: the problem's status: {shown}"
        );
        assert!(problem["title"].is_string(), "{what}: no title: {shown}");
        assert!(problem["detail"].is_string(), "{what}: no detail: {shown}");
    } else if content_type.contains("json") && !body.is_empty() {
        serde_json::from_slice::<Value>(&body).unwrap_or_else(|e| {
            panic!("{what}: {status} with a JSON body that does not parse ({e}): {shown}")
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_format_reads_method_target_headers_and_body() {
        let r = parse(
            "PUT /v1/workflows/wf?x=1\ncontent-type: application/yaml\n\nsteps: []\n",
            "tok",
        )
        .expect("a request");
        assert_eq!(r.method(), Method::PUT);
        assert_eq!(r.uri(), "/v1/workflows/wf?x=1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/yaml");
        assert_eq!(r.headers()[header::AUTHORIZATION], "Bearer tok");
        let admin = parse("GET /v1/tenants\nauthorization: admin\n", "tok").expect("a request");
        assert_eq!(
            admin.headers()[header::AUTHORIZATION],
            format!("Bearer {ADMIN_TOKEN}").as_str()
        );
        assert!(parse("GET no-slash", "tok").is_none());
        assert!(parse("BAD METHOD /", "tok").is_none());
    }
}
