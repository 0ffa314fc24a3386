//! A one-second schedule while nodes come and go.

use super::*;

/// A schedule ticking every second for 30 s while nodes are killed and
/// restarted (and one stopped gracefully): exactly one execution per tick,
/// no tick skipped, none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_schedule_fires_once_per_tick_while_nodes_come_and_go() {
    let schema = pg_support::Schema::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let lease = [("STEPHOST_LEASE_TTL", "2s")];
    let start = |i: usize| node_with(&schema, &dirs[i], &format!("node-{i}"), true, true, &lease);
    let mut up: Vec<Serve> = (0..3).map(start).collect();
    let client = Client::new();
    let token = serve_support::tenant(
        &client,
        &up[0].url,
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[(
            "tick",
            json!({"steps": [{"id": "a", "step": "h", "input": {"op": "nap", "n": 1}}]}),
        )],
    )
    .await;
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{}/v1/schedules", up[0].url),
        &token,
        Some(json!({"schedule_id": "every-second", "workflow_id": "tick",
                    "cron": "* * * * * *", "overlap": "allow_all"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let begun = Instant::now();
    let at = |s: u64| begun + Duration::from_secs(s);
    let sleep_until = |t: Instant| tokio::time::sleep_until(t.into());
    sleep_until(at(5)).await;
    up[0].kill_9();
    sleep_until(at(10)).await;
    up[0] = start(0);
    sleep_until(at(15)).await;
    up[1].kill_9();
    sleep_until(at(20)).await;
    up[1] = start(1);
    sleep_until(at(25)).await;
    up[2].signal(libc::SIGTERM);
    let exit = tokio::task::block_in_place(|| up[2].wait_exit(Duration::from_secs(30)));
    assert!(exit.success(), "{exit}");
    up[2] = start(2);
    sleep_until(at(30)).await;
    let (status, body) = call(
        &client,
        Method::POST,
        format!("{}/v1/schedules/every-second/pause", up[1].url),
        &token,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Ticks that were due when the pause came may still be firing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = list_all(&client, &up[1].url, &token, "&schedule_id=every-second").await;
    let mut ticks: Vec<jiff::Timestamp> = runs
        .iter()
        .map(|e| e["scheduled_at"].as_str().unwrap().parse().unwrap())
        .collect();
    ticks.sort();
    let distinct: std::collections::BTreeSet<_> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick ran twice: {ticks:?}");
    assert!(
        ticks.len() >= 25,
        "only {} ticks in 30 s: {ticks:?}",
        ticks.len()
    );
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
