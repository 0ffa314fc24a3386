//! Cron schedules on the real `stephost serve` release binary with
//! durability `full`: 10,000 schedules each firing every minute. Reported:
//! tick lateness (from each tick to the moment its execution was created,
//! p50 and p99) beside one per-second schedule alone on the same server,
//! and the server's CPU time per minute with the 10,000 schedules beside
//! the same server idle.
//!
//! Run with `scripts/bench schedules` (about four minutes). Compare medians
//! and ratios from one run: these machines are noisy.

mod support;

use std::time::{Duration, Instant};

use jiff::Timestamp;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{Server, fan_out, ms, send, summary};

const SCHEDULES: usize = 10_000;
const IDLE: Duration = Duration::from_secs(30);
/// Whole minutes of ticks measured.
const MINUTES: u64 = 2;

/// Every execution of the tenant created at or after `since`, following
/// cursors (newest first, so the walk stops at the first older one).
async fn executions_since(client: &Client, url: &str, token: &str, since: Timestamp) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = send(
            client,
            reqwest::Method::GET,
            format!("{url}/v1/executions?limit=100&created_after={since}{cursor}"),
            token,
            None,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Lateness of each execution: its creation minus its tick.
fn lateness(executions: &[Value]) -> Vec<Duration> {
    executions
        .iter()
        .filter_map(|e| {
            let tick: Timestamp = e["scheduled_at"].as_str()?.parse().ok()?;
            let created: Timestamp = e["created_at"].as_str()?.parse().ok()?;
            Duration::try_from(created.duration_since(tick)).ok()
        })
        .collect()
}

/// Sleeps until `secs` past the next whole minute.
async fn after_next_minute(secs: u64) -> Timestamp {
    let now = Timestamp::now();
    let into = now.as_second().rem_euclid(60) as u64;
    let wait = Duration::from_secs(60 - into + secs);
    tokio::time::sleep(wait).await;
    Timestamp::now()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("STEPHOST_WORKERS", "2")]);
    let client = Client::new();
    let url = server.url.clone();
    let token = support::tenant(
        &client,
        &url,
        &[("tick", json!({"steps": [{"id": "a", "step": "echo"}]}))],
    )
    .await;

    // Idle: the server with nothing to do.
    let cpu0 = server.cpu();
    tokio::time::sleep(IDLE).await;
    let idle_per_min = (server.cpu() - cpu0).as_secs_f64() * 60.0 / IDLE.as_secs_f64();

    // Alone: one per-second schedule for ten ticks.
    let since = Timestamp::now();
    let (s, b) = send(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1/schedules"),
        &token,
        Some(
            &json!({"schedule_id": "alone", "workflow_id": "tick", "cron": "* * * * * *",
                     "overlap": "allow_all"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let (s, _) = send(
        &client,
        reqwest::Method::DELETE,
        format!("{url}/v1/schedules/alone"),
        &token,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let alone = lateness(&executions_since(&client, &url, &token, since).await);
    let (alone_p50, alone_p99) = summary(alone.clone());

    // 10,000 schedules, every minute.
    let created = Instant::now();
    let (c2, u2, t2) = (client.clone(), url.clone(), token.clone());
    fan_out(SCHEDULES, move |i| {
        let (client, url, token) = (c2.clone(), u2.clone(), t2.clone());
        async move {
            let body = json!({"schedule_id": format!("s{i}"), "workflow_id": "tick",
                              "cron": "* * * * *", "overlap": "allow_all"});
            let (s, b) = send(
                &client,
                reqwest::Method::POST,
                format!("{url}/v1/schedules"),
                &token,
                Some(&body),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            Value::Null
        }
    })
    .await;
    let create_s = created.elapsed().as_secs_f64();
    // Measure whole minutes, starting half a minute before a tick.
    let from = after_next_minute(30).await;
    let cpu1 = server.cpu();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(60 * MINUTES)).await;
    let busy = server.cpu() - cpu1;
    let measured = window.elapsed();
    let busy_per_min = busy.as_secs_f64() * 60.0 / measured.as_secs_f64();
    let fired = executions_since(&client, &url, &token, from).await;
    let late = lateness(&fired);
    let (p50, p99) = summary(late.clone());
    let max = late.iter().max().copied().unwrap_or_default();

    println!("schedules: {SCHEDULES} schedules firing every minute, durability full");
    println!("  created {SCHEDULES} schedules in {create_s:.1} s");
    println!(
        "  tick lateness  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} executions in {MINUTES} min)",
        ms(p50),
        ms(p99),
        ms(max),
        fired.len()
    );
    println!(
        "  one schedule alone (per second): p50 {:.1} ms  p99 {:.1} ms  ({} ticks)",
        ms(alone_p50),
        ms(alone_p99),
        alone.len()
    );
    println!(
        "  CPU per minute  {busy_per_min:.1} s with {SCHEDULES} schedules, {idle_per_min:.2} s idle \
         ({:.1}% of one core vs {:.2}%)",
        busy_per_min / 60.0 * 100.0,
        idle_per_min / 60.0 * 100.0
    );
}
