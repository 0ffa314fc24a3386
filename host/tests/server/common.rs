//! The test server and HTTP helpers shared by the suites.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token";

pub struct Server {
    pub url: String,
    pub client: Client,
    dir: std::sync::Arc<tempfile::TempDir>,
    /// The PostgreSQL schema of its data, when the suite runs there.
    schema: Option<std::sync::Arc<crate::pg_support::Schema>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start() -> Server {
    start_with_clock(std::sync::Arc::new(stephost::engine::SystemClock)).await
}

/// A server whose engine reads time from `clock`.
pub async fn start_with_clock(clock: std::sync::Arc<dyn stephost::engine::Clock>) -> Server {
    start_with(clock, json!({}), None).await
}

/// A server with `config` over the test defaults, on the data directory of
/// `after` when given (a restart), else on a new one.
pub async fn start_with(
    clock: std::sync::Arc<dyn stephost::engine::Clock>,
    config: Value,
    after: Option<Server>,
) -> Server {
    let (dir, schema) = match after {
        Some(mut old) => {
            let kept = (old.dir.clone(), old.schema.clone());
            old.shutdown().await;
            kept
        }
        None => (
            std::sync::Arc::new(tempfile::tempdir().unwrap()),
            crate::pg_support::Schema::for_run().map(std::sync::Arc::new),
        ),
    };
    let mut settings = json!({
        "listen": "127.0.0.1:0",
        "data-dir": dir.path(),
        "admin-token": ADMIN,
        "workers": 2,
        // Restarts in the suites wait for running attempts this long.
        "shutdown-grace": "2s",
    });
    if let Some(schema) = &schema {
        for (k, v) in schema.settings() {
            settings[k] = v.into();
        }
    }
    for (k, v) in config.as_object().unwrap() {
        settings[k] = v.clone();
    }
    let config: stephost::config::Config = serde_json::from_value(settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(async move {
        stephost::run_with_clock(
            config,
            listener,
            async {
                let _ = rx.await;
            },
            clock,
        )
        .await
        .unwrap();
    });
    Server {
        url,
        client: Client::new(),
        dir,
        schema,
        stop: Some(tx),
        stopped: Some(stopped),
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Server {
    /// Stops the server and waits until it has stopped serving.
    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            stopped.await.unwrap();
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        resp(req.send().await.unwrap()).await
    }

    pub async fn tenant(&self, name: &str) -> String {
        self.created_tenant(name).await.1
    }

    /// Creates a tenant through the API: its id, its token and the
    /// token's id.
    pub async fn created_tenant(&self, name: &str) -> (String, String, String) {
        let r = self
            .call(
                Method::POST,
                "/v1/tenants",
                Some(ADMIN),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (
            r.body["tenant"]["id"].as_str().unwrap().to_owned(),
            r.body["token"].as_str().unwrap().to_owned(),
            r.body["token_id"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn push(&self, token: &str, name: &str, path: &str) -> Resp {
        let bytes = std::fs::read(path).unwrap();
        let r = self
            .client
            .put(format!("{}/v1/steps/{name}", self.url))
            .bearer_auth(token)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        resp(r).await
    }

    pub async fn workflow(&self, token: &str, id: &str, def: Value) -> Resp {
        self.call(
            Method::PUT,
            &format!("/v1/workflows/{id}"),
            Some(token),
            Some(def),
        )
        .await
    }

    /// POSTs `body` to `path` with an `Idempotency-Key` and, when given,
    /// an `X-On-Conflict` header.
    pub async fn post_keyed(
        &self,
        token: &str,
        path: &str,
        key: &str,
        on_conflict: Option<&str>,
        body: &Value,
    ) -> Resp {
        let mut req = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body);
        if let Some(mode) = on_conflict {
            req = req.header("x-on-conflict", mode);
        }
        resp(req.send().await.unwrap()).await
    }

    /// A tenant with `echo` and `hostile` steps and workflows `three`
    /// (echo x3), `fail` and `slow` (echo, then a guest that sleeps).
    pub async fn fixture(&self, name: &str) -> String {
        let t = self.tenant(name).await;
        assert_eq!(
            self.push(&t, "echo", test_programs::ECHO).await.status,
            StatusCode::CREATED
        );
        assert_eq!(
            self.push(&t, "hostile", test_programs::HOSTILE)
                .await
                .status,
            StatusCode::CREATED
        );
        let three = json!({"steps": [
            {"id": "a", "step": "echo"}, {"id": "b", "step": "echo"}, {"id": "c", "step": "echo"}]});
        assert_eq!(
            self.workflow(&t, "three", three).await.status,
            StatusCode::CREATED
        );
        let fail = json!({"steps": [{"id": "boom", "step": "hostile", "input": {"op": "fatal", "text": "nope"}}]});
        assert_eq!(
            self.workflow(&t, "fail", fail).await.status,
            StatusCode::CREATED
        );
        let slow = json!({"steps": [
            {"id": "first", "step": "echo"},
            {"id": "nap", "step": "hostile", "input": {"op": "sleep"}}]});
        assert_eq!(
            self.workflow(&t, "slow", slow).await.status,
            StatusCode::CREATED
        );
        t
    }
}

pub async fn resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Resp {
        status,
        content_type,
        headers,
        body,
    }
}

pub fn assert_problem(r: &Resp, status: StatusCode, needle: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.content_type, "application/problem+json", "{:?}", r.body);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(needle), "`{detail}` lacks `{needle}`");
    assert_eq!(r.body["status"], status.as_u16());
}

/// A manual clock at 2030-01-01T00:00:00Z, for tests of retries and waits.
pub fn manual_clock() -> std::sync::Arc<stephost::engine::ManualClock> {
    std::sync::Arc::new(stephost::engine::ManualClock::new(
        "2030-01-01T00:00:00Z".parse().unwrap(),
    ))
}

/// Stores a workflow definition, expecting 201.
pub async fn apply(s: &Server, t: &str, id: &str, def: Value) {
    let r = s.workflow(t, id, def).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
}

/// Starts `workflow` asynchronously with `input`; returns the execution id.
pub async fn submit(s: &Server, t: &str, workflow: &str, input: Value) -> String {
    let r = s
        .call(
            Method::POST,
            "/v1/executions/async",
            Some(t),
            Some(json!({"workflow_id": workflow, "input_data": input})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    r.body["execution_id"].as_str().unwrap().to_owned()
}

/// An execution's record, expecting 200.
pub async fn get(s: &Server, t: &str, id: &str) -> Value {
    let r = s
        .call(Method::GET, &format!("/v1/executions/{id}"), Some(t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// Polls an execution until `done` holds (at most 30 s of real time).
pub async fn wait_for(s: &Server, t: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let e = get(s, t, id).await;
        if done(&e) {
            return e;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The step with workflow id `id` in an execution record.
pub fn step<'a>(exec: &'a Value, id: &str) -> &'a Value {
    exec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {exec}"))
}

/// How many executions the server drives right now (`/health/ready`).
pub async fn live_executions(s: &Server) -> u64 {
    let r = s.call(Method::GET, "/health/ready", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["live_executions"].as_u64().unwrap()
}

/// Each history entry of an execution record as `status`, or
/// `status(reason)` when it has a reason (`running(resume)`).
pub fn history(e: &Value) -> Vec<String> {
    e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| match h["reason"].as_str() {
            Some(r) => format!("{}({r})", h["status"].as_str().unwrap()),
            None => h["status"].as_str().unwrap().to_owned(),
        })
        .collect()
}
