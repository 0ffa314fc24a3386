//! The server over HTTP on loopback, run as the real `stephost serve`
//! release binary with durability `full`:
//!
//! 1. sync latency of a three-step workflow of trivial Rust steps, beside
//!    two floors measured in the same run: an HTTP round trip that touches
//!    no store (`GET /health/live`) and one fsync'd write in the data
//!    directory (what one durable commit costs on this disk);
//! 2. async throughput of 10,000 three-step executions (submitted over HTTP
//!    by 64 concurrent clients, until the last is terminal), beside the
//!    request rate of the same clients against `GET /health/live`;
//! 3. resident memory of the server holding 10,000 queued executions,
//!    beside the same server idle.
//!
//! Run with `scripts/bench`. These machines are noisy: compare medians and
//! ratios from one run, not absolute figures across runs.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{CLIENTS, Server, fan_out, mib, ms, send, summary};

const SYNC_RUNS: usize = 2000;
const SYNC_WARMUP: usize = 200;
const ASYNC_EXECUTIONS: usize = 10_000;
const QUEUED: usize = 10_000;

/// A tenant with `echo`, `hostile` and workflows `three` (echo x3) and
/// `block` (one long nap); returns its token.
async fn setup(client: &Client, url: &str) -> String {
    support::tenant(
        client,
        url,
        &[
            (
                "three",
                json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo"}, {"id": "c", "step": "echo"}]}),
            ),
            (
                "block",
                json!({"steps": [{"id": "nap", "step": "hostile", "input": {"op": "nap", "n": 600000}}]}),
            ),
        ],
    )
    .await
}

/// What one durable commit costs on this disk: write 200 bytes, fdatasync.
fn fsync_floor(dir: &Path) -> Vec<Duration> {
    let mut f = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    (0..SYNC_RUNS)
        .map(|_| {
            let started = Instant::now();
            f.write_all(&[7u8; 200]).unwrap();
            f.sync_data().unwrap();
            started.elapsed()
        })
        .collect()
}

async fn sync_latency(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = &server.url;
    let token = setup(&client, url).await;
    let body = json!({"workflow_id": "three", "input_data": {"order": 42, "items": [1, 2, 3]}});

    let mut ours = Vec::with_capacity(SYNC_RUNS);
    let mut http = Vec::with_capacity(SYNC_RUNS);
    for i in 0..SYNC_RUNS + SYNC_WARMUP {
        let started = Instant::now();
        let (s, b) = send(
            &client,
            reqwest::Method::POST,
            format!("{url}/v1/executions"),
            &token,
            Some(&body),
        )
        .await;
        let took = started.elapsed();
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "succeeded");
        let started = Instant::now();
        let r = client
            .get(format!("{url}/health/live"))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        let floor = started.elapsed();
        if i >= SYNC_WARMUP {
            ours.push(took);
            http.push(floor);
        }
    }
    let fsync = fsync_floor(dir.path());
    let (p50, p99) = summary(ours);
    let (h50, h99) = summary(http);
    let (f50, f99) = summary(fsync);
    out.push(format!(
        "sync 3-step workflow over HTTP, durability full ({SYNC_RUNS} sequential calls)"
    ));
    out.push(format!(
        "  POST /v1/executions          p50 {:>7.3} ms   p99 {:>7.3} ms   (targets: 2 ms, 10 ms)",
        ms(p50),
        ms(p99)
    ));
    out.push(format!(
        "  floor: GET /health/live      p50 {:>7.3} ms   p99 {:>7.3} ms",
        ms(h50),
        ms(h99)
    ));
    out.push(format!(
        "  floor: write + fdatasync     p50 {:>7.3} ms   p99 {:>7.3} ms",
        ms(f50),
        ms(f99)
    ));
    out.push(format!(
        "  p50 = {:.1} x HTTP round trip = {:.1} x one fsync",
        p50.as_secs_f64() / h50.as_secs_f64(),
        p50.as_secs_f64() / f50.as_secs_f64()
    ));
}

async fn async_throughput(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = server.url.clone();
    let token = setup(&client, &url).await;

    let (health_took, _) = {
        let client = client.clone();
        let url = url.clone();
        fan_out(ASYNC_EXECUTIONS, move |_| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client
                    .get(format!("{url}/health/live"))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
                Value::Null
            }
        })
        .await
    };

    let started = Instant::now();
    let (submit_took, accepted) = {
        let client = client.clone();
        let url = url.clone();
        let token = token.clone();
        fan_out(ASYNC_EXECUTIONS, move |i| {
            let client = client.clone();
            let url = url.clone();
            let token = token.clone();
            async move {
                let (s, b) = send(
                    &client,
                    reqwest::Method::POST,
                    format!("{url}/v1/executions/async"),
                    &token,
                    Some(&json!({"workflow_id": "three", "input_data": {"i": i}})),
                )
                .await;
                assert_eq!(s, StatusCode::ACCEPTED, "{b}");
                b
            }
        })
        .await
    };
    // FIFO: once the last accepted execution is terminal, the queue has
    // drained; the listing below checks that every one succeeded.
    let last = accepted
        .iter()
        .map(|b| b["execution_id"].as_str().unwrap().to_owned())
        .max()
        .unwrap();
    loop {
        let (s, b) = send(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions/{last}?wait_for_seconds=60"),
            &token,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        if b["status"] == "succeeded" {
            break;
        }
        assert!(
            !matches!(
                b["status"].as_str(),
                Some("failed" | "cancelled" | "timed_out")
            ),
            "{b}"
        );
    }
    let mut unfinished = 1;
    while unfinished > 0 {
        let (_, b) = send(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions?status=running&limit=100"),
            &token,
            None,
        )
        .await;
        let (_, q) = send(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions?status=queued&limit=100"),
            &token,
            None,
        )
        .await;
        unfinished = b["items"].as_array().unwrap().len() + q["items"].as_array().unwrap().len();
        if unfinished > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let took = started.elapsed();
    let (_, failed) = send(
        &client,
        reqwest::Method::GET,
        format!("{url}/v1/executions?status=failed&limit=100"),
        &token,
        None,
    )
    .await;
    assert!(failed["items"].as_array().unwrap().is_empty(), "{failed}");

    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    out.push(format!(
        "async throughput, {ASYNC_EXECUTIONS} three-step executions, {CLIENTS} concurrent clients, durability full"
    ));
    out.push(format!(
        "  submitted and finished in {:>6.2} s: {:>7.0} executions/s, {:>7.0} steps/s   (target: 3000 executions/s)",
        took.as_secs_f64(),
        per_s(ASYNC_EXECUTIONS, took),
        per_s(3 * ASYNC_EXECUTIONS, took)
    ));
    out.push(format!(
        "  accepting alone (POST .../async) {:>7.0} requests/s",
        per_s(ASYNC_EXECUTIONS, submit_took)
    ));
    out.push(format!(
        "  floor: GET /health/live, same clients {:>7.0} requests/s",
        per_s(ASYNC_EXECUTIONS, health_took)
    ));
}

async fn queued_memory(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    // One execution in flight at a time, held by a ten-minute nap: every
    // later submission stays queued.
    let server = Server::start(
        dir.path(),
        &[("STEPHOST_WORKERS", "1"), ("STEPHOST_MAX_IN_FLIGHT", "1")],
    );
    let client = Client::new();
    let url = server.url.clone();
    let token = setup(&client, &url).await;
    let (s, b) = send(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1/executions/async"),
        &token,
        Some(&json!({"workflow_id": "block"})),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    // Let the first attempt of each component kind settle before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = server.rss();
    {
        let client = client.clone();
        let url = url.clone();
        let token = token.clone();
        fan_out(QUEUED, move |i| {
            let client = client.clone();
            let url = url.clone();
            let token = token.clone();
            async move {
                let (s, b) = send(
                    &client,
                    reqwest::Method::POST,
                    format!("{url}/v1/executions/async"),
                    &token,
                    Some(&json!({"workflow_id": "three", "input_data": {"i": i}})),
                )
                .await;
                assert_eq!(s, StatusCode::ACCEPTED, "{b}");
                Value::Null
            }
        })
        .await;
    }
    let (_, q) = send(
        &client,
        reqwest::Method::GET,
        format!("{url}/v1/executions?status=queued&limit=1"),
        &token,
        None,
    )
    .await;
    assert_eq!(q["items"].as_array().unwrap().len(), 1, "{q}");
    let (loaded, peak) = server.rss();
    out.push(format!("resident memory with {QUEUED} queued executions"));
    out.push(format!(
        "  RSS {:>7.1} MiB (peak {:.1} MiB); idle baseline {:.1} MiB; {:.0} bytes per queued execution",
        mib(loaded),
        mib(peak),
        mib(idle),
        loaded.saturating_sub(idle) as f64 / QUEUED as f64
    ));
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    rt.block_on(async {
        sync_latency(&mut out).await;
        async_throughput(&mut out).await;
        queued_memory(&mut out).await;
    });
    for line in out {
        println!("{line}");
    }
}
