//! Cron schedules end to end on a manual clock: ticks fire once each and
//! start ordinary executions carrying `schedule_id` and `scheduled_at`;
//! each overlap policy; catch-up after downtime; pause, resume, trigger
//! and the Edges-style action paths; `start_at`/`end_at`; a deleted
//! workflow turning a schedule `invalid`; daylight-saving transitions in
//! Europe/Berlin and America/New_York; and precise problems for bad input.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{
    Resp, Server, apply, assert_problem, get, manual_clock as clock, start_with, wait_for,
};

async fn create(s: &Server, t: &str, body: Value) -> Resp {
    s.call(Method::POST, "/v1/schedules", Some(t), Some(body))
        .await
}

/// Creates a schedule, expecting 201.
async fn created(s: &Server, t: &str, body: Value) -> Value {
    let r = create(s, t, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    r.body
}

async fn schedule(s: &Server, t: &str, id: &str) -> Value {
    let r = s
        .call(Method::GET, &format!("/v1/schedules/{id}"), Some(t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

async fn act(s: &Server, t: &str, id: &str, action: &str) -> Resp {
    s.call(
        Method::POST,
        &format!("/v1/schedules/{id}/{action}"),
        Some(t),
        None,
    )
    .await
}

/// Polls a schedule until `done` holds (at most 30 s of real time).
async fn until(s: &Server, t: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = schedule(s, t, id).await;
        if done(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "gave up waiting: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The executions a schedule started, oldest first.
async fn runs(s: &Server, t: &str, id: &str) -> Vec<Value> {
    let r = s
        .call(
            Method::GET,
            &format!("/v1/executions?schedule_id={id}&limit=100"),
            Some(t),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let mut items = r.body["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

fn ticks(runs: &[Value]) -> Vec<&str> {
    runs.iter()
        .map(|e| e["scheduled_at"].as_str().unwrap())
        .collect()
}

fn times(v: &Value) -> Vec<&str> {
    v["next_fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect()
}

/// A tenant with the fixture's workflows and `gated`, whose executions
/// wait for a signal `go`.
async fn tenant(s: &Server) -> String {
    let t = s.fixture("acme").await;
    apply(
        s,
        &t,
        "gated",
        json!({"steps": [{"id": "gate", "wait": {"signal": "go"}}, {"id": "after", "step": "echo"}]}),
    )
    .await;
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_starts_one_execution_with_its_schedule_and_tick() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    clock.advance(Duration::from_secs(30));
    let r = create(
        &s,
        &t,
        json!({"schedule_id": "minutely", "workflow_id": "three", "cron": "* * * * *",
               "input_data": {"n": 1}, "custom_data": {"team": "ops"}, "description": "every minute"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.headers["location"], "/v1/schedules/minutely");
    let v = r.body;
    assert_eq!(v["state"], "active");
    assert_eq!(v["overlap"], "skip");
    assert_eq!(v["catchup_window"], "1h");
    assert_eq!(v["timezone"], "UTC");
    assert_eq!(v["workflow_version"], "latest");
    assert_eq!(
        times(&v),
        [
            "2030-01-01T00:01:00Z",
            "2030-01-01T00:02:00Z",
            "2030-01-01T00:03:00Z",
            "2030-01-01T00:04:00Z",
            "2030-01-01T00:05:00Z"
        ]
    );
    assert_eq!(
        (
            v["fired"].as_u64(),
            v["skipped"].as_u64(),
            v["missed"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );

    clock.advance(Duration::from_secs(30));
    until(&s, &t, "minutely", |v| v["fired"] == 1).await;
    let first = &runs(&s, &t, "minutely").await[0];
    assert_eq!(first["schedule_id"], "minutely");
    assert_eq!(first["scheduled_at"], "2030-01-01T00:01:00Z");
    assert_eq!(first["input_data"], json!({"n": 1}));
    assert_eq!(first["custom_data"], json!({"team": "ops"}));
    let id = first["execution_id"].as_str().unwrap().to_owned();
    wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;

    clock.advance(Duration::from_secs(60));
    let v = until(&s, &t, "minutely", |v| v["fired"] == 2).await;
    let all = runs(&s, &t, "minutely").await;
    assert_eq!(
        ticks(&all),
        ["2030-01-01T00:01:00Z", "2030-01-01T00:02:00Z"]
    );
    assert_eq!(v["next_fire_at"], "2030-01-01T00:03:00Z");
    // Newest first, with the execution's status.
    assert_eq!(v["last_executions"][1]["execution_id"], id.as_str());
    assert_eq!(v["last_executions"][1]["status"], "succeeded");
    assert_eq!(
        v["last_executions"][1]["scheduled_at"],
        "2030-01-01T00:01:00Z"
    );

    let listed = s
        .call(
            Method::GET,
            "/v1/schedules?workflow_id=three",
            Some(&t),
            None,
        )
        .await;
    assert_eq!(listed.body["items"][0]["schedule_id"], "minutely");
    let paused = s
        .call(Method::GET, "/v1/schedules?state=paused", Some(&t), None)
        .await;
    assert_eq!(paused.body["items"], json!([]));
    // Another tenant sees none of it.
    let other = s.tenant("other").await;
    let r = s
        .call(Method::GET, "/v1/schedules/minutely", Some(&other), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "minutely");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_overlap_policy_meets_a_running_execution_its_own_way() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    clock.advance(Duration::from_secs(30));
    for policy in ["skip", "buffer_one", "allow_all", "cancel_other"] {
        created(
            &s,
            &t,
            json!({"schedule_id": policy, "workflow_id": "gated", "cron": "* * * * *",
                   "overlap": policy}),
        )
        .await;
    }
    // 00:01: each starts one, which waits for its signal.
    clock.advance(Duration::from_secs(30));
    let mut first = std::collections::HashMap::new();
    for policy in ["skip", "buffer_one", "allow_all", "cancel_other"] {
        until(&s, &t, policy, |v| v["fired"] == 1).await;
        let run = runs(&s, &t, policy).await[0]["execution_id"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_for(&s, &t, &run, |e| e["status"] == "waiting").await;
        first.insert(policy, run);
    }
    // 00:02: the first executions still wait.
    clock.advance(Duration::from_secs(60));
    let v = until(&s, &t, "skip", |v| v["skipped"] == 1).await;
    assert_eq!(v["fired"], 1);
    let v = until(&s, &t, "buffer_one", |v| !v["buffered_at"].is_null()).await;
    assert_eq!(
        (v["buffered_at"].as_str(), v["fired"].as_u64()),
        (Some("2030-01-01T00:02:00Z"), Some(1))
    );
    until(&s, &t, "allow_all", |v| v["fired"] == 2).await;
    until(&s, &t, "cancel_other", |v| v["fired"] == 2).await;
    wait_for(&s, &t, &first["cancel_other"], |e| {
        e["status"] == "cancelled"
    })
    .await;
    let second = &runs(&s, &t, "cancel_other").await[1];
    assert_eq!(second["scheduled_at"], "2030-01-01T00:02:00Z");
    assert_ne!(second["status"], "cancelled");
    let allowed = runs(&s, &t, "allow_all").await;
    for e in &allowed {
        let id = e["execution_id"].as_str().unwrap();
        wait_for(&s, &t, id, |e| e["status"] == "waiting").await;
    }

    // 00:03: one tick is buffered already, so this one is skipped.
    clock.advance(Duration::from_secs(60));
    let v = until(&s, &t, "buffer_one", |v| v["skipped"] == 1).await;
    assert_eq!(v["buffered_at"], "2030-01-01T00:02:00Z");
    // The running execution ends: the buffered tick starts.
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{}/signals/go", first["buffer_one"]),
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let v = until(&s, &t, "buffer_one", |v| v["fired"] == 2).await;
    assert!(v["buffered_at"].is_null(), "{v}");
    let buffered = runs(&s, &t, "buffer_one").await;
    assert_eq!(
        ticks(&buffered),
        ["2030-01-01T00:01:00Z", "2030-01-01T00:02:00Z"]
    );
    assert_eq!(
        get(&s, &t, &first["buffer_one"]).await["status"],
        "succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_three_hours_down_only_the_catch_up_window_fires() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    clock.advance(Duration::from_secs(30));
    created(
        &s,
        &t,
        json!({"schedule_id": "c", "workflow_id": "three", "cron": "* * * * *",
               "overlap": "allow_all", "catchup_window": "10m"}),
    )
    .await;
    // Down from 00:00:30 to 03:00:30: 180 ticks pass, 00:01 to 03:00.
    let mut s = s;
    s.shutdown().await;
    clock.advance(Duration::from_secs(3 * 3600));
    let s = start_with(clock.clone(), json!({}), Some(s)).await;
    let v = until(&s, &t, "c", |v| v["fired"] == 10).await;
    assert_eq!(v["missed"], 170);
    assert_eq!(v["skipped"], 0);
    assert_eq!(v["next_fire_at"], "2030-01-01T03:01:00Z");
    let all = runs(&s, &t, "c").await;
    let expected: Vec<String> = (51..=60)
        .map(|m| format!("2030-01-01T0{}:{:02}:00Z", 2 + m / 60, m % 60))
        .collect();
    assert_eq!(ticks(&all), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_trigger_and_the_edges_action_paths() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    clock.advance(Duration::from_secs(30));
    created(
        &s,
        &t,
        json!({"schedule_id": "p", "workflow_id": "three", "cron": "* * * * *"}),
    )
    .await;
    let r = act(&s, &t, "p", "pause").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "paused");
    assert_eq!(r.body["next_fire_times"], json!([]));
    // Paused through 00:01 and 00:02.
    clock.advance(Duration::from_secs(100));
    let r = act(&s, &t, "p", "resume").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["next_fire_at"], "2030-01-01T00:03:00Z");
    // Resuming an active schedule changes nothing.
    assert_eq!(act(&s, &t, "p", "resume").await.status, StatusCode::OK);

    let r = act(&s, &t, "p", "trigger").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(
        r.headers["location"],
        format!("/v1/executions/{id}").as_str()
    );
    let e = wait_for(&s, &t, &id, |e| e["status"] == "succeeded").await;
    assert_eq!(e["schedule_id"], "p");
    assert_eq!(e["scheduled_at"], "2030-01-01T00:02:10Z");
    let v = schedule(&s, &t, "p").await;
    assert_eq!(v["fired"], 1);
    assert_eq!(v["last_executions"][0]["triggered"], true);

    clock.advance(Duration::from_secs(50));
    until(&s, &t, "p", |v| v["fired"] == 2).await;
    // The paused ticks never fired: the trigger, then 00:03.
    let all = runs(&s, &t, "p").await;
    assert_eq!(
        ticks(&all),
        ["2030-01-01T00:02:10Z", "2030-01-01T00:03:00Z"]
    );

    // The Edges action path and PATCH are the same update.
    let r = s
        .call(
            Method::POST,
            "/v1/schedules/p/update",
            Some(&t),
            Some(json!({"description": "via edges", "overlap": "allow_all"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["description"].as_str(), r.body["overlap"].as_str()),
        (Some("via edges"), Some("allow_all"))
    );
    let r = s
        .call(
            Method::PATCH,
            "/v1/schedules/p",
            Some(&t),
            Some(json!({"description": null, "paused": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["description"], Value::Null);
    assert_eq!(r.body["state"], "paused");
    assert_eq!(r.body["overlap"], "allow_all");

    // ... and so are the two deletes.
    let r = act(&s, &t, "p", "delete").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &act(&s, &t, "p", "delete").await,
        StatusCode::NOT_FOUND,
        "`p`",
    );
    let r = s
        .call(Method::DELETE, "/v1/schedules/p", Some(&t), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "`p`");
    created(
        &s,
        &t,
        json!({"schedule_id": "q", "workflow_id": "three", "cron": "@daily"}),
    )
    .await;
    let r = s
        .call(Method::DELETE, "/v1/schedules/q", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_problem(
        &act(&s, &t, "q", "trigger").await,
        StatusCode::NOT_FOUND,
        "`q`",
    );
    // The executions stay.
    assert_eq!(get(&s, &t, &id).await["schedule_id"], "p");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_and_end_at_bound_the_ticks_and_complete_the_schedule() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    let v = created(
        &s,
        &t,
        json!({"schedule_id": "w", "workflow_id": "three", "cron": "* * * * *", "overlap": "allow_all",
               "start_at": "2030-01-01T00:10:00Z", "end_at": "2030-01-01T00:12:00Z"}),
    )
    .await;
    assert_eq!(
        times(&v),
        [
            "2030-01-01T00:10:00Z",
            "2030-01-01T00:11:00Z",
            "2030-01-01T00:12:00Z"
        ]
    );
    clock.advance(Duration::from_secs(13 * 60));
    let v = until(&s, &t, "w", |v| v["state"] == "completed").await;
    assert_eq!(v["fired"], 3);
    assert_eq!(v["next_fire_times"], json!([]));
    let all = runs(&s, &t, "w").await;
    assert_eq!(
        ticks(&all),
        [
            "2030-01-01T00:10:00Z",
            "2030-01-01T00:11:00Z",
            "2030-01-01T00:12:00Z"
        ]
    );
    assert_problem(
        &act(&s, &t, "w", "resume").await,
        StatusCode::CONFLICT,
        "completed",
    );
    let listed = s
        .call(Method::GET, "/v1/schedules?state=completed", Some(&t), None)
        .await;
    assert_eq!(listed.body["items"][0]["schedule_id"], "w");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_of_a_deleted_workflow_turns_invalid_until_updated() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    apply(
        &s,
        &t,
        "doomed",
        json!({"steps": [{"id": "a", "step": "echo"}]}),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    created(
        &s,
        &t,
        json!({"schedule_id": "d", "workflow_id": "doomed", "cron": "* * * * *"}),
    )
    .await;
    let r = s
        .call(Method::DELETE, "/v1/workflows/doomed", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = s
        .call(Method::GET, "/v1/workflows/doomed", Some(&t), None)
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "doomed");

    clock.advance(Duration::from_secs(30));
    let v = until(&s, &t, "d", |v| v["state"] == "invalid").await;
    let reason = v["invalid_reason"].as_str().unwrap();
    assert!(reason.contains("doomed"), "{reason}");
    assert_eq!(v["last_error"]["scheduled_at"], "2030-01-01T00:01:00Z");
    assert_eq!(v["fired"], 0);
    assert_eq!(v["next_fire_times"], json!([]));
    assert!(runs(&s, &t, "d").await.is_empty());
    assert_problem(
        &act(&s, &t, "d", "resume").await,
        StatusCode::CONFLICT,
        "invalid",
    );
    assert_problem(
        &act(&s, &t, "d", "trigger").await,
        StatusCode::NOT_FOUND,
        "doomed",
    );
    let listed = s
        .call(Method::GET, "/v1/schedules?state=invalid", Some(&t), None)
        .await;
    assert_eq!(listed.body["items"][0]["schedule_id"], "d");

    // An update that points it at a workflow that exists revives it, from
    // now on.
    let r = s
        .call(
            Method::PATCH,
            "/v1/schedules/d",
            Some(&t),
            Some(json!({"workflow_id": "three"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "active");
    assert_eq!(r.body["invalid_reason"], Value::Null);
    assert_eq!(r.body["next_fire_at"], "2030-01-01T00:02:00Z");
    clock.advance(Duration::from_secs(60));
    until(&s, &t, "d", |v| v["fired"] == 1).await;
    assert_eq!(runs(&s, &t, "d").await[0]["workflow_id"], "three");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daylight_saving_transitions_fire_each_local_time_once() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    let cases = [
        // Berlin springs forward on 2030-03-31: 02:30 does not exist and
        // fires at 03:00 CEST.
        (
            "berlin-spring",
            "30 2 * * *",
            "Europe/Berlin",
            "2030-03-29T00:00:00Z",
            [
                "2030-03-29T01:30:00Z",
                "2030-03-30T01:30:00Z",
                "2030-03-31T01:00:00Z",
                "2030-04-01T00:30:00Z",
                "2030-04-02T00:30:00Z",
            ],
        ),
        // Berlin falls back on 2030-10-27: 02:30 happens twice and fires once.
        (
            "berlin-fall",
            "30 2 * * *",
            "Europe/Berlin",
            "2030-10-26T00:00:00Z",
            [
                "2030-10-26T00:30:00Z",
                "2030-10-27T00:30:00Z",
                "2030-10-28T01:30:00Z",
                "2030-10-29T01:30:00Z",
                "2030-10-30T01:30:00Z",
            ],
        ),
        // New York springs forward on 2030-03-10 and falls back on 2030-11-03.
        (
            "ny-spring",
            "30 2 * * *",
            "America/New_York",
            "2030-03-09T00:00:00Z",
            [
                "2030-03-09T07:30:00Z",
                "2030-03-10T07:00:00Z",
                "2030-03-11T06:30:00Z",
                "2030-03-12T06:30:00Z",
                "2030-03-13T06:30:00Z",
            ],
        ),
        (
            "ny-fall",
            "30 1 * * *",
            "America/New_York",
            "2030-11-02T00:00:00Z",
            [
                "2030-11-02T05:30:00Z",
                "2030-11-03T05:30:00Z",
                "2030-11-04T06:30:00Z",
                "2030-11-05T06:30:00Z",
                "2030-11-06T06:30:00Z",
            ],
        ),
    ];
    for (id, cron, tz, start, expected) in cases {
        let v = created(
            &s,
            &t,
            json!({"schedule_id": id, "workflow_id": "three", "cron": cron, "timezone": tz,
                   "start_at": start, "catchup_window": "1m"}),
        )
        .await;
        assert_eq!(times(&v), expected, "{id}");
    }
    // And it fires there: move the clock to the Berlin gap.
    let now: jiff::Timestamp = "2030-01-01T00:00:00Z".parse().unwrap();
    let gap: jiff::Timestamp = "2030-03-31T01:00:00Z".parse().unwrap();
    let before = gap.duration_since(now) - jiff::SignedDuration::from_secs(1);
    clock.advance(Duration::try_from(before).unwrap());
    // The two ticks before are older than the window: counted, not fired.
    until(&s, &t, "berlin-spring", |v| v["missed"] == 2).await;
    clock.advance(Duration::from_secs(1));
    until(&s, &t, "berlin-spring", |v| v["fired"] == 1).await;
    assert_eq!(
        ticks(&runs(&s, &t, "berlin-spring").await),
        ["2030-03-31T01:00:00Z"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_get_precise_problems() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    let base = json!({"workflow_id": "three", "cron": "* * * * *"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, path, needle) in [
        (
            with("cron", json!("61 * * * *")),
            "$.cron",
            "not a cron expression",
        ),
        (with("cron", json!("0 0 30 2 *")), "$.cron", "never matches"),
        (with("timezone", json!("Mars/Base")), "$.timezone", "IANA"),
        (
            with("overlap", json!("sometimes")),
            "$.overlap",
            "buffer_one",
        ),
        (
            with("catchup_window", json!("soon")),
            "$.catchup_window",
            "soon",
        ),
        (
            with("start_at", json!("tomorrow")),
            "$.start_at",
            "RFC 3339",
        ),
        (
            with("schedule_id", json!("a b")),
            "$.schedule_id",
            "schedule id",
        ),
        (
            with("workflow_id", json!("no/slash")),
            "$.workflow_id",
            "workflow id",
        ),
        (
            json!({"workflow_id": "three", "cron": "* * * * *", "start_at": "2030-02-01T00:00:00Z",
                   "end_at": "2030-01-01T00:00:00Z"}),
            "$.end_at",
            "after",
        ),
    ] {
        let r = create(&s, &t, body.clone()).await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
        assert_eq!(r.body["errors"][0]["path"], path, "{body}: {:?}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{body}: `{message}` lacks `{needle}`"
        );
    }
    let r = create(&s, &t, with("surprise", json!(1))).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
    let r = create(&s, &t, with("workflow_id", json!("nowhere"))).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "nowhere");
    created(&s, &t, with("schedule_id", json!("once"))).await;
    let r = create(&s, &t, with("schedule_id", json!("once"))).await;
    assert_problem(&r, StatusCode::CONFLICT, "already exists");
    let r = s
        .client
        .post(format!("{}/v1/schedules", s.url))
        .bearer_auth(&t)
        .header("content-type", "text/plain")
        .body("cron")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = s
        .call(
            Method::PATCH,
            "/v1/schedules/once",
            Some(&t),
            Some(json!({"cron": "nope"})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "does not fit");
    assert_eq!(r.body["errors"][0]["path"], "$.cron");
    let r = s
        .call(
            Method::PATCH,
            "/v1/schedules/ghost",
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_problem(&r, StatusCode::NOT_FOUND, "ghost");
    for (path, needle) in [
        ("/v1/schedules?state=sometimes", "state"),
        ("/v1/schedules?limit=0", "limit"),
        ("/v1/schedules?cursor=garbage", "cursor"),
        ("/v1/executions?schedule_id=a%20b", "schedule_id"),
        ("/v1/schedules/a%20b", "schedule_id"),
    ] {
        let r = s.call(Method::GET, path, Some(&t), None).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, needle);
    }
    let r = s.call(Method::GET, "/v1/schedules", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_whose_input_no_longer_fits_turns_invalid_until_updated() {
    let clock = clock();
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = tenant(&s).await;
    apply(
        &s,
        &t,
        "typed",
        json!({"steps": [{"id": "a", "step": "echo"}]}),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    created(
        &s,
        &t,
        json!({"schedule_id": "i", "workflow_id": "typed", "cron": "* * * * *",
               "input_data": {"n": "seven"}}),
    )
    .await;
    // The workflow's next version wants a number.
    apply(
        &s,
        &t,
        "typed",
        json!({"input_schema": {"type": "object", "required": ["n"],
                                "properties": {"n": {"type": "integer"}}},
               "steps": [{"id": "a", "step": "echo"}]}),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    let v = until(&s, &t, "i", |v| v["state"] == "invalid").await;
    let reason = v["invalid_reason"].as_str().unwrap();
    assert!(reason.contains("$.input_data.n"), "{reason}");
    assert_eq!(v["last_error"]["message"], reason);
    assert!(runs(&s, &t, "i").await.is_empty());
    // A change that does not fit either is refused and changes nothing.
    let r = s
        .call(
            Method::PATCH,
            "/v1/schedules/i",
            Some(&t),
            Some(json!({"input_data": {"n": 1.5}})),
        )
        .await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "input_schema");
    assert_eq!(schedule(&s, &t, "i").await["state"], "invalid");
    let r = s
        .call(
            Method::PATCH,
            "/v1/schedules/i",
            Some(&t),
            Some(json!({"input_data": {"n": 7}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["state"], "active");
    clock.advance(Duration::from_secs(60));
    until(&s, &t, "i", |v| v["fired"] == 1).await;
    let run = &runs(&s, &t, "i").await[0];
    assert_eq!(run["input_data"], json!({"n": 7}));
    assert_eq!(run["workflow_version"], 2);
}
