//! Callbacks, against the real `stephost serve` release binary with
//! durability `full` and a receiver on loopback (opened with
//! `outbound-allow-networks`):
//!
//! 1. execution throughput of 5,000 three-step executions without
//!    callbacks (the baseline, measured in the same run), then with an
//!    `execution.finished` callback each: executions/s, and deliveries/s
//!    until the last callback arrived;
//! 2. the latency from an execution's end (`finished_at`) to its callback
//!    arriving at the receiver, under that load (p50, p99), and one at a
//!    time (200 sync runs).
//!
//! Run with `scripts/bench callbacks`. These machines are noisy: compare
//! medians and ratios from one run, not absolute figures across runs.

#[path = "../tests/receiver_support/mod.rs"]
mod receiver_support;
mod support;

use std::time::{Duration, Instant};

use receiver_support::Receiver;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use support::{CLIENTS, Server, fan_out, ms, send, summary};

const EXECUTIONS: usize = 5_000;
const ONE_AT_A_TIME: usize = 200;

/// Submits `n` async three-step executions (with `callback` when given)
/// from [`CLIENTS`] clients and waits until every one succeeded; returns
/// the time taken and the accepted bodies.
async fn run(
    client: &Client,
    url: &str,
    token: &str,
    n: usize,
    callback: Option<String>,
) -> (Duration, Vec<Value>) {
    let started = jiff::Timestamp::now();
    let (_, accepted) = {
        let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
        fan_out(n, move |i| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            let mut body = json!({"workflow_id": "three", "input_data": {"i": i}});
            if let Some(cb) = &callback {
                body["callback"] = json!({"url": cb});
            }
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
                b
            }
        })
        .await
    };
    let ids: Vec<String> = accepted
        .iter()
        .map(|b| b["execution_id"].as_str().unwrap().to_owned())
        .collect();
    // Every one, long-polled until it is terminal.
    let (client2, url2, token2) = (client.clone(), url.to_owned(), token.to_owned());
    let ids2 = ids.clone();
    let (_, records) = fan_out(n, move |i| {
        let (client, url, token, id) = (
            client2.clone(),
            url2.clone(),
            token2.clone(),
            ids2[i].clone(),
        );
        async move {
            loop {
                let (s, b) = send(
                    &client,
                    reqwest::Method::GET,
                    format!("{url}/v1/executions/{id}?wait_for_seconds=60"),
                    &token,
                    None,
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{b}");
                match b["status"].as_str() {
                    Some("succeeded") => return b,
                    Some("queued" | "running") => continue,
                    other => panic!("{id} ended {other:?}: {b}"),
                }
            }
        }
    })
    .await;
    let last_finished = records
        .iter()
        .map(|r| {
            r["finished_at"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap()
        })
        .max()
        .unwrap();
    let took = Duration::try_from(last_finished.duration_since(started)).unwrap_or_default();
    (took, records)
}

/// End to callback latency of every request `rx` got, by `finished_at`.
fn latencies(
    rx: &Receiver,
    finished: &std::collections::HashMap<String, jiff::Timestamp>,
) -> Vec<Duration> {
    rx.requests()
        .iter()
        .map(|r| {
            let body = r.json();
            let id = body["data"]["execution_id"].as_str().unwrap();
            let end = finished[id];
            Duration::try_from(r.received_at.duration_since(end)).unwrap_or_default()
        })
        .collect()
}

async fn callbacks(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[("STEPHOST_OUTBOUND_ALLOW_NETWORKS", r#"["127.0.0.0/8"]"#)],
    );
    let client = Client::new();
    let url = server.url.clone();
    let token = support::tenant(
        &client,
        &url,
        &[(
            "three",
            json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo"}, {"id": "c", "step": "echo"}]}),
        )],
    )
    .await;
    let rx = Receiver::start().await;

    // Warm both paths up, then the baseline, then with callbacks.
    run(&client, &url, &token, 200, Some(rx.url())).await;
    rx.wait_for(200, Duration::from_secs(60)).await;
    let rx = Receiver::start().await;
    let (plain, _) = run(&client, &url, &token, EXECUTIONS, None).await;
    let started = Instant::now();
    let (hooked, records) = run(&client, &url, &token, EXECUTIONS, Some(rx.url())).await;
    let got = rx.wait_for(EXECUTIONS, Duration::from_secs(300)).await;
    let last_arrival = got.iter().map(|r| r.at).max().unwrap();
    let delivered_in = last_arrival.duration_since(started);
    let finished: std::collections::HashMap<String, jiff::Timestamp> = records
        .iter()
        .map(|r| {
            (
                r["execution_id"].as_str().unwrap().to_owned(),
                r["finished_at"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), EXECUTIONS, "one callback per execution");
    let (loaded_p50, loaded_p99) = summary(latencies(&rx, &finished));

    // One at a time: a sync run, then its callback.
    let alone = Receiver::start().await;
    let mut finished = std::collections::HashMap::new();
    for i in 0..ONE_AT_A_TIME {
        let (s, b) = send(
            &client,
            reqwest::Method::POST,
            format!("{url}/v1/executions"),
            &token,
            Some(&json!({"workflow_id": "three", "input_data": {"i": i}, "callback": {"url": alone.url()}})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        finished.insert(
            b["execution_id"].as_str().unwrap().to_owned(),
            b["finished_at"].as_str().unwrap().parse().unwrap(),
        );
        alone.wait_for(i + 1, Duration::from_secs(30)).await;
    }
    let (alone_p50, alone_p99) = summary(latencies(&alone, &finished));

    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    out.push(format!(
        "callbacks, {EXECUTIONS} three-step executions, {CLIENTS} concurrent clients, durability full"
    ));
    out.push(format!(
        "  without callbacks (baseline)          {:>7.0} executions/s ({:.2} s)",
        per_s(EXECUTIONS, plain),
        plain.as_secs_f64()
    ));
    out.push(format!(
        "  with an execution.finished callback   {:>7.0} executions/s ({:.2} s), ratio {:.2}",
        per_s(EXECUTIONS, hooked),
        hooked.as_secs_f64(),
        plain.as_secs_f64() / hooked.as_secs_f64()
    ));
    out.push(format!(
        "  callbacks delivered                   {:>7.0} deliveries/s (all {EXECUTIONS} in {:.2} s)",
        per_s(EXECUTIONS, delivered_in),
        delivered_in.as_secs_f64()
    ));
    out.push(format!(
        "  end -> callback, under that load      p50 {:>7.2} ms   p99 {:>7.2} ms",
        ms(loaded_p50),
        ms(loaded_p99)
    ));
    out.push(format!(
        "  end -> callback, one at a time ({ONE_AT_A_TIME})  p50 {:>7.2} ms   p99 {:>7.2} ms",
        ms(alone_p50),
        ms(alone_p99)
    ));
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    rt.block_on(callbacks(&mut out));
    for line in out {
        println!("{line}");
    }
}
