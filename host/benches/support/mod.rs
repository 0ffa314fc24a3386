//! What the server benchmarks share: the real `stephost serve` binary as a
//! child process, HTTP helpers, a tenant with the test steps, and summaries.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

pub const ADMIN: &str = "bench-admin-token";
/// Concurrent clients of [`fan_out`].
pub const CLIENTS: usize = 64;

/// A `stephost serve` release process on loopback with durability `full`;
/// killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stephost"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("STEPHOST_ADMIN_TOKEN", ADMIN)
            .env("STEPHOST_DURABILITY", "full")
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stephost serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(60)).expect("address");
        Self { child, url }
    }

    /// Resident and peak resident memory in bytes, from /proc.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Server {
    /// The server's process id, for reading /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the process has used so far, from /proc.
    pub fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields of the line, in clock ticks.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // CLK_TCK is 100 on the Linux machines this runs on (`getconf CLK_TCK`).
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn send(
    client: &Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A tenant with the steps `echo` and `hostile` and `workflows`; returns
/// its token.
pub async fn tenant(client: &Client, url: &str, workflows: &[(&str, Value)]) -> String {
    tenant_named(client, url, "bench", workflows).await
}

/// [`tenant`] under the name `name`.
pub async fn tenant_named(
    client: &Client,
    url: &str,
    name: &str,
    workflows: &[(&str, Value)],
) -> String {
    let (s, b) = send(
        client,
        reqwest::Method::POST,
        format!("{url}/v1/tenants"),
        ADMIN,
        Some(&json!({"name": name})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let token = b["token"].as_str().unwrap().to_owned();
    for (name, path) in [
        ("echo", test_programs::ECHO),
        ("hostile", test_programs::HOSTILE),
    ] {
        let r = client
            .put(format!("{url}/v1/steps/{name}"))
            .bearer_auth(&token)
            .header("content-type", "application/wasm")
            .body(std::fs::read(path).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    for (id, def) in workflows {
        let (s, b) = send(
            client,
            reqwest::Method::PUT,
            format!("{url}/v1/workflows/{id}"),
            &token,
            Some(def),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    token
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// p50 and p99 of `samples`.
pub fn summary(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.50), percentile(&samples, 0.99))
}

/// Runs `total` requests made by `make` from [`CLIENTS`] concurrent tasks;
/// returns the elapsed time and the responses' bodies.
pub async fn fan_out<F, Fut>(total: usize, make: F) -> (Duration, Vec<Value>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Value> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let make = make.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return got;
                }
                got.push(make(i).await);
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (started.elapsed(), all)
}
