//! Three nodes through `kill -9` and a stall past the lease.

use super::*;

const TOTAL: usize = 3000;

/// Three nodes take 3,000 async executions submitted round robin; one is
/// killed with `kill -9` and another stopped (`SIGSTOP`) for longer than
/// its lease, then continued. Every execution ends exactly once (one
/// terminal entry in its history, `succeeded`), every step of each has
/// exactly one attempt in the record (attempts in flight on the dead or
/// stalled node leave none: they ran again elsewhere), and the stalled
/// node, woken, finds its leases gone and writes nothing over the records
/// the others finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_survive_kill_9_and_a_stall_past_the_lease() {
    let schema = pg_support::Schema::new();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let lease = [("STEPHOST_LEASE_TTL", "2s")];
    let mut nodes_up: Vec<Serve> = (0..3)
        .map(|i| node_with(&schema, &dirs[i], &format!("node-{i}"), true, true, &lease))
        .collect();
    let urls: Vec<String> = nodes_up.iter().map(|n| n.url.clone()).collect();
    let client = Client::new();
    let nap = json!({"op": "nap", "n": 1});
    let token = serve_support::tenant(
        &client,
        &urls[0],
        ADMIN,
        "acme",
        ("h", test_programs::HOSTILE),
        &[(
            "three",
            json!({"steps": [
                {"id": "a", "step": "h", "input": nap},
                {"id": "b", "step": "h", "input": nap, "needs": ["a"]},
                {"id": "c", "step": "h", "input": nap, "needs": ["b"]}]}),
        )],
    )
    .await;

    let mut alive = [true, true, true];
    let mut accepted: Vec<String> = Vec::with_capacity(TOTAL);
    let mut stopped_at = None;
    let mut next = 0usize;
    for round in 0..TOTAL / 50 {
        if round == 15 {
            nodes_up[0].kill_9();
            alive[0] = false;
        }
        if round == 25 {
            // Node 1 holds work when it stalls.
            let deadline = Instant::now() + Duration::from_secs(20);
            while held_by(&client, &urls[2], "node-1").await == 0 {
                assert!(Instant::now() < deadline, "node 1 never held anything");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            nodes_up[1].signal(libc::SIGSTOP);
            stopped_at = Some(Instant::now());
            alive[1] = false;
        }
        let mut batch = Vec::new();
        for _ in 0..50 {
            while !alive[next % 3] {
                next += 1;
            }
            let url = urls[next % 3].clone();
            next += 1;
            let (client, token) = (client.clone(), token.clone());
            batch.push(tokio::spawn(async move {
                submit(&client, &url, &token, "three").await
            }));
        }
        for b in batch {
            accepted.push(b.await.unwrap());
        }
    }
    // Stalled for longer than the 2 s lease (its work taken over meanwhile).
    let stopped_at = stopped_at.unwrap();
    let stall = Duration::from_secs(5);
    if stopped_at.elapsed() < stall {
        tokio::time::sleep(stall - stopped_at.elapsed()).await;
    }
    nodes_up[1].signal(libc::SIGCONT);

    let deadline = Instant::now() + Duration::from_secs(300);
    let finished = loop {
        let done = list_all(&client, &urls[2], &token, "").await;
        let unfinished = done
            .iter()
            .filter(|e| {
                !["succeeded", "failed", "cancelled", "timed_out"]
                    .contains(&e["status"].as_str().unwrap_or(""))
            })
            .count();
        if done.len() == TOTAL && unfinished == 0 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "{unfinished} of {} executions unfinished",
            done.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut ids: Vec<&str> = finished
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut wanted: Vec<&str> = accepted.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    assert_eq!(
        ids, wanted,
        "the listing holds exactly the accepted executions"
    );
    for id in &accepted {
        let (status, e) = call(
            &client,
            Method::GET,
            format!("{}/v1/executions/{id}", urls[2]),
            &token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["status"], "succeeded", "{e}");
        let terminal = e["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| {
                ["succeeded", "failed", "cancelled", "timed_out"]
                    .contains(&h["status"].as_str().unwrap_or(""))
            })
            .count();
        assert_eq!(terminal, 1, "ended {terminal} times: {e}");
        each_step_ran_once(&e);
    }
    // The woken node found its leases taken over and stopped those drivers
    // (the record checks above show nothing of its late writes survived).
    let lost = nodes_up[1].logged("lease was lost") + nodes_up[1].logged("the lease of executions");
    assert!(lost >= 1, "node 1 never noticed a lost lease");
    eprintln!(
        "{TOTAL} executions on three nodes: node 1 noticed {lost} lost-lease events after its stall"
    );
}
