//! Callbacks end to end: a real receiver on 127.0.0.1 (reachable because
//! the test's config opens `127.0.0.0/8` with `outbound-allow-networks`)
//! gets every event asked for, in order, with the execution's
//! `custom_data` at the root and a Standard Webhooks signature that the
//! suite's own verifier accepts; failures are retried on the schedule (on
//! the engine's manual clock), `Retry-After` is honoured, 410 stops,
//! redirects are not followed, and internal targets are refused.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stephost::engine::Clock as _;

use crate::common::{Server, apply, assert_problem, get, manual_clock, start_with, wait_for};
use crate::receiver_support::{Answer, Receiver, verify};

const WAIT: Duration = Duration::from_secs(30);

fn allow_loopback(extra: Value) -> Value {
    let mut config = json!({"outbound-allow-networks": ["127.0.0.0/8"]});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    config
}

async fn secret(s: &Server, t: &str) -> Value {
    let r = s
        .call(Method::GET, "/v1/webhook-secret", Some(t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// Starts `workflow` asynchronously with a callback; returns its id.
async fn submit_with(s: &Server, t: &str, body: Value) -> String {
    let r = s
        .call(Method::POST, "/v1/executions/async", Some(t), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    r.body["execution_id"].as_str().unwrap().to_owned()
}

/// Runs `three` synchronously with a callback to `url`; the record.
async fn run_hooked(s: &Server, t: &str, url: &str) -> Value {
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(t),
            Some(json!({"workflow_id": "three", "callback": {"url": url}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// `POST /v1/executions/{id}/deliveries/{delivery}/retry`.
async fn retry(s: &Server, t: &str, id: &str, delivery: &Value) -> crate::common::Resp {
    let path = format!(
        "/v1/executions/{id}/deliveries/{}/retry",
        delivery.as_str().unwrap()
    );
    s.call(Method::POST, &path, Some(t), None).await
}

/// The execution's deliveries once `done` holds for them.
async fn deliveries_when(
    s: &Server,
    t: &str,
    id: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let e = wait_for(s, t, id, |e| {
        e["deliveries"].as_array().is_some_and(|d| done(d))
    })
    .await;
    e["deliveries"].as_array().unwrap().clone()
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_in_order_signed_with_custom_data_at_the_root() {
    let rx = Receiver::start().await;
    let s = start_with(
        Arc::new(stephost::engine::SystemClock),
        allow_loopback(json!({})),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "approval",
        json!({"steps": [{"id": "approve", "wait": {"signal": "approval"}},
                         {"id": "after", "step": "echo", "input": {"approved": "{{ steps.approve.output }}"}}]}),
    )
    .await;
    let secret = secret(&s, &t).await;
    let key = secret["secret"].as_str().unwrap().to_owned();
    assert!(key.starts_with("whsec_"), "{secret}");
    assert_eq!(
        self::secret(&s, &t).await["secret"],
        key,
        "made once, then kept"
    );

    let custom = json!({"order": 42, "tags": ["rush"], "nested": {"n": 1.50}});
    let id = submit_with(
        &s,
        &t,
        json!({"workflow_id": "approval", "input_data": {}, "custom_data": custom,
               "callback": {"url": rx.url(), "events": ["execution.started", "execution.waiting",
                                                         "step.finished", "execution.finished"]}}),
    )
    .await;
    let early = rx.wait_for(2, WAIT).await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/signals/approval"),
            Some(&t),
            Some(json!({"by": "ana"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let got = rx.wait_for(5, WAIT).await;
    assert_eq!(early[0].body, got[0].body);
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "execution.started",
            "execution.waiting",
            "step.finished",
            "step.finished",
            "execution.finished"
        ]
    );
    let mut ids = std::collections::HashSet::new();
    for r in &got {
        assert!(verify(&key, r, now_secs()), "signature: {r:?}");
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hook");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let body = r.json();
        // As given, at the root.
        assert_eq!(body["custom_data"], custom);
        assert_eq!(body["data"]["execution_id"], id.as_str());
        assert_eq!(body["data"]["workflow_id"], "approval");
        assert_eq!(body["data"]["workflow_version"], 1);
        assert!(ids.insert(r.header("webhook-id").unwrap().to_owned()));
    }
    let body = |i: usize| got[i].json();
    assert_eq!(body(1)["data"]["status"], "waiting");
    assert_eq!(body(2)["data"]["step"]["id"], "approve");
    assert_eq!(body(2)["data"]["step"]["output"], json!({"by": "ana"}));
    assert_eq!(body(3)["data"]["step"]["id"], "after");
    assert_eq!(
        body(3)["data"]["step"]["output"],
        json!({"approved": {"by": "ana"}})
    );
    assert_eq!(body(4)["data"]["status"], "succeeded");
    assert_eq!(
        body(4)["data"]["output"],
        json!({"approved": {"by": "ana"}})
    );

    // The verifier does refuse what it should.
    let mut forged = got[4].clone();
    forged.body = forged.body.replace("succeeded", "failed");
    assert!(!verify(&key, &forged, now_secs()));
    assert!(
        !verify(&key, &got[4], now_secs() + 3600),
        "an old timestamp"
    );

    let deliveries = deliveries_when(&s, &t, &id, |d| {
        d.len() == 5 && d.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    for (d, r) in deliveries.iter().zip(&got) {
        assert_eq!(d["webhook_id"], r.header("webhook-id").unwrap());
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(d["attempts"][0]["response_status"], 200);
        assert!(d.get("next_attempt_at").is_none(), "{d}");
    }
    assert_eq!(deliveries[2]["step"], "approve");
    assert_eq!(get(&s, &t, &id).await["callback"]["url"], rx.url());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_the_end_only_and_a_definition_may_set_the_callback() {
    let rx = Receiver::start().await;
    let s = start_with(
        Arc::new(stephost::engine::SystemClock),
        allow_loopback(json!({})),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(json!({"workflow_id": "three", "input_data": {"n": 1},
                        "custom_data": "plain text", "callback": {"url": rx.url()}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["callback"]["events"], json!(["execution.finished"]));
    let got = rx.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["type"], "execution.finished");
    assert_eq!(got[0].json()["custom_data"], "plain text");

    let with_default = json!({"steps": [{"id": "a", "step": "echo"}],
        "callback": {"url": rx.url(), "events": ["step.finished", "execution.finished"]}});
    apply(&s, &t, "hooked", with_default).await;
    let id = submit_with(
        &s,
        &t,
        json!({"workflow_id": "hooked", "input_data": {"x": 1}}),
    )
    .await;
    let got = rx.wait_for(3, WAIT).await;
    let types: Vec<Value> = got[1..].iter().map(|r| r.json()["type"].clone()).collect();
    assert_eq!(types, [json!("step.finished"), json!("execution.finished")]);
    assert_eq!(got[2].json()["data"]["execution_id"], id.as_str());
    assert!(got[2].json().get("custom_data").is_none());

    // A definition's callback is checked when it is stored.
    let bad = json!({"steps": [{"id": "a", "step": "echo"}],
        "callback": {"url": "http://10.0.0.1/hook", "events": []}});
    let r = s.workflow(&t, "bad", bad).await;
    assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid");
    let paths: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["$.callback.events", "$.callback.url"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_new_one_for_the_window() {
    let rx = Receiver::start().await;
    let clock = manual_clock();
    let s = start_with(clock.clone(), allow_loopback(json!({})), None).await;
    let t = s.fixture("acme").await;
    let old = secret(&s, &t).await["secret"].as_str().unwrap().to_owned();
    let r = s
        .call(Method::POST, "/v1/webhook-secret/rotate", Some(&t), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new = r.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(r.body["previous_secret"], old.as_str());
    assert_eq!(r.body["previous_valid_until"], "2030-01-02T00:00:00Z");
    assert_eq!(secret(&s, &t).await["secret"], new.as_str());

    let hook = rx.url();
    let run = || run_hooked(&s, &t, &hook);
    run().await;
    let got = rx.wait_for(1, WAIT).await;
    let now = clock.now().as_second();
    let sigs = got[0].header("webhook-signature").unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    assert!(verify(&new, &got[0], now));
    assert!(verify(&old, &got[0], now));

    // Past the window, only the new secret signs.
    clock.advance(Duration::from_secs(24 * 3600 + 1));
    run().await;
    let got = rx.wait_for(2, WAIT).await;
    let now = clock.now().as_second();
    assert_eq!(
        got[1]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    assert!(verify(&new, &got[1], now));
    assert!(!verify(&old, &got[1], now));
    let r = secret(&s, &t).await;
    assert!(r.get("previous_secret").is_none(), "{r}");

    // A token with `read` scope cannot read the secret: it is a credential.
    let r = s
        .call(
            Method::POST,
            "/v1/tenants/acme/tokens",
            Some(crate::common::ADMIN),
            Some(json!({"scopes": ["read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let reader = r.body["token"].as_str().unwrap().to_owned();
    let r = s
        .call(Method::GET, "/v1/webhook-secret", Some(&reader), None)
        .await;
    assert_problem(&r, StatusCode::FORBIDDEN, "full");
}

/// Waits until the delivery has `attempts` attempts recorded; returns it.
async fn delivery_after(s: &Server, t: &str, id: &str, attempts: usize) -> Value {
    deliveries_when(s, t, id, |d| {
        d.len() == 1 && d[0]["attempts"].as_array().unwrap().len() == attempts
    })
    .await
    .remove(0)
}

fn at(v: &Value) -> jiff::Timestamp {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_on_the_schedule_with_one_webhook_id() {
    let rx = Receiver::start().await;
    let clock = manual_clock();
    let s = start_with(
        clock.clone(),
        allow_loopback(json!({"callback-retry-delays": ["0s", "10s", "20s", "30s"]})),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    rx.then([500, 500, 500].map(|c| Answer::status(c).body("down")));
    let record = run_hooked(&s, &t, &rx.url()).await;
    let id = record["execution_id"].as_str().unwrap().to_owned();
    let finished = at(&record["finished_at"]);
    rx.wait_for(1, WAIT).await;
    for (n, delay) in [(1, 10u64), (2, 20), (3, 30)] {
        let d = delivery_after(&s, &t, &id, n).await;
        assert_eq!(d["status"], "pending");
        let last = &d["attempts"][n - 1];
        assert_eq!(last["response_status"], 500);
        assert_eq!(last["response_body"], "down");
        let gap = at(&d["next_attempt_at"]).duration_since(at(&last["at"]));
        let delay = Duration::from_secs(delay);
        assert!(
            gap >= delay.try_into().unwrap() && gap <= (delay * 11 / 10).try_into().unwrap(),
            "attempt {n}: {gap:?} after the last, scheduled {delay:?}"
        );
        assert_eq!(rx.requests().len(), n, "nothing is sent before it is due");
        clock.advance(
            at(&d["next_attempt_at"])
                .duration_since(clock.now())
                .try_into()
                .unwrap(),
        );
        rx.wait_for(n + 1, WAIT).await;
    }
    let d = delivery_after(&s, &t, &id, 4).await;
    assert_eq!(d["status"], "delivered");
    assert!(d.get("next_attempt_at").is_none());
    let statuses: Vec<&Value> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["response_status"])
        .collect();
    assert_eq!(
        statuses,
        [&json!(500), &json!(500), &json!(500), &json!(200)]
    );
    assert_eq!(at(&d["attempts"][0]["at"]), finished, "the first at once");
    let got = rx.requests();
    assert_eq!(got.len(), 4);
    let ids: std::collections::HashSet<&str> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "one webhook-id across retries");
    assert_eq!(ids.into_iter().next(), d["webhook_id"].as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_410_stops_and_redirects_are_not_followed() {
    let rx = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let clock = manual_clock();
    let s = start_with(
        clock.clone(),
        allow_loopback(json!({"callback-retry-delays": ["0s", "10s", "20s"]})),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    let run = || async {
        run_hooked(&s, &t, &rx.url()).await["execution_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    rx.then([Answer::status(503).header("Retry-After", "120")]);
    let slow = run().await;
    let d = delivery_after(&s, &t, &slow, 1).await;
    let gap = at(&d["next_attempt_at"]).duration_since(at(&d["attempts"][0]["at"]));
    assert_eq!(gap, jiff::SignedDuration::from_secs(120), "{d}");

    rx.then([Answer::status(410)]);
    let gone = run().await;
    let d = delivery_after(&s, &t, &gone, 1).await;
    assert_eq!(d["status"], "gone");
    assert!(d.get("next_attempt_at").is_none(), "{d}");

    rx.then([Answer::status(302).header("Location", &elsewhere.url())]);
    let moved = run().await;
    let d = delivery_after(&s, &t, &moved, 1).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["attempts"][0]["response_status"], 302);
    assert_eq!(elsewhere.connections(), 0, "the redirect was followed");

    // A delivery that stopped is sent again by hand, with its webhook-id.
    let before = rx.requests().len();
    let r = retry(&s, &t, &gone, &d["delivery_id"]).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "has no delivery");
    let gone_delivery = delivery_after(&s, &t, &gone, 1).await;
    let r = retry(&s, &t, &gone, &gone_delivery["delivery_id"]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["status"], "pending");
    let d = delivery_after(&s, &t, &gone, 2).await;
    assert_eq!(d["status"], "delivered");
    let got = rx.requests();
    assert!(got.len() > before);
    let last = got.last().unwrap();
    assert_eq!(
        last.header("webhook-id"),
        gone_delivery["webhook_id"].as_str()
    );
    let r = retry(&s, &t, "nope", &json!("dlv_x")).await;
    assert_problem(&r, StatusCode::NOT_FOUND, "nope");
}

/// Callback URLs the server refuses at submission, each with a host that is
/// an internal address however it is spelled, or a URL of the wrong kind.
fn refused_urls(port: u16) -> Vec<String> {
    [
        "http://127.0.0.1:{p}/hook",
        "http://localhost:{p}/hook",
        "http://[::1]:{p}/hook",
        "http://0x7f000001:{p}/hook",
        "http://2130706433:{p}/hook",
        "http://0177.0.0.1:{p}/hook",
        "http://127.1:{p}/hook",
        "http://[::ffff:127.0.0.1]:{p}/hook",
        "http://0.0.0.0:{p}/hook",
        "http://[::]:{p}/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://100.64.0.1/hook",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://224.0.0.1/hook",
        "http://[64:ff9b::7f00:1]/hook",
        "https://127.0.0.1:{p}/hook",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{p}/_x",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
        "http://user:pw@127.0.0.1:{p}/hook",
        "not a url",
    ]
    .iter()
    .map(|u| u.replace("{p}", &port.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_callback_targets_are_refused_and_the_receiver_sees_nothing() {
    let rx = Receiver::start().await;
    let clock = manual_clock();
    // No outbound switch: loopback is as closed as the rest.
    let s = start_with(clock.clone(), json!({}), None).await;
    let t = s.fixture("acme").await;
    apply(
        &s,
        &t,
        "approval",
        json!({"steps": [{"id": "approve", "wait": {"signal": "go"}}]}),
    )
    .await;
    let urls = refused_urls(rx.addr.port());
    assert!(urls.len() >= 25);
    for url in &urls {
        for path in ["/v1/executions", "/v1/executions/async"] {
            let r = s
                .call(
                    Method::POST,
                    path,
                    Some(&t),
                    Some(json!({"workflow_id": "three", "callback": {"url": url}})),
                )
                .await;
            assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "callback");
            assert_eq!(
                r.body["errors"][0]["path"], "$.callback.url",
                "{url}: {:?}",
                r.body
            );
        }
        let r = s
            .call(
                Method::POST,
                "/v1/schedules",
                Some(&t),
                Some(json!({"workflow_id": "three", "cron": "0 * * * *",
                            "callback": {"url": url}})),
            )
            .await;
        assert_problem(&r, StatusCode::UNPROCESSABLE_ENTITY, "callback");
    }

    // The same receiver, opened by the operator: accepted; then the server
    // restarts without the switch and the delivery is refused, not retried.
    let s = start_with(clock.clone(), allow_loopback(json!({})), Some(s)).await;
    let id = submit_with(
        &s,
        &t,
        json!({"workflow_id": "approval", "callback": {"url": rx.url()}}),
    )
    .await;
    wait_for(&s, &t, &id, |e| e["status"] == "waiting").await;
    let s = start_with(clock.clone(), json!({}), Some(s)).await;
    let r = s
        .call(
            Method::POST,
            &format!("/v1/executions/{id}/signals/go"),
            Some(&t),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let d = delivery_after(&s, &t, &id, 1).await;
    assert_eq!(d["status"], "refused", "{d}");
    assert!(
        d["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{d}"
    );
    assert!(d.get("next_attempt_at").is_none());
    assert_eq!(rx.connections(), 0, "the receiver saw a connection");
}

/// The first fenced code block in `doc` of language `lang`.
fn code_block(doc: &str, lang: &str) -> String {
    let start = doc
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no {lang} block"))
        + lang.len()
        + 4;
    let len = doc[start..].find("```").unwrap();
    doc[start..start + len].to_owned()
}

/// Runs `program` with `args`; its standard output, trimmed.
fn output(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} must be installed for this test: {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_python_and_javascript_verifiers_accept_a_real_callback() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/callbacks.md"))
        .unwrap();
    let python = code_block(&doc, "python");
    let js = code_block(&doc, "js");
    assert_eq!(python.trim().lines().count(), 3, "{python}");
    assert_eq!(js.trim().lines().count(), 3, "{js}");

    let rx = Receiver::start().await;
    let s = start_with(
        Arc::new(stephost::engine::SystemClock),
        allow_loopback(json!({})),
        None,
    )
    .await;
    let t = s.fixture("acme").await;
    let key = secret(&s, &t).await["secret"].as_str().unwrap().to_owned();
    let r = s
        .call(
            Method::POST,
            "/v1/executions",
            Some(&t),
            Some(
                json!({"workflow_id": "three", "input_data": {"text": "héllo \"quoted\""},
                        "callback": {"url": rx.url()}}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let got = rx.wait_for(1, WAIT).await.remove(0);
    let lit = |v: &str| serde_json::to_string(v).unwrap();
    for (body, want) in [
        (got.body.clone(), "True"),
        (got.body.replace("three", "four"), "False"),
    ] {
        let prelude = format!(
            "secret = {}\nmsg_id = {}\nts = {}\nbody = {}\nsignature = {}\n",
            lit(&key),
            lit(got.header("webhook-id").unwrap()),
            got.header("webhook-timestamp").unwrap(),
            lit(&body),
            lit(got.header("webhook-signature").unwrap()),
        );
        let program = format!("{prelude}{python}print(ok)\n");
        assert_eq!(output("python3", &["-c", &program]), want, "{program}");
        let prelude = format!(
            "const secret = {}, msgId = {}, ts = {}, body = {}, signature = {};\n",
            lit(&key),
            lit(got.header("webhook-id").unwrap()),
            got.header("webhook-timestamp").unwrap(),
            lit(&body),
            lit(got.header("webhook-signature").unwrap()),
        );
        let program = format!("{prelude}{js}console.log(ok ? 'True' : 'False');\n");
        assert_eq!(output("node", &["-e", &program]), want, "{program}");
    }
}
