//! `SIGTERM` of a node under load hands its work over.

use super::*;

/// `SIGTERM` of a node under load: readiness turns 503 at once, the node
/// claims nothing more, lets its running attempt finish and commits it,
/// hands back what it had not started, releases its leases and exits 0
/// well within its grace; the other node runs the rest. Nothing is lost
/// and no step runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_nodes_work_over_and_loses_and_doubles_nothing() {
    let schema = pg_support::Schema::new();
    let (dir_1, dir_2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let grace = [("STEPHOST_SHUTDOWN_GRACE", "20s")];
    let mut first = node_with(&schema, &dir_1, "node-1", true, true, &grace);
    let second = node_with(&schema, &dir_2, "node-2", true, true, &grace);
    let client = Client::new();
    let urls = [first.url.clone(), second.url.clone()];
    let nap = |n: u64| json!({"op": "nap", "n": n});
    let token = serve_support::tenant(
        &client,
        &urls[0],
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[
            (
                "two",
                json!({"steps": [
                    {"id": "a", "step": "h", "input": nap(300)},
                    {"id": "b", "step": "h", "input": nap(10), "needs": ["a"]}]}),
            ),
            (
                "long",
                json!({"steps": [{"id": "a", "step": "h", "input": nap(3000)}]}),
            ),
        ],
    )
    .await;
    // Submitted to node 1 with a slot free, so node 1 runs it.
    let long = submit(&client, &urls[0], &token, "long").await;
    until(&client, &urls[0], &token, &long, |e| {
        e["status"] == "running"
    })
    .await;
    let mut ids = vec![long.clone()];
    for i in 0..40 {
        ids.push(submit(&client, &urls[i % 2], &token, "two").await);
    }

    first.signal(libc::SIGTERM);
    let stopping = Instant::now();
    let deadline = stopping + Duration::from_secs(2);
    loop {
        let r = client.get(format!("{}/health/ready", urls[0])).send().await;
        if r.is_ok_and(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE) {
            break;
        }
        assert!(Instant::now() < deadline, "readiness never said 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(30)));
    let exited_at = jiff::Timestamp::now();
    let took = stopping.elapsed();
    assert!(exit.success(), "{exit}");
    assert!(
        took < Duration::from_secs(15),
        "the stop took {took:?}: it must wait for the 3 s attempt, not the 20 s grace"
    );
    let held = holdings(&client, &urls[1]).await;
    assert_eq!(held[0], ("node-1".to_owned(), 0), "{held:?}");

    for id in &ids {
        let done = until(&client, &urls[1], &token, id, |e| {
            e["status"] != "queued" && e["status"] != "running"
        })
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        each_step_ran_once(&done);
    }
    // The long attempt finished on node 1 before it exited, not on node 2
    // after a rerun.
    let long = until(&client, &urls[1], &token, &long, |_| true).await;
    let finished: jiff::Timestamp = long["steps"][0]["attempts"][0]["finished_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        finished < exited_at,
        "finished {finished}, node 1 exited {exited_at}: {long}"
    );
    drop(second);
}
