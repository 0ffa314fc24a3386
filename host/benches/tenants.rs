//! Many tenants on one server (the real `stephost serve` release binary,
//! durability `full`):
//!
//! 1. async throughput of 10,000 three-step executions submitted by one
//!    tenant, beside the same 10,000 spread over 100 tenants (what fair
//!    claims and fair workers cost), three rounds each, alternating;
//! 2. the sync latency (p50, p99) of a quiet tenant's one-step workflow
//!    while another tenant floods 2,000 async 20 ms naps, beside the same
//!    server's unloaded latency measured just before.
//!
//! Run with `scripts/bench tenants`. Compare the ratios of one run.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::json;
use support::{CLIENTS, Server, fan_out, ms, send, summary};

const EXECUTIONS: usize = 10_000;
const ROUNDS: usize = 3;
const SYNC_CALLS: usize = 300;
const FLOOD: usize = 2000;

fn three() -> serde_json::Value {
    json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo"}, {"id": "c", "step": "echo"}]})
}

/// Seconds to submit and finish [`EXECUTIONS`] spread over `tenants`.
async fn throughput(tenants: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = server.url.clone();
    let mut tokens = Vec::new();
    for i in 0..tenants {
        let name = format!("t{i}");
        tokens.push(support::tenant_named(&client, &url, &name, &[("three", three())]).await);
    }
    let started = Instant::now();
    {
        let (client, url, tokens) = (client.clone(), url.clone(), tokens.clone());
        fan_out(EXECUTIONS, move |i| {
            let (client, url) = (client.clone(), url.clone());
            let token = tokens[i % tokens.len()].clone();
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
        .await;
    }
    // Done when no tenant has anything queued or running.
    loop {
        let mut left = 0;
        for token in &tokens {
            let (s, b) = send(
                &client,
                reqwest::Method::GET,
                format!("{url}/v1/quotas"),
                token,
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            left += b["usage"]["queued_executions"].as_u64().unwrap()
                + b["usage"]["running_executions"].as_u64().unwrap();
            if left > 0 {
                break;
            }
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed().as_secs_f64();
    for token in &tokens {
        let (_, failed) = send(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions?status=failed&limit=1"),
            token,
            None,
        )
        .await;
        assert!(failed["items"].as_array().unwrap().is_empty(), "{failed}");
    }
    took
}

async fn sync_calls(client: &Client, url: &str, token: &str) -> Vec<Duration> {
    let body = json!({"workflow_id": "one", "input_data": {"n": 1}});
    let mut took = Vec::with_capacity(SYNC_CALLS);
    for _ in 0..SYNC_CALLS {
        let started = Instant::now();
        let (s, b) = send(
            client,
            reqwest::Method::POST,
            format!("{url}/v1/executions"),
            token,
            Some(&body),
        )
        .await;
        took.push(started.elapsed());
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["status"], "succeeded", "{b}");
    }
    took
}

async fn quiet_tenant(out: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let client = Client::new();
    let url = server.url.clone();
    let one = json!({"steps": [{"id": "a", "step": "echo"}]});
    let nap = json!({"steps": [{"id": "nap", "step": "hostile", "input": {"op": "nap", "n": 20}}]});
    let quiet = support::tenant_named(&client, &url, "quiet", &[("one", one.clone())]).await;
    let noisy = support::tenant_named(&client, &url, "noisy", &[("nap", nap)]).await;
    // Warm up, then unloaded.
    sync_calls(&client, &url, &quiet).await;
    let unloaded = sync_calls(&client, &url, &quiet).await;
    {
        let (client, url, noisy) = (client.clone(), url.clone(), noisy.clone());
        fan_out(FLOOD, move |i| {
            let (client, url, noisy) = (client.clone(), url.clone(), noisy.clone());
            async move {
                let (s, b) = send(
                    &client,
                    reqwest::Method::POST,
                    format!("{url}/v1/executions/async"),
                    &noisy,
                    Some(&json!({"workflow_id": "nap", "input_data": {"i": i}})),
                )
                .await;
                assert_eq!(s, StatusCode::ACCEPTED, "{b}");
                b
            }
        })
        .await;
    }
    let loaded = sync_calls(&client, &url, &quiet).await;
    let (_, backlog) = send(
        &client,
        reqwest::Method::GET,
        format!("{url}/v1/quotas"),
        &noisy,
        None,
    )
    .await;
    let left = backlog["usage"]["queued_executions"].as_u64().unwrap();
    let (u50, u99) = summary(unloaded);
    let (l50, l99) = summary(loaded);
    out.push(format!(
        "quiet tenant's sync one-step calls ({SYNC_CALLS}) while another floods {FLOOD} async 20 ms naps"
    ));
    out.push(format!(
        "  unloaded         p50 {:>7.2} ms  p99 {:>7.2} ms",
        ms(u50),
        ms(u99)
    ));
    out.push(format!(
        "  under the flood  p50 {:>7.2} ms  p99 {:>7.2} ms   (p99 ratio {:.2}; {left} naps still queued at the end)",
        ms(l50),
        ms(l99),
        l99.as_secs_f64() / u99.as_secs_f64()
    ));
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut out = Vec::new();
    rt.block_on(async {
        let (mut one, mut hundred) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            one.push(throughput(1).await);
            hundred.push(throughput(100).await);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (a, b) = (median(&mut one), median(&mut hundred));
        let rate = |s: f64| EXECUTIONS as f64 / s;
        out.push(format!(
            "async throughput, {EXECUTIONS} three-step executions, {CLIENTS} clients, median of {ROUNDS}"
        ));
        out.push(format!("  1 tenant      {:>7.0} executions/s", rate(a)));
        out.push(format!(
            "  100 tenants   {:>7.0} executions/s   (ratio {:.3})",
            rate(b),
            rate(b) / rate(a)
        ));
        quiet_tenant(&mut out).await;
    });
    for line in out {
        println!("{line}");
    }
}
