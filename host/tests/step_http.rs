//! HTTP from steps in the real sandbox: a Rust step (the SDK's `http`
//! module, through the hostile guest's `http` op) calls the test's own
//! receiver on 127.0.0.1 when its grant allows the host, and is denied,
//! without a connection, when any of the three lists does not, when a cap
//! is reached, or when the address is internal (the SSRF table). Every
//! request is on the attempt's record, and secrets stay out of the log.

#[path = "receiver_support/mod.rs"]
mod receiver_support;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use receiver_support::{Answer, Receiver};
use serde_json::{Value, json};
use stephost::model::{HostPattern, HttpCaps, HttpGrant, Outcome, StepHttpPolicy};
use stephost::outbound::{self, Lookup, Outbound};
use stephost::sandbox::{AttemptReport, Cancel, Capabilities, Overrides, Sandbox, Settings};

/// Names the test resolves itself: `receiver.test` is loopback.
#[derive(Debug)]
struct TestNames(HashMap<&'static str, Vec<IpAddr>>);

impl Lookup for TestNames {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        match self.0.get(host.as_str()).cloned() {
            Some(found) => Box::pin(async move { Ok(found) }),
            None => outbound::SystemLookup.lookup(host),
        }
    }
}

fn outbound_client(allow: &[&str]) -> Outbound {
    let names = TestNames(HashMap::from([
        ("receiver.test", vec!["127.0.0.1".parse().unwrap()]),
        ("private.test", vec!["10.1.2.3".parse().unwrap()]),
        ("metadata.test", vec!["169.254.169.254".parse().unwrap()]),
    ]));
    Outbound::with_lookup(
        &outbound::Settings {
            allow_networks: allow.iter().map(|n| n.parse().unwrap()).collect(),
            ..outbound::Settings::default()
        },
        Arc::new(names),
    )
    .unwrap()
}

/// A sandbox whose steps may reach 127.0.0.0/8 (the operator's switch),
/// and one whose steps may reach no internal network at all.
fn sandbox(open: bool) -> &'static Sandbox {
    static OPEN: OnceLock<Sandbox> = OnceLock::new();
    static CLOSED: OnceLock<Sandbox> = OnceLock::new();
    let (cell, allow): (_, &[&str]) = if open {
        (&OPEN, &["127.0.0.0/8"])
    } else {
        (&CLOSED, &[])
    };
    cell.get_or_init(|| {
        Sandbox::new(Settings {
            outbound: Some(outbound_client(allow)),
            ..Settings::default()
        })
        .unwrap()
    })
}

fn patterns(list: &[&str]) -> Vec<HostPattern> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

/// The grant of a step allowing `step`, of a tenant allowing `tenant`,
/// under a server allowing `server`.
fn grant(step: &[&str], tenant: &[&str], server: &[&str], caps: HttpCaps) -> HttpGrant {
    StepHttpPolicy {
        allow: patterns(server),
        caps,
    }
    .grant(patterns(step), caps, &patterns(tenant))
}

async fn run(
    sandbox: &Sandbox,
    input: Value,
    http: Option<HttpGrant>,
    config: &[(&str, &str)],
    secrets: &[&str],
    o: Overrides,
) -> AttemptReport {
    let step = sandbox
        .prepare(&test_programs::read(test_programs::HOSTILE))
        .unwrap();
    let caps = Capabilities {
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
        http,
    };
    sandbox
        .run(
            &step,
            &input.to_string(),
            &sandbox.limits(&o).unwrap(),
            &caps,
            &Cancel::new(),
        )
        .await
        .unwrap()
}

fn results(r: &AttemptReport) -> Vec<Value> {
    match &r.outcome {
        Outcome::Succeeded { output } => {
            let out: Value = serde_json::from_str(output).unwrap();
            out["results"].as_array().unwrap().clone()
        }
        other => panic!("expected success, got {other:?}; logs {:?}", r.logs),
    }
}

fn logs(r: &AttemptReport) -> Vec<String> {
    r.logs.iter().map(|l| l.message.clone()).collect()
}

#[tokio::test]
async fn a_granted_host_is_reached_with_its_secret_header_and_recorded() {
    let rx = Receiver::start().await;
    rx.answer_by_default(Answer::status(200).body("pong"));
    let host = rx.addr.to_string();
    let url = format!("{}?key=s3cr3t-value", rx.url());
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": [url], "text": "ping"}),
        Some(grant(&[&host], &["127.0.0.1"], &["*"], HttpCaps::DEFAULT)),
        &[("token", "s3cr3t-value")],
        &["s3cr3t-value"],
        Overrides::default(),
    )
    .await;
    let got = results(&r);
    assert_eq!(
        got,
        [json!({"status": 200, "body": "pong"})],
        "{:?}",
        logs(&r)
    );
    // The receiver got the request, body and secret header as sent.
    let seen = rx.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/hook?key=s3cr3t-value");
    assert_eq!(seen[0].body, "ping");
    assert_eq!(seen[0].header("authorization"), Some("Bearer s3cr3t-value"));
    assert_eq!(seen[0].header("host"), Some(host.as_str()));
    // The attempt's record: method, host, status, bytes; no path.
    assert_eq!(r.http.len(), 1, "{:?}", r.http);
    let rec = &r.http[0];
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.host, host);
    assert_eq!(rec.status, Some(200));
    assert_eq!(rec.bytes, 4);
    assert_eq!(rec.error, None);
    // The log names the URL with the secret redacted.
    let lines = logs(&r);
    let expected = format!("outbound HTTP request POST http://{host}/hook?key=[REDACTED]: 200 in ");
    assert!(lines.iter().any(|l| l.starts_with(&expected)), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("s3cr3t-value")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_host_outside_any_list_is_denied_without_a_connection() {
    let rx = Receiver::start().await;
    let host = rx.addr.to_string();
    let caps = HttpCaps::DEFAULT;
    let cases = [
        (
            None,
            "steps have no network access unless their definition lists the host",
        ),
        (
            Some(grant(&["api.example.com"], &["*"], &["*"], caps)),
            "is not in the step's `allow_http`",
        ),
        (
            Some(grant(&[&host], &["10.0.0.1"], &["*"], caps)),
            "is not in the tenant's egress allowlist",
        ),
        (
            Some(grant(&[&host], &["*"], &["*.example.com"], caps)),
            "is not in the server's `step-http-allow`",
        ),
        (
            Some(grant(&[&host], &[], &["*"], caps)),
            "is not in the tenant's egress allowlist",
        ),
    ];
    for (http, why) in cases {
        let r = run(
            sandbox(true),
            json!({"op": "http", "urls": [rx.url()]}),
            http,
            &[],
            &[],
            Overrides::default(),
        )
        .await;
        let got = results(&r);
        assert_eq!(got[0]["error"], "HttpRequestDenied", "{why}: {got:?}");
        let lines = logs(&r);
        let denied = format!(
            "outbound HTTP request GET {} denied (HTTP-request-denied): ",
            rx.url()
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&denied) && l.contains(why)),
            "{why}: {lines:?}"
        );
        assert_eq!(r.http.len(), 1);
        assert!(
            r.http[0].error.as_deref().unwrap().starts_with("denied: "),
            "{:?}",
            r.http[0]
        );
        assert_eq!(r.http[0].status, None);
    }
    assert_eq!(rx.connections(), 0, "a denied request connected");
}

#[tokio::test]
async fn the_caps_bound_requests_response_bytes_and_open_requests() {
    let rx = Receiver::start().await;
    rx.answer_by_default(Answer::status(200).body(&"x".repeat(100)));
    let host = rx.addr.to_string();
    let caps = |max_requests, max_response_bytes, max_concurrent| HttpCaps {
        max_requests,
        max_response_bytes,
        max_concurrent,
    };

    // Two requests allowed: the third is denied and never sent.
    let urls = vec![rx.url(); 3];
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": urls}),
        Some(grant(&[&host], &["*"], &["*"], caps(2, 1 << 20, 4))),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    let got = results(&r);
    assert_eq!(got[0]["status"], 200);
    assert_eq!(got[1]["status"], 200);
    assert_eq!(got[2]["error"], "HttpRequestDenied", "{got:?}");
    assert!(
        logs(&r)
            .iter()
            .any(|l| l.contains("the attempt may make 2 requests (`http_requests`)")),
        "{:?}",
        logs(&r)
    );
    assert_eq!(rx.requests().len(), 2);
    assert_eq!(r.http.len(), 3);

    // 150 response bytes in all: the second body goes past them.
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": vec![rx.url(); 2]}),
        Some(grant(&[&host], &["*"], &["*"], caps(10, 150, 4))),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    let got = results(&r);
    assert_eq!(got[0]["status"], 200);
    // The body's stream fails; wasmtime's stream error carries the text,
    // not the error code.
    assert!(
        got[1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("body size exceeds limit: 150 bytes")),
        "{got:?}"
    );
    assert_eq!(r.http[0].bytes, 100);
    assert!(
        r.http[1]
            .error
            .as_deref()
            .unwrap()
            .contains("`http_response_bytes`"),
        "{:?}",
        r.http[1]
    );

    // One open at a time: the second, started before the first is read,
    // is refused; one started after is not.
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": vec![rx.url(); 2], "together": true}),
        Some(grant(&[&host], &["*"], &["*"], caps(10, 1 << 20, 1))),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    let got = results(&r);
    assert_eq!(got[0]["status"], 200, "{got:?}");
    assert_eq!(got[1]["error"], "ConnectionLimitReached", "{got:?}");
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": vec![rx.url(); 2]}),
        Some(grant(&[&host], &["*"], &["*"], caps(10, 1 << 20, 1))),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    assert!(results(&r).iter().all(|g| g["status"] == 200));
}

#[tokio::test]
async fn the_wall_clock_limit_covers_time_spent_in_http() {
    let rx = Receiver::start().await;
    rx.answer_by_default(Answer::hang());
    let host = rx.addr.to_string();
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": [rx.url()]}),
        Some(grant(&[&host], &["*"], &["*"], HttpCaps::DEFAULT)),
        &[],
        &[],
        Overrides {
            timeout: Some(Duration::from_millis(500)),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut, "{:?}", logs(&r));
    assert_eq!(rx.requests().len(), 1, "the request was sent");
}

/// Internal targets, each refused for a step whose every list allows any
/// host, with no connection reaching the receiver.
fn ssrf_table(port: u16) -> Vec<String> {
    let p = port;
    [
        "http://127.0.0.1:{p}/",
        "http://localhost:{p}/",
        "http://LOCALHOST.:{p}/",
        "http://api.localhost:{p}/",
        "http://[::1]:{p}/",
        "http://0x7f000001:{p}/",
        "http://2130706433:{p}/",
        "http://0177.0.0.1:{p}/",
        "http://127.1:{p}/",
        "http://0x7f.0.0.1:{p}/",
        "http://[::ffff:127.0.0.1]:{p}/",
        "http://[::ffff:7f00:1]:{p}/",
        "http://[64:ff9b::7f00:1]:{p}/",
        "http://0.0.0.0:{p}/",
        "http://[::]:{p}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "https://127.0.0.1:{p}/",
        "http://receiver.test:{p}/",
        "http://private.test/",
        "http://metadata.test/latest/meta-data/",
        "http://user:pw@127.0.0.1:{p}/",
        "http://user:pw@example.com/",
    ]
    .iter()
    .map(|u| u.replace("{p}", &p.to_string()))
    .collect()
}

#[tokio::test]
async fn internal_targets_are_refused_for_steps_without_a_connection() {
    let rx = Receiver::start().await;
    let table = ssrf_table(rx.addr.port());
    assert!(table.len() >= 25);
    let everything = grant(
        &["*"],
        &["*"],
        &["*"],
        HttpCaps {
            max_requests: 100,
            ..HttpCaps::DEFAULT
        },
    );
    let r = run(
        sandbox(false),
        json!({"op": "http", "urls": table}),
        Some(everything.clone()),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    let got = results(&r);
    assert_eq!(got.len(), table.len());
    for (url, g) in table.iter().zip(&got) {
        assert_eq!(g["error"], "HttpRequestDenied", "{url}: {g}");
    }
    // Each is on the record as refused.
    assert_eq!(r.http.len(), table.len());
    assert!(
        r.http.iter().all(|h| h
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("refused: "))),
        "{:?}",
        r.http
    );
    // Schemes other than http and https never leave the guest's side.
    let r = run(
        sandbox(false),
        json!({"op": "http", "urls": ["file:///etc/passwd", format!("gopher://127.0.0.1:{}/_x", rx.addr.port())]}),
        Some(everything),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    assert!(results(&r).iter().all(|g| g.get("error").is_some()));
    assert_eq!(rx.connections(), 0, "the receiver saw a connection");
}

#[tokio::test]
async fn a_redirect_is_the_answer_and_is_not_followed() {
    let target = Receiver::start().await;
    let rx = Receiver::start().await;
    rx.answer_by_default(Answer::status(302).header("location", &target.url()));
    let host = rx.addr.to_string();
    let r = run(
        sandbox(true),
        json!({"op": "http", "urls": [rx.url()]}),
        Some(grant(&[&host], &["*"], &["*"], HttpCaps::DEFAULT)),
        &[],
        &[],
        Overrides::default(),
    )
    .await;
    assert_eq!(results(&r)[0]["status"], 302);
    assert_eq!(target.connections(), 0, "the redirect was followed");
}
