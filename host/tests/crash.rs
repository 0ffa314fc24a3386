//! `kill -9` of the real `stephost serve` binary, then a restart on the same
//! data directory: while 200 asynchronous executions are under way (every
//! accepted execution reaches a terminal state, none is lost, none completes
//! twice), and while 1,000 executions wait on timers and 100 on signals
//! (every timer fires once, half of them due while the server was down, and
//! every signal sent after the restart is consumed once), and while a
//! callback is on its way (it is delivered after the restart, with the
//! same `webhook-id`).

#[path = "pg_support/mod.rs"]
mod pg_support;
#[path = "receiver_support/mod.rs"]
mod receiver_support;
#[path = "serve_support/mod.rs"]
mod serve_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use serve_support::{Serve, call};

const ADMIN: &str = "crash-admin-token";
const EXECUTIONS: usize = 200;

/// Where a server keeps its data across restarts: a data directory, and a
/// PostgreSQL schema when the suite runs there (`TEST_STORE=postgres`).
struct Data {
    dir: tempfile::TempDir,
    schema: Option<pg_support::Schema>,
}

impl Data {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            schema: pg_support::Schema::for_run(),
        }
    }
}

/// Starts `stephost serve` on `data`.
fn start(data: &Data) -> Serve {
    start_with(data, &[])
}

/// Starts `stephost serve` on `data` with `extra` settings.
fn start_with(data: &Data, extra: &[(&str, &str)]) -> Serve {
    let mut env: Vec<(String, String)> = data
        .schema
        .iter()
        .flat_map(pg_support::Schema::env)
        .collect();
    env.extend(
        [
            ("STEPHOST_ADMIN_TOKEN", ADMIN),
            ("STEPHOST_WORKERS", "2"),
            ("STEPHOST_DURABILITY", "full"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Serve::start(data.dir.path(), &env)
}

/// Every execution id the listing returns for `filter`, following cursors.
async fn list_ids(client: &Client, url: &str, token: &str, filter: &str) -> Vec<String> {
    serve_support::list_all(client, url, token, filter)
        .await
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn count_succeeded(client: &Client, url: &str, token: &str) -> usize {
    list_ids(client, url, token, "&status=succeeded")
        .await
        .len()
}

async fn tenant(
    client: &Client,
    url: &str,
    name: &str,
    step: (&str, &str),
    workflows: &[(&str, Value)],
) -> String {
    serve_support::tenant(client, url, ADMIN, name, step, workflows).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_async_executions_loses_nothing_and_completes_each_once() {
    let dir = Data::new();
    let client = Client::new();
    let mut first = start(&dir);
    let url = first.url.clone();

    // Three steps of 10 ms each on two workers: 200 executions take about
    // three seconds, so the kill lands in the middle.
    let nap = json!({"op": "nap", "n": 10});
    let def = json!({"steps": [
        {"id": "a", "step": "nap", "input": nap},
        {"id": "b", "step": "nap", "input": nap},
        {"id": "c", "step": "nap", "input": nap}]});
    let token = tenant(
        &client,
        &url,
        "crash",
        ("nap", test_programs::HOSTILE),
        &[("naps", def)],
    )
    .await;

    let mut ids = Vec::with_capacity(EXECUTIONS);
    let mut tasks = Vec::new();
    for i in 0..EXECUTIONS {
        let client = client.clone();
        let url = url.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &client,
                reqwest::Method::POST,
                format!("{url}/v1/executions/async"),
                &token,
                Some(json!({"workflow_id": "naps", "input_data": {"i": i}})),
            )
            .await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["status"], "queued");
        ids.push(body["execution_id"].as_str().unwrap().to_owned());
    }

    // Kill once some, but far from all, have finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done_before = loop {
        let done = count_succeeded(&client, &url, &token).await;
        if done >= 20 {
            break done;
        }
        assert!(Instant::now() < deadline, "no progress before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.kill_9();
    assert!(
        done_before < EXECUTIONS / 2,
        "the kill came too late to prove anything ({done_before} already done)"
    );

    let second = start(&dir);
    let url = second.url.clone();
    let after_restart = count_succeeded(&client, &url, &token).await;
    assert!(
        after_restart < EXECUTIONS,
        "everything had finished before the restart; the test proves nothing"
    );
    for id in &ids {
        let (status, exec) = call(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions/{id}?wait_for_seconds=60"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        assert_eq!(exec["status"], "succeeded", "{exec}");
        let history: Vec<&str> = exec["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["status"].as_str().unwrap())
            .collect();
        let terminal = history
            .iter()
            .filter(|s| !matches!(**s, "queued" | "running"))
            .count();
        assert_eq!(terminal, 1, "completed more than once: {history:?}");
        assert_eq!(history.first(), Some(&"queued"), "{history:?}");
        assert_eq!(history.last(), Some(&"succeeded"), "{history:?}");
        for step in exec["steps"].as_array().unwrap() {
            assert_eq!(step["status"], "succeeded", "{exec}");
            let attempts = step["attempts"].as_array().unwrap();
            // An attempt cut off by the kill was never recorded, so every
            // step shows the one attempt that counted.
            assert_eq!(attempts.len(), 1, "{exec}");
            assert_eq!(step["output"], json!({"slept_ms": 10}));
        }
    }
    // Nothing lost and nothing duplicated: the listing holds exactly the
    // accepted ids.
    let listed = list_ids(&client, &url, &token, "").await;
    assert_eq!(listed.len(), EXECUTIONS);
    let listed: HashSet<String> = listed.into_iter().collect();
    let accepted: HashSet<String> = ids.into_iter().collect();
    assert_eq!(listed, accepted);
}

const TIMERS: usize = 1_000;
const SIGNAL_WAITS: usize = 100;

/// Starts `n` executions of `workflow`, 50 requests at a time; `input(i)`
/// gives each one's input. Returns their ids in order.
async fn start_many(
    client: &Client,
    url: &str,
    token: &str,
    workflow: &str,
    n: usize,
    input: impl Fn(usize) -> Value,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let (client, url, token) = (client.clone(), url.to_owned(), token.to_owned());
            let body = json!({"workflow_id": workflow, "input_data": input(i)});
            tasks.push(tokio::spawn(async move {
                call(
                    &client,
                    reqwest::Method::POST,
                    format!("{url}/v1/executions/async"),
                    &token,
                    Some(body),
                )
                .await
            }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            ids.push(body["execution_id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// How many statuses of `history` are terminal.
fn terminal_entries(exec: &Value) -> usize {
    exec["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !matches!(h["status"].as_str(), Some("queued" | "running" | "waiting")))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_1000_timers_and_100_signal_waits_fires_each_once() {
    let dir = Data::new();
    let client = Client::new();
    let mut first = start(&dir);
    let url = first.url.clone();
    let token = tenant(
        &client,
        &url,
        "timers",
        ("echo", test_programs::ECHO),
        &[
            (
                "timer",
                json!({"steps": [
                    {"id": "nap", "wait": {"until": "{{ input.at }}"}},
                    {"id": "after", "step": "echo", "input": {"i": "{{ input.i }}"}}]}),
            ),
            (
                "gate",
                json!({"steps": [
                    {"id": "gate", "wait": {"signal": "go"}},
                    {"id": "after", "step": "echo"}]}),
            ),
        ],
    )
    .await;

    // Half the timers fall due while the server is down, half after the
    // restart.
    let t0 = jiff::Timestamp::now();
    let early = t0 + jiff::SignedDuration::from_secs(10);
    let late = t0 + jiff::SignedDuration::from_secs(16);
    let timers = start_many(&client, &url, &token, "timer", TIMERS, |i| {
        let at = if i % 2 == 0 { early } else { late };
        json!({"i": i, "at": at.to_string()})
    })
    .await;
    let gates = start_many(
        &client,
        &url,
        &token,
        "gate",
        SIGNAL_WAITS,
        |i| json!({"i": i}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = list_ids(&client, &url, &token, "&status=waiting")
            .await
            .len();
        if waiting == TIMERS + SIGNAL_WAITS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {waiting} executions ever waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill_9();
    assert!(
        jiff::Timestamp::now() < early,
        "the kill came after the first timers were due; the test proves less than it says"
    );
    // Stay down until the early timers are due.
    let due = early.duration_since(jiff::Timestamp::now()) + jiff::SignedDuration::from_millis(500);
    tokio::time::sleep(Duration::try_from(due).unwrap_or_default()).await;

    let second = start(&dir);
    let url = second.url.clone();
    // Every signal is sent twice with one key: each counts once.
    for (i, id) in gates.iter().enumerate() {
        for round in 0..2 {
            let r = client
                .post(format!("{url}/v1/executions/{id}/signals/go"))
                .bearer_auth(&token)
                .header("idempotency-key", format!("go-{i}"))
                .json(&json!({"n": i}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["duplicate"], round == 1, "{body}");
        }
    }
    for (i, id) in timers.iter().chain(&gates).enumerate() {
        let (status, exec) = call(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions/{id}?wait_for_seconds=60"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{exec}");
        assert_eq!(exec["status"], "succeeded", "{exec}");
        assert_eq!(
            terminal_entries(&exec),
            1,
            "finished more than once: {exec}"
        );
        let after = &exec["steps"][1];
        assert_eq!(
            after["attempts"].as_array().unwrap().len(),
            1,
            "the step after the wait ran more than once: {exec}"
        );
        if i < TIMERS {
            assert_eq!(exec["output"], json!({"i": i}), "{exec}");
            let at: jiff::Timestamp = exec["input_data"]["at"].as_str().unwrap().parse().unwrap();
            let ended: jiff::Timestamp = after["attempts"][0]["started_at"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(ended >= at, "a timer fired early: {exec}");
        } else {
            let n = i - TIMERS;
            assert_eq!(exec["output"], json!({"n": n}), "{exec}");
            assert!(exec.get("pending_signals").is_none(), "{exec}");
        }
    }
    let listed: HashSet<String> = list_ids(&client, &url, &token, "")
        .await
        .into_iter()
        .collect();
    let accepted: HashSet<String> = timers.into_iter().chain(gates).collect();
    assert_eq!(listed.len(), TIMERS + SIGNAL_WAITS);
    assert_eq!(listed, accepted, "nothing lost, nothing added");
}

/// A per-second schedule through two `kill -9`s, each landing within a
/// second of a tick: every tick from the first to the last fires exactly
/// once (none lost while the server was down, since the catch-up window
/// covers the downtime; none doubled by a fire that was under way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_around_schedule_ticks_fires_each_tick_once() {
    let dir = Data::new();
    let client = Client::new();
    let mut server = start(&dir);
    let url = server.url.clone();
    let token = tenant(
        &client,
        &url,
        "ticks",
        ("echo", test_programs::ECHO),
        &[("tick", json!({"steps": [{"id": "a", "step": "echo"}]}))],
    )
    .await;
    let (status, body) = call(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1/schedules"),
        &token,
        Some(
            json!({"schedule_id": "s", "workflow_id": "tick", "cron": "* * * * * *",
                    "overlap": "allow_all"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Two kills at different offsets within a second, each after a few
    // ticks, with a pause before each restart so that ticks fall due while
    // the server is down.
    for (run_ms, down_ms) in [(2_300, 1_400), (1_700, 900)] {
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        server.kill_9();
        tokio::time::sleep(Duration::from_millis(down_ms)).await;
        server = start(&dir);
    }
    let url = server.url.clone();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (status, body) = call(
        &client,
        reqwest::Method::POST,
        format!("{url}/v1/schedules/s/pause"),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["missed"], 0, "{body}");
    assert_eq!(body["skipped"], 0, "{body}");
    let fired = body["fired"].as_u64().unwrap() as usize;

    let ids = list_ids(&client, &url, &token, "&schedule_id=s").await;
    assert_eq!(ids.len(), fired, "one execution per fire");
    let mut ticks = Vec::with_capacity(ids.len());
    for id in &ids {
        let (status, e) = call(
            &client,
            reqwest::Method::GET,
            format!("{url}/v1/executions/{id}"),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        ticks.push(
            e["scheduled_at"]
                .as_str()
                .unwrap()
                .parse::<jiff::Timestamp>()
                .unwrap(),
        );
    }
    ticks.sort();
    let distinct: HashSet<_> = ticks.iter().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    // About 7 s of ticks, down time included, and no second missing.
    assert!(ticks.len() >= 6, "{ticks:?}");
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1].duration_since(pair[0]),
            jiff::SignedDuration::from_secs(1),
            "a tick is missing between {} and {}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_callback_delivers_it_after_the_restart_with_its_webhook_id() {
    use receiver_support::{Answer, Receiver};
    let rx = Receiver::start().await;
    // The first attempt gets no answer: the server dies while it waits.
    rx.then([Answer::hang()]);
    let data = Data::new();
    let client = Client::new();
    let settings = [
        ("STEPHOST_OUTBOUND_ALLOW_NETWORKS", r#"["127.0.0.0/8"]"#),
        ("STEPHOST_CALLBACK_TIMEOUT", "3s"),
        ("STEPHOST_LEASE_TTL", "1s"),
    ];
    let mut server = start_with(&data, &settings);
    let token = tenant(
        &client,
        &server.url,
        "hooks",
        ("echo", test_programs::ECHO),
        &[("one", json!({"steps": [{"id": "a", "step": "echo"}]}))],
    )
    .await;
    let (status, body) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/v1/executions", server.url),
        &token,
        Some(
            json!({"workflow_id": "one", "input_data": {"n": 7}, "custom_data": {"k": 1},
                    "callback": {"url": rx.url()}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded");
    let id = body["execution_id"].as_str().unwrap().to_owned();
    let first = rx.wait_for(1, Duration::from_secs(30)).await;
    server.kill_9();

    let server = start_with(&data, &settings);
    // Claimed again once the dead node's claim lapses (timeout + lease).
    let got = rx.wait_for(2, Duration::from_secs(60)).await;
    assert_eq!(got[1].header("webhook-id"), first[0].header("webhook-id"));
    assert_eq!(got[1].body, first[0].body);
    assert_eq!(got[1].json()["custom_data"], json!({"k": 1}));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, e) = call(
            &client,
            reqwest::Method::GET,
            format!("{}/v1/executions/{id}", server.url),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        if e["deliveries"][0]["status"] == "delivered" {
            // The attempt the kill cut short was never recorded.
            assert_eq!(
                e["deliveries"][0]["attempts"].as_array().unwrap().len(),
                1,
                "{e}"
            );
            assert_eq!(e["deliveries"].as_array().unwrap().len(), 1, "{e}");
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
