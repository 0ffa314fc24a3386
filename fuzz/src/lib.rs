//! The bodies of stephost's fuzz targets, one function per target.
//!
//! Each takes the fuzzer's bytes, drives one of the host's input paths with
//! them and panics when an invariant breaks (a panic in the host is a
//! finding too). The binaries in `fuzz_targets/` hand libFuzzer's inputs to
//! these functions; `tests/regressions.rs` hands them every generated seed
//! and every input in `regressions/<target>/`, so a crash found once stays
//! a test. `scripts/fuzz` runs them; docs/fuzzing.md says how.
//!
//! Text targets read their bytes as UTF-8 and ignore other inputs (every
//! caller of these parsers holds a `&str`); `component` takes raw bytes.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{Value, json};
use stephost::engine::definition::Context;
use stephost::engine::schedule::Cron;
use stephost::engine::{Definition, template};
use stephost::model::{Digest, Overrides, Timestamp};
use stephost::sandbox::{Cancel, Capabilities, Error as SandboxError, Sandbox, Settings};

pub mod request;

pub use request::request;

/// A target's body: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by name, for the regression test and the seed writer.
pub const TARGETS: &[(&str, Target)] = &[
    ("definition", definition),
    ("template", template),
    ("duration", duration),
    ("cron", cron),
    ("component", component),
    ("request", request),
];

/// A workflow definition as `PUT /v1/workflows/{id}` reads it, as JSON and
/// as YAML: parsed, shape-checked, then validated against a tenant that has
/// one step. Every problem must carry a JSON path into the document.
pub fn definition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let digest = Digest::of(b"echo");
    let steps: HashMap<String, Vec<Digest>> = HashMap::from([("echo".to_owned(), vec![digest])]);
    let ceilings = |o: &Overrides| match o.fuel {
        Some(f) if f > 1_000_000_000 => Err("fuel above the ceiling".to_owned()),
        _ => Ok(()),
    };
    for yaml in [false, true] {
        match Definition::parse(text, yaml) {
            Err(problems) => {
                assert!(!problems.is_empty(), "a refused definition names a problem");
                check_paths(&problems);
            }
            Ok(def) => {
                let cx = Context {
                    path_id: "wf",
                    steps: &steps,
                    ceilings: &ceilings,
                    http_caps: stephost::model::HttpCaps::DEFAULT,
                };
                let problems = def.validate(&cx);
                check_paths(&problems);
                let needs = def.needs();
                assert_eq!(needs.len(), def.steps.len());
                for (i, n) in needs.iter().enumerate() {
                    assert!(
                        n.iter().all(|&j| j < def.steps.len()),
                        "step {i} needs {n:?}"
                    );
                }
                let _ = def.timeout();
            }
        }
    }
}

fn check_paths(problems: &[stephost::engine::Problem]) {
    for p in problems {
        assert!(
            p.path.starts_with('$'),
            "problem path `{}` is not a JSON path",
            p.path
        );
        assert!(
            !p.message.is_empty(),
            "problem at {} has no message",
            p.path
        );
    }
}

/// What templates see in the `template` target: the roots a step's input
/// sees, with values of every JSON type.
static SCOPE: LazyLock<template::Scope> = LazyLock::new(|| {
    template::Scope::new(&json!({
        "input": {"n": 3, "name": "ada", "items": [1, 2.5, "x", null, true], "nested": {"a": {"b": [{}]}}},
        "steps": {"a": {"output": {"text": "hello", "list": [3, 1, 2]}}},
        "execution": {"id": "exe_1", "started_at": "2026-01-01T00:00:00Z"},
        "workflow": {"id": "wf", "version": 1},
    }))
});

/// A template or condition, as a definition would hold it: its references
/// are listed (what validation does), then it is rendered and evaluated as
/// a condition (what an attempt does). Fuel and the output cap must bound
/// both: a result over the cap is an error, never a value.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for condition in [false, true] {
        let _ = template::references(text, condition);
    }
    let value = Value::String(text.to_owned());
    if let Ok(out) = SCOPE.render(&value, "$.steps[0].input") {
        let size = serde_json::to_string(&out).map(|s| s.len()).unwrap_or(0);
        assert!(
            size <= template::MAX_OUTPUT_BYTES,
            "a rendered value of {size} bytes passed the cap"
        );
    }
    let _ = SCOPE.condition(text, "$.steps[0].if");
}

/// Durations (`timeout`, retry delays, waits) and byte sizes (limits), as
/// definitions and signals give them.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = stephost::engine::definition::parse_duration(text) {
        // A parsed duration is added to a clock reading next.
        let _ = tokio::time::Instant::now().checked_add(d);
    }
    let _ = stephost::engine::definition::parse_bytes(&Value::String(text.to_owned()));
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let _ = stephost::engine::definition::parse_bytes(&v);
    }
}

/// A schedule's `cron` and `timezone` (the input's first line is the
/// expression, the rest the zone): parsed, then its next ticks from a few
/// instants, each after the one before.
pub fn cron(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (expr, tz) = text.split_once('\n').unwrap_or((text, "UTC"));
    let Ok(cron) = Cron::parse(expr, tz.trim()) else {
        return;
    };
    for start in [0, 1_700_000_000, 4_102_444_800] {
        let t = Timestamp::from_second(start).expect("a valid instant");
        let ticks = cron.upcoming(t, 5);
        let mut last = t;
        for tick in ticks {
            assert!(
                tick > last,
                "`{expr}` in {tz}: tick {tick} is not after {last}"
            );
            last = tick;
        }
    }
}

/// The sandbox of the `component` target: no disk cache, a small memory
/// cache and small limits, so that a long run stays within libFuzzer's
/// memory bound.
static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    Sandbox::new(Settings {
        cache_dir: None,
        max_prepared: 16,
        max_prepared_bytes: 256 << 20,
        ..Settings::default()
    })
    .expect("the sandbox starts")
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
});

/// A component, as `PUT /v1/steps/{name}` takes it: inspected, prepared
/// (validated, shape-checked, compiled), and when it is a step, run once
/// under small limits. Every answer must be a validation error or an
/// outcome; nothing may panic.
pub fn component(data: &[u8]) {
    let sandbox = &*SANDBOX;
    let inspected = sandbox.inspect(data);
    let prepared = match sandbox.prepare(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a refusal says why");
            return;
        }
    };
    assert!(
        inspected.is_ok(),
        "prepare accepted what inspect refused: {:?}",
        inspected.err()
    );
    let limits = sandbox
        .limits(&Overrides {
            fuel: Some(5_000_000),
            timeout: Some(Duration::from_millis(500)),
            memory_bytes: Some(32 << 20),
        })
        .expect("limits under the ceiling");
    let report = RUNTIME.block_on(sandbox.run(
        &prepared,
        r#"{"n": 1}"#,
        &limits,
        &Capabilities::default(),
        &Cancel::new(),
    ));
    match report {
        Ok(_) | Err(SandboxError::InputTooLarge { .. }) => {}
        Err(e) => assert!(!e.to_string().is_empty(), "a refusal says why"),
    }
}

/// The runtime the `request` target's server runs on.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    &RUNTIME
}
