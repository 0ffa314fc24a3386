//! The sandbox at its public boundary: real components built from source,
//! each limit and denial provoked by a hostile guest, and a good step run
//! after every hostile one.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stephost::model::{LogSource, Outcome};
use stephost::sandbox::{
    AttemptReport, Cancel, Capabilities, Error, Limits, Overrides, Prepared, Sandbox, Settings,
    Source,
};

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(Settings::default()).expect("sandbox"))
}

fn prepared(path: &str) -> Arc<Prepared> {
    sandbox()
        .prepare(&test_programs::read(path))
        .expect("prepare")
}

fn limits(o: Overrides) -> Limits {
    sandbox().limits(&o).unwrap()
}

async fn run_with(path: &str, input: Value, limits: Limits, caps: Capabilities) -> AttemptReport {
    let step = prepared(path);
    sandbox()
        .run(&step, &input.to_string(), &limits, &caps, &Cancel::new())
        .await
        .expect("run")
}

async fn hostile(input: Value, o: Overrides) -> AttemptReport {
    let report = run_with(
        test_programs::HOSTILE,
        input,
        limits(o),
        Capabilities::default(),
    )
    .await;
    // Whatever the hostile guest did, the host still runs a good step.
    assert_echo_works().await;
    report
}

async fn assert_echo_works() {
    let input = json!({"still": "fine", "n": [1, 2, 3]});
    let r = run_with(
        test_programs::ECHO,
        input.clone(),
        limits(Overrides::default()),
        Capabilities::default(),
    )
    .await;
    match r.outcome {
        Outcome::Succeeded { output } => {
            assert_eq!(serde_json::from_str::<Value>(&output).unwrap(), input)
        }
        other => panic!("echo after a hostile guest: {other:?}"),
    }
}

fn output(r: &AttemptReport) -> Value {
    match &r.outcome {
        Outcome::Succeeded { output } => serde_json::from_str(output).unwrap(),
        other => panic!("expected success, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_step_succeeds_with_metering() {
    let input = json!({"text": "héllo 😀", "big": 12345678901234567890u64, "list": [1, 2]});
    let r = run_with(
        test_programs::ECHO,
        input.clone(),
        limits(Overrides::default()),
        Capabilities::default(),
    )
    .await;
    assert_eq!(output(&r), input);
    assert!(r.metering.fuel_consumed > 0);
    assert!(r.metering.memory_peak_bytes >= 64 << 10, "{:?}", r.metering);
    assert!(r.metering.wall_time_us > 0);
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_fuel() {
    let r = hostile(
        json!({"op": "loop"}),
        Overrides {
            fuel: Some(50_000_000),
            timeout: Some(Duration::from_secs(120)),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::FuelExhausted);
    assert_eq!(r.metering.fuel_consumed, 50_000_000);
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_time() {
    let started = Instant::now();
    let r = hostile(
        json!({"op": "loop"}),
        Overrides {
            fuel: Some(Limits::CEILING.fuel),
            timeout: Some(Duration::from_millis(300)),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert!(r.metering.wall_time() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(r.metering.fuel_consumed < Limits::CEILING.fuel);
}

#[tokio::test]
async fn waiting_inside_a_host_call_is_stopped_by_time() {
    let r = hostile(
        json!({"op": "sleep"}),
        Overrides {
            timeout: Some(Duration::from_millis(300)),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::TimedOut);
    assert!(r.metering.wall_time() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_memory_bomb_hits_the_memory_limit() {
    let cap = 32u64 << 20;
    let r = hostile(
        json!({"op": "memory_bomb"}),
        Overrides {
            memory_bytes: Some(cap),
            ..Overrides::default()
        },
    )
    .await;
    assert_eq!(r.outcome, Outcome::MemoryLimit);
    assert!(r.metering.memory_peak_bytes <= cap);
    assert!(r.metering.memory_peak_bytes > cap / 2);
}

#[tokio::test]
async fn memory_peak_reflects_what_the_guest_held() {
    let r = hostile(json!({"op": "hold_memory", "n": 8}), Overrides::default()).await;
    assert_eq!(output(&r)["held"], 8 << 20);
    assert!(r.metering.memory_peak_bytes >= 8 << 20, "{:?}", r.metering);
}

#[tokio::test]
async fn fuel_grows_with_work() {
    let small = hostile(json!({"op": "work", "n": 1_000}), Overrides::default()).await;
    let large = hostile(json!({"op": "work", "n": 1_000_000}), Overrides::default()).await;
    assert!(
        large.metering.fuel_consumed > small.metering.fuel_consumed + 1_000_000,
        "{:?} vs {:?}",
        small.metering,
        large.metering
    );
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow() {
    let r = hostile(json!({"op": "recurse"}), Overrides::default()).await;
    assert_eq!(r.outcome, Outcome::StackOverflow);
}

#[tokio::test]
async fn a_panic_is_trapped_with_the_guest_message_and_a_backtrace() {
    let r = hostile(json!({"op": "panic"}), Overrides::default()).await;
    match r.outcome {
        Outcome::Trapped { message, backtrace } => {
            assert!(message.contains("boom from the hostile guest"), "{message}");
            assert!(backtrace.is_some_and(|b| b.contains("guest_hostile")));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unreachable_is_trapped() {
    let r = hostile(json!({"op": "unreachable"}), Overrides::default()).await;
    match r.outcome {
        Outcome::Trapped { message, .. } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn oversized_output_is_invalid_output() {
    let lim = Limits {
        max_output_bytes: 1000,
        ..limits(Overrides::default())
    };
    let r = run_with(
        test_programs::HOSTILE,
        json!({"op": "big_output", "n": 5000}),
        lim,
        Capabilities::default(),
    )
    .await;
    match r.outcome {
        Outcome::InvalidOutput { reason } => assert!(reason.contains("over the limit"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_echo_works().await;
}

#[tokio::test]
async fn output_that_is_not_json_is_invalid_output() {
    let r = hostile(json!({"op": "not_json"}), Overrides::default()).await;
    match r.outcome {
        Outcome::InvalidOutput { reason } => assert!(reason.contains("not JSON"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_guest_error_is_failed_with_its_code() {
    let r = hostile(
        json!({"op": "error", "text": "the API is down"}),
        Overrides::default(),
    )
    .await;
    match r.outcome {
        Outcome::Failed { error } => {
            assert_eq!(error.code, "upstream_down");
            assert_eq!(error.message, "the API is down");
            assert!(error.retryable);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn files_environment_and_stdin_are_denied() {
    let r = hostile(json!({"op": "read_file"}), Overrides::default()).await;
    let out = output(&r);
    assert!(out["passwd"]["Err"].is_string(), "{out}");
    assert!(out["root"]["Err"].is_string(), "{out}");
    let r = hostile(json!({"op": "env"}), Overrides::default()).await;
    let out = output(&r);
    assert_eq!(out["vars"], json!([]), "{out}");
    assert_eq!(out["args"], json!([]), "{out}");
    assert_eq!(out["stdin"], json!({"Ok": ""}), "{out}");
}

#[tokio::test]
async fn sockets_are_denied_and_nothing_reaches_the_host() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = hostile(json!({"op": "socket", "n": port}), Overrides::default()).await;
    let out = output(&r);
    assert!(out["connect"]["Err"].is_string(), "{out}");
    assert!(out["bind"]["Err"].is_string(), "{out}");
    assert!(out["resolve"]["Err"].is_string(), "{out}");
    assert!(
        listener.accept().is_err(),
        "the guest reached a host socket"
    );
}

#[tokio::test]
async fn logs_stdout_stderr_and_config_are_recorded_and_secrets_redacted() {
    let caps = Capabilities {
        config: [("key".to_owned(), "value-1".to_owned())].into(),
        secrets: vec!["tops3cret".to_owned()],
        http: None,
    };
    let r = run_with(
        test_programs::HOSTILE,
        json!({"op": "log", "text": "pw=tops3cret"}),
        limits(Overrides::default()),
        caps,
    )
    .await;
    assert_eq!(output(&r), json!({"config": "value-1"}));
    let lines: Vec<_> = r
        .logs
        .iter()
        .map(|l| (l.source, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (LogSource::Log, "pw=[REDACTED]"),
            (LogSource::Stdout, "to stdout: pw=[REDACTED]"),
            (LogSource::Stderr, "to stderr: pw=[REDACTED]"),
        ]
    );
}

#[tokio::test]
async fn a_log_flood_is_bounded() {
    let r = hostile(
        json!({"op": "log_flood", "n": 100_000}),
        Overrides::default(),
    )
    .await;
    assert_eq!(output(&r), json!("flooded"));
    let total: usize = r.logs.iter().map(|l| l.message.len()).sum();
    assert!(total as u64 <= Limits::DEFAULT.max_log_bytes + 200);
    let last = r.logs.last().unwrap();
    assert_eq!(last.source, LogSource::Host);
    assert!(last.message.contains("budget"));
}

#[tokio::test]
async fn every_attempt_gets_a_fresh_instance() {
    for _ in 0..3 {
        let r = hostile(json!({"op": "counter"}), Overrides::default()).await;
        assert_eq!(output(&r), json!({"calls": 1}));
    }
}

#[tokio::test]
async fn cancel_interrupts_a_computing_guest_and_a_waiting_guest() {
    for op in ["loop", "sleep"] {
        let step = prepared(test_programs::HOSTILE);
        let cancel = Cancel::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            trigger.cancel();
        });
        let lim = limits(Overrides {
            fuel: Some(Limits::CEILING.fuel),
            ..Overrides::default()
        });
        let started = Instant::now();
        let r = sandbox()
            .run(
                &step,
                &json!({"op": op}).to_string(),
                &lim,
                &Capabilities::default(),
                &cancel,
            )
            .await
            .unwrap();
        assert_eq!(r.outcome, Outcome::Cancelled, "{op}");
        assert!(started.elapsed() < Duration::from_secs(5), "{op}");
    }
    assert_echo_works().await;
}

#[tokio::test]
async fn input_over_the_limit_is_refused_before_running() {
    let step = prepared(test_programs::ECHO);
    let lim = Limits {
        max_input_bytes: 10,
        ..limits(Overrides::default())
    };
    let err = sandbox()
        .run(
            &step,
            "\"0123456789abcdef\"",
            &lim,
            &Capabilities::default(),
            &Cancel::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InputTooLarge {
                size: 18,
                limit: 10
            }
        ),
        "{err}"
    );
}

#[test]
fn malformed_components_are_rejected_with_clear_messages() {
    let err = sandbox()
        .prepare(b"\x13\x37 definitely not wasm")
        .unwrap_err();
    assert!(err.to_string().contains("magic number"), "{err}");

    let module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let err = sandbox().prepare(&module).unwrap_err();
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");

    let err = sandbox()
        .prepare(&test_programs::read(test_programs::WRONG_WORLD))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("`run` has the wrong type"), "{msg}");

    let no_run = wat::parse_str("(component)").unwrap();
    let err = sandbox().prepare(&no_run).unwrap_err();
    assert!(err.to_string().contains("does not export `run`"), "{err}");

    let odd_import =
        wat::parse_str(r#"(component (import "acme:evil/backdoor@1.0.0" (instance)))"#).unwrap();
    let err = sandbox().prepare(&odd_import).unwrap_err();
    assert!(err.to_string().contains("acme:evil/backdoor"), "{err}");
}

/// At most `max_prepared` steps stay prepared in memory; the least
/// recently used goes first and is loaded from the artifact cache when
/// needed again.
#[test]
fn prepared_steps_in_memory_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(Settings {
        cache_dir: Some(dir.path().to_owned()),
        max_prepared: 2,
        pool: stephost::sandbox::PoolSize {
            max_concurrent_instances: 2,
        },
        ..Settings::default()
    })
    .unwrap();
    let [a, b, c] = [
        test_programs::ECHO,
        test_programs::STEP_RESHAPE,
        test_programs::STEP_HMAC_SIGN,
    ]
    .map(test_programs::read);
    let digest = |bytes: &[u8]| stephost::model::Digest::of(bytes);
    let first_a = sandbox.prepare(&a).unwrap();
    sandbox.prepare(&b).unwrap();
    // Using `a` again makes `b` the least recently used.
    assert!(Arc::ptr_eq(&first_a, &sandbox.prepare(&a).unwrap()));
    sandbox.prepare(&c).unwrap();
    assert!(sandbox.prepared(&digest(&a)).is_some());
    assert!(
        sandbox.prepared(&digest(&b)).is_none(),
        "the least recently used went"
    );
    assert!(sandbox.prepared(&digest(&c)).is_some());
    let again = sandbox.prepare(&b).unwrap();
    assert_eq!(
        again.source,
        Source::Cache,
        "loaded from disk, not compiled"
    );
}

/// Prepared steps are bounded by the bytes of their images too: with room
/// for two of these, the third drops the least recently used.
#[test]
fn prepared_steps_in_memory_are_bounded_by_bytes() {
    let [a, b, c] = [
        test_programs::ECHO,
        test_programs::STEP_RESHAPE,
        test_programs::STEP_HMAC_SIGN,
    ]
    .map(test_programs::read);
    let sizes: Vec<u64> = [&a, &b, &c]
        .iter()
        .map(|bytes| sandbox().prepare(bytes).unwrap().image_bytes)
        .collect();
    assert!(sizes.iter().all(|s| *s > 0), "{sizes:?}");
    let largest = *sizes.iter().max().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(Settings {
        cache_dir: Some(dir.path().to_owned()),
        // Room for any two of them, never for three.
        max_prepared_bytes: 2 * largest,
        pool: stephost::sandbox::PoolSize {
            max_concurrent_instances: 2,
        },
        ..Settings::default()
    })
    .unwrap();
    assert!(sizes.iter().sum::<u64>() > 2 * largest, "{sizes:?}");
    let digest = |bytes: &[u8]| stephost::model::Digest::of(bytes);
    sandbox.prepare(&a).unwrap();
    sandbox.prepare(&b).unwrap();
    sandbox.prepare(&a).unwrap();
    sandbox.prepare(&c).unwrap();
    assert!(sandbox.prepared(&digest(&a)).is_some());
    assert!(
        sandbox.prepared(&digest(&b)).is_none(),
        "the least recently used went"
    );
    assert!(sandbox.prepared(&digest(&c)).is_some());
    // One larger than the whole bound is still kept, alone.
    let tiny = Sandbox::new(Settings {
        max_prepared_bytes: 1,
        pool: stephost::sandbox::PoolSize {
            max_concurrent_instances: 2,
        },
        ..Settings::default()
    })
    .unwrap();
    tiny.prepare(&a).unwrap();
    tiny.prepare(&b).unwrap();
    assert!(tiny.prepared(&digest(&a)).is_none());
    assert!(tiny.prepared(&digest(&b)).is_some());
}

/// The artifact cache is bounded: past `cache_max_bytes` the least
/// recently used artifacts (by last load, not by creation) are deleted, and
/// compiled again when next needed.
#[test]
fn the_artifact_cache_evicts_the_least_recently_used_past_its_bound() {
    let programs = [
        test_programs::ECHO,
        test_programs::STEP_RESHAPE,
        test_programs::STEP_HMAC_SIGN,
    ];
    let bytes: Vec<Vec<u8>> = programs.iter().map(|p| test_programs::read(p)).collect();
    let host = |dir: &std::path::Path, max: u64| {
        Sandbox::new(Settings {
            cache_dir: Some(dir.to_owned()),
            cache_max_bytes: max,
            pool: stephost::sandbox::PoolSize {
                max_concurrent_instances: 2,
            },
            ..Settings::default()
        })
        .unwrap()
    };
    let artifact = |dir: &std::path::Path, b: &[u8]| -> Option<u64> {
        let hex = stephost::model::Digest::of(b).hex();
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(&hex))
            .map(|e| e.metadata().unwrap().len())
    };
    // Each artifact's size, from an unbounded cache.
    let sizes: Vec<u64> = bytes
        .iter()
        .map(|b| {
            let dir = tempfile::tempdir().unwrap();
            host(dir.path(), u64::MAX).prepare(b).unwrap();
            artifact(dir.path(), b).unwrap()
        })
        .collect();
    let total: u64 = sizes.iter().sum();
    let smallest = *sizes.iter().min().unwrap();
    // Any two fit, all three do not.
    let bound = total - smallest / 2;

    let dir = tempfile::tempdir().unwrap();
    let first = host(dir.path(), bound);
    first.prepare(&bytes[0]).unwrap();
    first.prepare(&bytes[1]).unwrap();
    drop(first);
    // A restarted host loads the first one (now the most recently used)...
    let second = host(dir.path(), bound);
    assert_eq!(second.prepare(&bytes[0]).unwrap().source, Source::Cache);
    // ...so storing the third evicts the second, though it was written later.
    assert_eq!(second.prepare(&bytes[2]).unwrap().source, Source::Compiled);
    assert!(
        artifact(dir.path(), &bytes[0]).is_some(),
        "the recently used one stays"
    );
    assert!(
        artifact(dir.path(), &bytes[1]).is_none(),
        "the least recently used one goes"
    );
    assert!(
        artifact(dir.path(), &bytes[2]).is_some(),
        "the new one stays"
    );
    drop(second);
    // Evicted means compiled again when next needed.
    let third = host(dir.path(), bound);
    assert_eq!(third.prepare(&bytes[1]).unwrap().source, Source::Compiled);
}

#[test]
fn a_restarted_host_loads_the_precompiled_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        cache_dir: Some(dir.path().to_owned()),
        pool: stephost::sandbox::PoolSize {
            max_concurrent_instances: 2,
        },
        ..Settings::default()
    };
    let bytes = test_programs::read(test_programs::ECHO);
    let first = Sandbox::new(settings.clone()).unwrap();
    let p = first.prepare(&bytes).unwrap();
    assert_eq!(p.source, Source::Compiled);
    // The same host keeps the prepared step in memory.
    assert!(Arc::ptr_eq(&p, &first.prepare(&bytes).unwrap()));
    drop(first);

    let second = Sandbox::new(settings).unwrap();
    let p = second.prepare(&bytes).unwrap();
    assert_eq!(p.source, Source::Cache);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "one artifact per digest and engine"
    );
}

fn cached_host(dir: &std::path::Path) -> Sandbox {
    Sandbox::new(Settings {
        cache_dir: Some(dir.to_owned()),
        pool: stephost::sandbox::PoolSize {
            max_concurrent_instances: 2,
        },
        ..Settings::default()
    })
    .unwrap()
}

/// The files in a cache directory, by name.
fn cache_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Many first runs of one new component at once (a burst of executions
/// right after an upload on a fresh node) compile it once and share the
/// result; before, they raced on one temporary file and some failed with
/// a cache I/O error.
#[test]
fn concurrent_first_runs_of_one_component_compile_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = cached_host(dir.path());
    let bytes = test_programs::read(test_programs::STEP_RESHAPE);
    const THREADS: usize = 8;
    let start = std::sync::Barrier::new(THREADS);
    let prepared: Vec<Arc<stephost::sandbox::Prepared>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    host.prepare(&bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().expect("every first run prepares"))
            .collect()
    });
    assert_eq!(prepared[0].source, Source::Compiled);
    for p in &prepared[1..] {
        assert!(Arc::ptr_eq(&prepared[0], p), "one compilation, shared");
    }
    let files = cache_files(dir.path());
    assert_eq!(
        files.len(),
        1,
        "one artifact and no temporary file: {files:?}"
    );
    assert!(files[0].ends_with(".cwasm"), "{files:?}");
}

/// The artifact cache only saves compile time: when it cannot be written
/// (a full disk, a directory gone), the component is compiled in memory
/// and runs all the same.
#[tokio::test]
async fn a_cache_that_cannot_be_written_does_not_fail_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("precompiled");
    let host = cached_host(&cache);
    // A file where the directory was: every write into it fails.
    std::fs::remove_dir(&cache).unwrap();
    std::fs::write(&cache, b"not a directory").unwrap();
    let p = host
        .prepare(&test_programs::read(test_programs::ECHO))
        .expect("prepared without its artifact");
    assert_eq!(p.source, Source::Compiled);
    let limits = host.limits(&Overrides::default()).unwrap();
    let report = host
        .run(
            &p,
            r#"{"a":1}"#,
            &limits,
            &Capabilities::default(),
            &Cancel::new(),
        )
        .await
        .expect("run");
    assert_eq!(output(&report), json!({"a": 1}));
    assert_eq!(std::fs::read(&cache).unwrap(), b"not a directory");
}

/// A component that is refused, or only inspected, leaves nothing on disk.
#[test]
fn rejected_and_inspected_components_leave_no_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let host = cached_host(dir.path());
    let no_run = wat::parse_str("(component)").unwrap();
    host.prepare(&no_run).unwrap_err();
    let wrong = test_programs::read(test_programs::WRONG_WORLD);
    host.prepare(&wrong).unwrap_err();
    let inspected = host
        .inspect(&test_programs::read(test_programs::ECHO))
        .unwrap();
    assert_eq!(inspected.verdict, Ok(()));
    assert_eq!(cache_files(dir.path()), Vec::<String>::new());
    // An accepted one is kept.
    host.prepare(&test_programs::read(test_programs::ECHO))
        .unwrap();
    assert_eq!(cache_files(dir.path()).len(), 1);
}
