//! Durable time, on the real `stephost serve` release binary with
//! durability `full`, each figure beside a baseline from the same run:
//!
//! 1. resident memory with 100,000 executions waiting on timers, beside the
//!    same server idle; then a restart on that store: the time to ready and
//!    the memory after it, beside a restart on an empty store;
//! 2. timer accuracy: 10,000 timers due within one second, lateness from
//!    each timer's due time to the moment its wait ended (p50, p99), beside
//!    timers due one at a time;
//! 3. signals: 1,000 deliveries at 1,000 per second to executions waiting
//!    for them, latency from the 202 to the execution's end (p50, p99),
//!    beside deliveries one at a time.
//!
//! Run with `scripts/bench timers`. Compare medians and ratios from one
//! run: these machines are noisy.

mod support;

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{Server, fan_out, mib, ms, send, summary};

const PARKED: usize = 100_000;
const TIMERS: usize = 10_000;
const SIGNALS: usize = 1_000;
const ALONE: usize = 20;

/// A tenant with `echo` and the workflows `nap` (wait until `input.at`)
/// and `gate` (wait for signal `go`); returns its token.
async fn setup(client: &Client, url: &str) -> String {
    support::tenant(
        client,
        url,
        &[
            (
                "nap",
                json!({"timeout": "7d", "steps": [{"id": "nap", "wait": {"until": "{{ input.at }}"}}]}),
            ),
            (
                "gate",
                json!({"timeout": "7d", "steps": [{"id": "gate", "wait": {"signal": "go"}}]}),
            ),
        ],
    )
    .await
}

/// Starts `n` executions of `workflow` from concurrent clients; returns
/// their ids in order of `i`.
async fn start(
    client: &Client,
    url: &str,
    token: &str,
    workflow: &'static str,
    n: usize,
    input: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Vec<String> {
    let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
    let (_, mut bodies) = fan_out(n, move |i| {
        let (client, url, token) = (client.clone(), url.clone(), token.clone());
        let body = json!({"workflow_id": workflow, "input_data": input(i)});
        async move {
            let (s, b) = send(
                &client,
                reqwest::Method::POST,
                format!("{url}/v1/executions/async"),
                &token,
                Some(&body),
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
            json!([i, b["execution_id"]])
        }
    })
    .await;
    bodies.sort_by_key(|b| b[0].as_u64());
    bodies
        .into_iter()
        .map(|b| b[1].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the server drives nothing: every execution has parked.
async fn until_parked(client: &Client, url: &str) {
    loop {
        let r: Value = client
            .get(format!("{url}/health/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if r["live_executions"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The time from spawning the server to its first `/health/ready` 200.
async fn restart_to_ready(data_dir: &std::path::Path) -> (Server, Duration) {
    let started = Instant::now();
    let server = Server::start(data_dir, &[]);
    let client = Client::new();
    loop {
        if let Ok(r) = client
            .get(format!("{}/health/ready", server.url))
            .send()
            .await
            && r.status() == StatusCode::OK
        {
            return (server, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn parked_memory(out: &mut Vec<String>) {
    // The baseline: a restart on an empty store, and its idle memory.
    let empty = tempfile::tempdir().unwrap();
    drop(Server::start(empty.path(), &[]));
    let (idle_server, empty_ready) = restart_to_ready(empty.path()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_restarted, _) = idle_server.rss();
    drop(idle_server);

    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = server.url.clone();
    let token = setup(&client, &url).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = server.rss();
    let far = (Timestamp::now() + SignedDuration::from_hours(24)).to_string();
    let started = Instant::now();
    start(
        &client,
        &url,
        &token,
        "nap",
        PARKED,
        move |i| json!({"i": i, "at": far}),
    )
    .await;
    until_parked(&client, &url).await;
    let took = started.elapsed();
    let (_, page) = send(
        &client,
        reqwest::Method::GET,
        format!("{url}/v1/executions?status=waiting&limit=1"),
        &token,
        None,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    let (loaded, peak) = server.rss();
    drop(server);
    let (restarted, ready) = restart_to_ready(dir.path()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = restarted.rss();
    let r: Value = client
        .get(format!("{}/health/ready", restarted.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["live_executions"], 0, "{r}");
    out.push(format!(
        "{PARKED} executions waiting on timers (submitted and parked in {:.1} s)",
        took.as_secs_f64()
    ));
    out.push(format!(
        "  RSS {:>7.1} MiB (peak {:.1} MiB); idle baseline {:.1} MiB: {:+.1} MiB, {:.0} bytes each (target: <= 64 MiB above idle)",
        mib(loaded),
        mib(peak),
        mib(idle),
        mib(loaded) - mib(idle),
        loaded.saturating_sub(idle) as f64 / PARKED as f64
    ));
    out.push(format!(
        "  restart to ready  {:>7.1} ms, RSS after {:.1} MiB",
        ms(ready),
        mib(after)
    ));
    out.push(format!(
        "  baseline: restart of an empty store to ready {:>7.1} ms, RSS {:.1} MiB",
        ms(empty_ready),
        mib(idle_restarted)
    ));
}

/// How late each wait ended: the history entry that left `waiting`, minus
/// the time in `input.at`.
async fn lateness(client: &Client, url: &str, token: &str, ids: &[String]) -> Vec<Duration> {
    let mut late = Vec::with_capacity(ids.len());
    for id in ids {
        let (e, ended) = finished(client, url, token, id).await;
        let due: Timestamp = e["input_data"]["at"].as_str().unwrap().parse().unwrap();
        late.push(Duration::try_from(ended.duration_since(due)).unwrap_or_default());
    }
    late
}

/// An execution once it has succeeded, with its `finished_at`.
async fn finished(client: &Client, url: &str, token: &str, id: &str) -> (Value, Timestamp) {
    let (s, e) = send(
        client,
        reqwest::Method::GET,
        format!("{url}/v1/executions/{id}?wait_for_seconds=60"),
        token,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "succeeded", "{e}");
    let ended = e["finished_at"].as_str().unwrap().parse().unwrap();
    (e, ended)
}

async fn timer_accuracy(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = server.url.clone();
    let token = setup(&client, &url).await;

    // Baseline: one timer at a time.
    let mut alone = Vec::new();
    for i in 0..ALONE {
        let at = (Timestamp::now() + SignedDuration::from_millis(200)).to_string();
        let ids = start(
            &client,
            &url,
            &token,
            "nap",
            1,
            move |_| json!({"i": i, "at": at}),
        )
        .await;
        alone.extend(lateness(&client, &url, &token, &ids).await);
    }
    // 10,000 timers, due spread over one second, far enough ahead that
    // all are parked first.
    let due = Timestamp::now() + SignedDuration::from_secs(20);
    let ids = start(&client, &url, &token, "nap", TIMERS, move |i| {
        let at = due + SignedDuration::from_micros((i % 1000) as i64 * 1000);
        json!({"i": i, "at": at.to_string()})
    })
    .await;
    until_parked(&client, &url).await;
    assert!(
        Timestamp::now() < due,
        "submitting took too long to measure"
    );
    let late = lateness(&client, &url, &token, &ids).await;
    let (a50, a99) = summary(alone);
    let (l50, l99) = summary(late);
    out.push(format!(
        "timer accuracy: {TIMERS} timers due within one second"
    ));
    out.push(format!(
        "  lateness                     p50 {:>7.1} ms   p99 {:>7.1} ms   (target: p99 <= 100 ms)",
        ms(l50),
        ms(l99)
    ));
    out.push(format!(
        "  baseline: one timer at a time p50 {:>7.1} ms   p99 {:>7.1} ms   ({ALONE} timers)",
        ms(a50),
        ms(a99)
    ));
}

/// Sends signal `go` to each of `ids`, the `k`th at `start + k * gap`;
/// returns, per delivery, the time from its 202 to the execution's end.
async fn deliver(
    client: &Client,
    url: &str,
    token: &str,
    ids: &[String],
    gap: Duration,
) -> Vec<Duration> {
    let begin = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        let (client, url, token, id) =
            (client.clone(), url.to_owned(), token.to_owned(), id.clone());
        let at = begin + gap * u32::try_from(k).unwrap();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let (s, b) = send(
                &client,
                reqwest::Method::POST,
                format!("{url}/v1/executions/{id}/signals/go"),
                &token,
                Some(&json!({"k": k})),
            )
            .await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
            Timestamp::now()
        }));
    }
    let mut accepted = Vec::with_capacity(ids.len());
    for t in tasks {
        accepted.push(t.await.unwrap());
    }
    let mut latency = Vec::with_capacity(ids.len());
    for (id, at) in ids.iter().zip(accepted) {
        let (_, ended) = finished(client, url, token, id).await;
        latency.push(Duration::try_from(ended.duration_since(at)).unwrap_or_default());
    }
    latency
}

async fn signal_latency(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = server.url.clone();
    let token = setup(&client, &url).await;
    let ids = start(
        &client,
        &url,
        &token,
        "gate",
        SIGNALS + ALONE,
        |i| json!({"i": i}),
    )
    .await;
    until_parked(&client, &url).await;
    let mut alone = Vec::new();
    for id in &ids[SIGNALS..] {
        alone.extend(
            deliver(
                &client,
                &url,
                &token,
                std::slice::from_ref(id),
                Duration::ZERO,
            )
            .await,
        );
    }
    let loaded = deliver(
        &client,
        &url,
        &token,
        &ids[..SIGNALS],
        Duration::from_millis(1),
    )
    .await;
    let (a50, a99) = summary(alone);
    let (l50, l99) = summary(loaded);
    out.push(format!(
        "signals: {SIGNALS} deliveries at 1000/s, from the 202 to the execution's end"
    ));
    out.push(format!(
        "  latency                      p50 {:>7.1} ms   p99 {:>7.1} ms   (target: p99 <= 20 ms)",
        ms(l50),
        ms(l99)
    ));
    out.push(format!(
        "  baseline: one at a time      p50 {:>7.1} ms   p99 {:>7.1} ms   ({ALONE} deliveries)",
        ms(a50),
        ms(a99)
    ));
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    rt.block_on(async {
        timer_accuracy(&mut out).await;
        signal_latency(&mut out).await;
        parked_memory(&mut out).await;
    });
    for line in out {
        println!("{line}");
    }
}
