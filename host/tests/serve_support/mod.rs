//! Real `stephost serve` processes for the suites that kill, stop and
//! restart them (crash, cluster).

#![allow(dead_code, reason = "each suite uses part of the support")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// A `stephost serve` process; killed with SIGKILL when dropped.
pub struct Serve {
    child: Child,
    /// Its warnings and errors (at most the first 10,000 lines).
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Serve {
    /// Starts `stephost serve` on a free port of 127.0.0.1 with `data_dir`
    /// and the `STEPHOST_*` variables in `env`, and waits until it says
    /// where it listens.
    pub fn start(data_dir: &Path, env: &[(String, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stephost"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stephost serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        // Reads the address from its line, then keeps draining stderr so
        // that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_owned());
                }
                if let Ok(mut kept) = kept.lock()
                    && kept.len() < 10_000
                {
                    kept.push(line.clone());
                }
                if std::env::var_os("TEST_SERVER_LOGS").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server did not report its address");
        Self { child, url, log }
    }

    /// How many lines of its log so far contain `needle`.
    pub fn logged(&self, needle: &str) -> usize {
        self.log
            .lock()
            .map(|l| l.iter().filter(|line| line.contains(needle)).count())
            .unwrap_or(0)
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill_9(&mut self) {
        // `Child::kill` sends SIGKILL on Unix.
        self.child.kill().expect("kill -9");
        self.child.wait().unwrap();
    }

    /// Waits up to `limit` for the process to exit; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (`libc::SIGSTOP`, `libc::SIGCONT`, `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let done = unsafe { libc::kill(pid, signal) };
        assert_eq!(done, 0, "kill({pid}, {signal}) failed");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request with a bearer token: the status and the JSON body (`Null`
/// when the body is not JSON).
pub async fn call(
    client: &Client,
    method: Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A tenant named `name` (made with the admin token) with one step (`step`
/// from the component at `program`) and `workflows`; returns its token.
pub async fn tenant(
    client: &Client,
    url: &str,
    admin: &str,
    name: &str,
    (step, program): (&str, &str),
    workflows: &[(&str, Value)],
) -> String {
    let (status, body) = call(
        client,
        Method::POST,
        format!("{url}/v1/tenants"),
        admin,
        Some(serde_json::json!({"name": name})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let r = client
        .put(format!("{url}/v1/steps/{step}"))
        .bearer_auth(&token)
        .header("content-type", "application/wasm")
        .body(std::fs::read(program).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for (id, def) in workflows {
        let (status, body) = call(
            client,
            Method::PUT,
            format!("{url}/v1/workflows/{id}"),
            &token,
            Some(def.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    token
}

/// Every execution the listing on `url` returns for `filter` (a query
/// string part such as `&status=failed`), following cursors.
pub async fn list_all(client: &Client, url: &str, token: &str, filter: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            client,
            Method::GET,
            format!("{url}/v1/executions?limit=100{filter}{cursor}"),
            token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return items,
        }
    }
}
