//! Python (componentize-py) and JavaScript (componentize-js, default flags)
//! components built against the same `step` world, run in the real sandbox.
//!
//! `scripts/test` builds them; these tests fail, never skip, without them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use stephost::model::{LogSource, Outcome};
use stephost::sandbox::{
    AttemptReport, Cancel, Capabilities, Limits, Overrides, Prepared, Sandbox, Settings,
};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        // Steps may reach 127.0.0.0/8 (the operator's switch) when their
        // grant lets them: the HTTP tests call the test's own listener.
        let outbound = stephost::outbound::Outbound::new(&stephost::outbound::Settings {
            allow_networks: vec!["127.0.0.0/8".parse().unwrap()],
            ..stephost::outbound::Settings::default()
        })
        .unwrap();
        Sandbox::new(Settings {
            cache_dir: Some(test_programs::polyglot_cache_dir()),
            outbound: Some(outbound),
            ..Settings::default()
        })
        .expect("sandbox")
    })
}

fn component(file: &'static str) -> Arc<Prepared> {
    static PY: OnceLock<Arc<Prepared>> = OnceLock::new();
    static JS: OnceLock<Arc<Prepared>> = OnceLock::new();
    let cell = if file == "py-guest.wasm" { &PY } else { &JS };
    cell.get_or_init(|| {
        let bytes = std::fs::read(test_programs::polyglot(file)).unwrap();
        sandbox().prepare(&bytes).expect("prepare")
    })
    .clone()
}

async fn run(file: &'static str, input: Value, o: Overrides) -> AttemptReport {
    run_granted(file, input, o, None).await
}

async fn run_granted(
    file: &'static str,
    input: Value,
    o: Overrides,
    http: Option<stephost::model::HttpGrant>,
) -> AttemptReport {
    let step = component(file);
    let caps = Capabilities {
        config: [("greeting".to_owned(), "hello ✓".to_owned())].into(),
        secrets: Vec::new(),
        http,
    };
    sandbox()
        .run(
            &step,
            &input.to_string(),
            &sandbox().limits(&o).unwrap(),
            &caps,
            &Cancel::new(),
        )
        .await
        .unwrap()
}

fn output(r: &AttemptReport) -> Value {
    match &r.outcome {
        Outcome::Succeeded { output } => serde_json::from_str(output).unwrap(),
        other => panic!("expected success, got {other:?}; logs {:?}", r.logs),
    }
}

async fn echo_round_trips(file: &'static str, lang: &str) {
    let value = json!({"s": "héllo ✓ 😀", "n": [1, 2.5, null, true], "nested": {"k": "v"}});
    let r = run(
        file,
        json!({"op": "echo", "value": value}),
        Overrides::default(),
    )
    .await;
    assert_eq!(
        output(&r),
        json!({"echo": value, "lang": lang, "config": "hello ✓"})
    );
    let log = r.logs.iter().find(|l| l.source == LogSource::Log).unwrap();
    assert_eq!(log.message, format!("echo from {lang}"));
    assert!(
        r.logs
            .iter()
            .any(|l| l.source == LogSource::Stdout
                && l.message == format!("stdout line from {lang}")),
        "{:?}",
        r.logs
    );
    assert!(r.metering.fuel_consumed > 0);
    assert!(r.metering.memory_peak_bytes > 1 << 20);
}

async fn guest_error_is_failed(file: &'static str) {
    let r = run(file, json!({"op": "fail"}), Overrides::default()).await;
    match r.outcome {
        Outcome::Failed { error } => {
            assert_eq!(error.code, "bad_input");
            assert_eq!(error.message, "the input was rejected");
            assert!(!error.retryable);
        }
        other => panic!("{other:?}"),
    }
}

async fn exception_is_trapped_with_its_text(file: &'static str, lang: &str) {
    let r = run(file, json!({"op": "throw"}), Overrides::default()).await;
    match r.outcome {
        Outcome::Trapped { message, .. } => {
            assert!(message.contains(&format!("boom from {lang}")), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

async fn loops_are_stopped_by_fuel_and_by_time(file: &'static str) {
    let r = run(
        file,
        json!({"op": "loop"}),
        Overrides {
            fuel: Some(200_000_000),
            timeout: Some(Duration::from_secs(120)),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::FuelExhausted);
    let r = run(
        file,
        json!({"op": "loop"}),
        Overrides {
            fuel: Some(Limits::CEILING.fuel),
            timeout: Some(Duration::from_millis(500)),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert!(r.metering.wall_time() < Duration::from_secs(5));
}

#[tokio::test]
async fn python_echo_round_trips_with_log_stdout_and_config() {
    echo_round_trips("py-guest.wasm", "python").await;
}

#[tokio::test]
async fn python_step_error_is_failed() {
    guest_error_is_failed("py-guest.wasm").await;
}

#[tokio::test]
async fn python_exception_is_trapped_with_the_traceback_text() {
    exception_is_trapped_with_its_text("py-guest.wasm", "python").await;
}

#[tokio::test]
async fn python_infinite_loop_is_stopped() {
    loops_are_stopped_by_fuel_and_by_time("py-guest.wasm").await;
    echo_round_trips("py-guest.wasm", "python").await;
}

#[tokio::test]
async fn python_sees_no_environment_or_arguments() {
    let r = run("py-guest.wasm", json!({"op": "env"}), Overrides::default()).await;
    assert_eq!(output(&r), json!({"env": {}, "args": []}));
}

#[tokio::test]
async fn js_default_build_imports_wasi_http_and_runs() {
    let step = component("js-guest.wasm");
    assert!(
        step.imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@")),
        "{:?}",
        step.imports
    );
    echo_round_trips("js-guest.wasm", "js").await;
}

#[tokio::test]
async fn js_step_error_is_failed() {
    guest_error_is_failed("js-guest.wasm").await;
}

#[tokio::test]
async fn js_exception_is_trapped_with_its_text() {
    exception_is_trapped_with_its_text("js-guest.wasm", "js").await;
}

/// A JavaScript step without the helpers that throws an `Error` or a
/// string and prints nothing: componentize-js's glue loses the value, so
/// the outcome says what happened and how to keep the text, rather than
/// only the glue's `expected a string, received [undefined]`. The printed
/// case (above) gets no such hint.
#[tokio::test]
async fn js_unprinted_exception_is_trapped_with_an_explanation() {
    for op in ["throw_quiet", "throw_string"] {
        let r = run("js-guest.wasm", json!({"op": op}), Overrides::default()).await;
        let Outcome::Trapped { message, .. } = r.outcome else {
            panic!("{op}: {:?}", r.outcome);
        };
        assert!(
            message.contains("the step threw a value that is not a step error")
                && message.contains("runJson"),
            "{op}: {message}"
        );
        assert!(
            !message.contains("marker"),
            "{op}: the glue kept it? {message}"
        );
    }
    let r = run(
        "js-guest.wasm",
        json!({"op": "throw"}),
        Overrides::default(),
    )
    .await;
    let Outcome::Trapped { message, .. } = r.outcome else {
        panic!("{:?}", r.outcome);
    };
    assert!(
        message.contains("boom from js") && !message.contains("not a step error"),
        "{message}"
    );
}

#[tokio::test]
async fn js_infinite_loop_is_stopped() {
    loops_are_stopped_by_fuel_and_by_time("js-guest.wasm").await;
    echo_round_trips("js-guest.wasm", "js").await;
}

#[tokio::test]
async fn js_outbound_http_is_denied_without_a_trap() {
    // A listener of the test's own: if the request were let through, it
    // would connect here.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let r = run(
        "js-guest.wasm",
        json!({"op": "http", "url": url}),
        Overrides::default(),
    )
    .await;
    let out = output(&r);
    let err = out["http_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"));
    assert!(err.contains("NetworkError"), "{err}");
    assert!(out.get("http_status").is_none(), "{out}");
    // The log names the request and the denial code.
    let denied = format!("outbound HTTP request GET {url} denied (HTTP-request-denied)");
    assert!(
        r.logs.iter().any(|l| l.message.starts_with(&denied)),
        "{:?}",
        r.logs
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest reached the listener: {other:?}"),
    }
}

/// The grant of a step allowing `host`, of a tenant and a server allowing
/// any host.
fn grant_for(host: &str) -> stephost::model::HttpGrant {
    let any: Vec<stephost::model::HostPattern> = vec!["*".parse().unwrap()];
    stephost::model::StepHttpPolicy::default().grant(
        vec![host.parse().unwrap()],
        stephost::model::HttpCaps::DEFAULT,
        &any,
    )
}

#[tokio::test]
async fn js_fetch_reaches_a_granted_host_and_is_denied_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A one-answer HTTP server of the test's own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed early");
            head.extend_from_slice(&buf[..n]);
        }
        let body = "hello from the test";
        let answer = format!(
            "HTTP/1.1 201 Created\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    let url = format!("http://{addr}/greet?x=1");
    let r = run_granted(
        "js-guest.wasm",
        json!({"op": "http", "url": url}),
        Overrides::default(),
        Some(grant_for(&addr.to_string())),
    )
    .await;
    let out = output(&r);
    assert_eq!(out["http_status"], 201, "{out} {:?}", r.logs);
    assert_eq!(out["http_body"], "hello from the test");
    let head = server.await.unwrap();
    assert!(head.starts_with("GET /greet?x=1 HTTP/1.1\r\n"), "{head}");
    assert_eq!(r.http.len(), 1);
    assert_eq!(r.http[0].method, "GET");
    assert_eq!(r.http[0].host, addr.to_string());
    assert_eq!(r.http[0].status, Some(201));
    assert_eq!(r.http[0].bytes, 19);

    // The same grant does not cover another port.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let url = format!("http://{}/", other.local_addr().unwrap());
    let r = run_granted(
        "js-guest.wasm",
        json!({"op": "http", "url": url}),
        Overrides::default(),
        Some(grant_for(&addr.to_string())),
    )
    .await;
    let out = output(&r);
    assert!(out["http_error"].as_str().is_some(), "{out}");
    assert!(
        r.logs
            .iter()
            .any(|l| l.message.contains("is not in the step's `allow_http`")),
        "{:?}",
        r.logs
    );
    match other.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        got => panic!("the guest reached the other listener: {got:?}"),
    }
}
