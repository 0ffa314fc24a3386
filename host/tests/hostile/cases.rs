//! The hostile corpus: every way a step may misbehave that we know of, each
//! with the one classified answer the host must give. `tests/hostile/main.rs`
//! runs each case as its own test; `tests/hostile_memory.rs` runs them all
//! again and again and checks that the host's memory returns to its
//! baseline.
//!
//! A case is a component (the Rust hostile guest, the Python or JavaScript
//! guest, or a component written here in WAT), an input, limits, and what
//! must come of it: an outcome of one exact kind, or a refusal before
//! anything runs with a message that says why.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stephost::model::{LogSource, Outcome};
use stephost::sandbox::{
    AttemptReport, Cancel, Capabilities, Error, Limits, Overrides, Prepared, Sandbox, Settings,
};

/// Where a case's component comes from.
#[derive(Clone, Copy)]
pub enum Guest {
    /// A Rust program of `tests/programs` (its path constant).
    Rust(&'static str),
    /// A component built by `scripts/build-polyglot` (its file name).
    Polyglot(&'static str),
    /// A component written here, in the WAT text format.
    Wat(fn() -> String),
}

/// What must come of a case.
#[derive(Clone, Copy)]
pub enum Expect {
    /// An attempt that ends with this outcome kind, then passes `check`.
    Outcome(&'static str, fn(&AttemptReport) -> Result<(), String>),
    /// `prepare` refuses the component with a message holding this text.
    Refused(&'static str),
    /// `run` refuses the input before running, with this text.
    RunRefused(&'static str),
}

/// One case of the corpus.
#[derive(Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub guest: Guest,
    pub input: fn() -> Value,
    pub limits: Overrides,
    /// Cancel the attempt this long after it starts.
    pub cancel_after: Option<Duration>,
    pub expect: Expect,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const DEFAULTS: Overrides = Overrides {
    fuel: None,
    timeout: None,
    memory_bytes: None,
};

/// Plenty of fuel, a short wall-clock limit: time is what stops these.
const BY_TIME: Overrides = Overrides {
    fuel: Some(Limits::CEILING.fuel),
    timeout: Some(ms(300)),
    memory_bytes: None,
};

/// Little fuel: fuel is what stops these.
const BY_FUEL: Overrides = Overrides {
    fuel: Some(50_000_000),
    timeout: Some(Duration::from_secs(20)),
    memory_bytes: None,
};

const MIB: u64 = 1 << 20;

fn ok(_: &AttemptReport) -> Result<(), String> {
    Ok(())
}

fn output(r: &AttemptReport) -> Result<Value, String> {
    match &r.outcome {
        Outcome::Succeeded { output } => serde_json::from_str(output).map_err(|e| e.to_string()),
        other => Err(format!("not a success: {other:?}")),
    }
}

fn trapped_with(r: &AttemptReport, text: &str) -> Result<(), String> {
    match &r.outcome {
        Outcome::Trapped { message, .. } if message.contains(text) => Ok(()),
        other => Err(format!("expected a trap saying {text:?}, got {other:?}")),
    }
}

fn log_bytes(r: &AttemptReport) -> u64 {
    r.logs.iter().map(|l| l.message.len() as u64).sum()
}

/// The logs stayed within the default budget and the host said it cut them.
fn logs_bounded(r: &AttemptReport) -> Result<(), String> {
    let total = log_bytes(r);
    if total > Limits::DEFAULT.max_log_bytes + 200 {
        return Err(format!("{total} bytes of logs kept"));
    }
    match r.logs.last() {
        Some(l) if l.source == LogSource::Host && l.message.contains("budget") => Ok(()),
        other => Err(format!("no host note of the cut log: {other:?}")),
    }
}

/// Each of `keys` in the output is an `Err`: the guest was refused.
fn refused(r: &AttemptReport, keys: &[&str]) -> Result<(), String> {
    let out = output(r)?;
    match keys.iter().find(|k| !out[**k]["Err"].is_string()) {
        Some(k) => Err(format!("{k} was not refused: {out}")),
        None => Ok(()),
    }
}

/// Every case. Names are unique; `tests/hostile/main.rs` has one test each.
pub const CASES: &[Case] = &[
    // Computing forever.
    Case {
        name: "rust_loop_by_fuel",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "loop"}),
        limits: BY_FUEL,
        cancel_after: None,
        expect: Expect::Outcome("fuel_exhausted", |r| {
            (r.metering.fuel_consumed == 50_000_000)
                .then_some(())
                .ok_or_else(|| format!("fuel {}", r.metering.fuel_consumed))
        }),
    },
    Case {
        name: "rust_loop_by_time",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "loop"}),
        limits: BY_TIME,
        cancel_after: None,
        expect: Expect::Outcome("timed_out", ok),
    },
    Case {
        name: "rust_sleep_in_a_host_call",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "sleep"}),
        limits: BY_TIME,
        cancel_after: None,
        expect: Expect::Outcome("timed_out", ok),
    },
    Case {
        name: "rust_spin_on_the_clocks",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "clock_spin"}),
        limits: BY_TIME,
        cancel_after: None,
        expect: Expect::Outcome("timed_out", ok),
    },
    Case {
        name: "rust_random_in_a_loop",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "random_loop"}),
        limits: BY_TIME,
        cancel_after: None,
        expect: Expect::Outcome("timed_out", ok),
    },
    Case {
        name: "rust_random_in_a_loop_by_fuel",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "random_loop"}),
        limits: BY_FUEL,
        cancel_after: None,
        expect: Expect::Outcome("fuel_exhausted", ok),
    },
    Case {
        name: "rust_loop_cancelled",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "loop"}),
        limits: Overrides {
            fuel: Some(Limits::CEILING.fuel),
            ..DEFAULTS
        },
        cancel_after: Some(ms(200)),
        expect: Expect::Outcome("cancelled", ok),
    },
    Case {
        name: "rust_sleep_cancelled",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "sleep"}),
        limits: DEFAULTS,
        cancel_after: Some(ms(200)),
        expect: Expect::Outcome("cancelled", ok),
    },
    // Memory.
    Case {
        name: "rust_memory_bomb",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "memory_bomb"}),
        limits: Overrides {
            memory_bytes: Some(32 * MIB),
            ..DEFAULTS
        },
        cancel_after: None,
        expect: Expect::Outcome("memory_limit", |r| {
            (r.metering.memory_peak_bytes <= 32 * MIB)
                .then_some(())
                .ok_or_else(|| format!("peak {}", r.metering.memory_peak_bytes))
        }),
    },
    Case {
        name: "rust_creeps_under_the_limit_then_spikes",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "creep_then_spike", "n": 40}),
        limits: Overrides {
            memory_bytes: Some(48 * MIB),
            ..DEFAULTS
        },
        cancel_after: None,
        expect: Expect::Outcome("memory_limit", |r| {
            let peak = r.metering.memory_peak_bytes;
            (40 * MIB < peak && peak <= 48 * MIB)
                .then_some(())
                .ok_or_else(|| format!("peak {peak}: the creep did not get near the limit"))
        }),
    },
    Case {
        name: "rust_returns_50_mib",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "big_output", "n": 50 * MIB}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("invalid_output", |r| match &r.outcome {
            Outcome::InvalidOutput { reason } if reason.contains("over the limit") => Ok(()),
            other => Err(format!("{other:?}")),
        }),
    },
    Case {
        name: "wat_table_grows_without_bound",
        guest: Guest::Wat(wat::table_grow),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("memory_limit", ok),
    },
    Case {
        name: "wat_initial_memory_over_the_step_limit",
        guest: Guest::Wat(wat::memory_300_mib),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("memory_limit", ok),
    },
    // The stack.
    Case {
        name: "rust_deep_recursion",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "recurse"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("stack_overflow", ok),
    },
    Case {
        name: "python_deep_recursion",
        guest: Guest::Polyglot("py-guest.wasm"),
        input: || json!({"op": "recurse"}),
        limits: DEFAULTS,
        cancel_after: None,
        // With Python's recursion limit lifted, the wasm stack runs out.
        expect: Expect::Outcome("stack_overflow", ok),
    },
    Case {
        name: "javascript_deep_recursion",
        guest: Guest::Polyglot("js-guest.wasm"),
        input: || json!({"op": "recurse"}),
        limits: DEFAULTS,
        cancel_after: None,
        // SpiderMonkey's own stack guard throws; the trap carries the stack.
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "down@step.js")),
    },
    // Traps.
    Case {
        name: "rust_panic",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "panic"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| {
            trapped_with(r, "boom from the hostile guest")
        }),
    },
    Case {
        name: "rust_unreachable",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "unreachable"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "unreachable")),
    },
    Case {
        name: "wat_start_function_traps",
        guest: Guest::Wat(wat::start_traps),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "unreachable")),
    },
    Case {
        name: "wat_realloc_traps",
        guest: Guest::Wat(wat::realloc_traps),
        input: || json!({"x": 1}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "unreachable")),
    },
    Case {
        name: "wat_returns_a_pointer_out_of_bounds",
        guest: Guest::Wat(wat::pointer_out_of_bounds),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "out of bounds")),
    },
    Case {
        name: "wat_returns_invalid_utf8",
        guest: Guest::Wat(wat::invalid_utf8),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "utf-8")),
    },
    Case {
        name: "python_exception",
        guest: Guest::Polyglot("py-guest.wasm"),
        input: || json!({"op": "throw"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("trapped", |r| trapped_with(r, "boom from python")),
    },
    Case {
        name: "python_loop",
        guest: Guest::Polyglot("py-guest.wasm"),
        input: || json!({"op": "loop"}),
        limits: BY_FUEL,
        cancel_after: None,
        expect: Expect::Outcome("fuel_exhausted", ok),
    },
    Case {
        name: "javascript_loop",
        guest: Guest::Polyglot("js-guest.wasm"),
        input: || json!({"op": "loop"}),
        limits: BY_TIME,
        cancel_after: None,
        expect: Expect::Outcome("timed_out", ok),
    },
    // Output and input.
    Case {
        name: "rust_output_that_is_not_json",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "not_json"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("invalid_output", ok),
    },
    Case {
        name: "input_over_the_limit",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "counter", "text": "x".repeat(5 << 20)}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::RunRefused("over the limit"),
    },
    // Floods of host calls.
    Case {
        name: "rust_stdout_flood",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "log_flood", "n": 100_000}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", logs_bounded),
    },
    Case {
        name: "rust_log_interface_flood_of_10_mib",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "log_api_flood", "n": 10 * MIB}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", logs_bounded),
    },
    Case {
        name: "rust_config_a_million_times",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "config_storm", "n": 1_000_000}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", |r| {
            let out = output(r)?;
            (out == json!({"found": 0}))
                .then_some(())
                .ok_or_else(|| out.to_string())
        }),
    },
    // Escapes.
    Case {
        name: "rust_reads_host_files",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "read_file"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", |r| refused(r, &["passwd", "root"])),
    },
    Case {
        name: "rust_environment_arguments_and_stdin",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "env"}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", |r| {
            let out = output(r)?;
            (out == json!({"vars": [], "args": [], "stdin": {"Ok": ""}}))
                .then_some(())
                .ok_or_else(|| out.to_string())
        }),
    },
    Case {
        name: "rust_sockets",
        guest: Guest::Rust(test_programs::HOSTILE),
        input: || json!({"op": "socket", "n": 9}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", |r| refused(r, &["connect", "bind", "resolve"])),
    },
    // Components the host must refuse before running anything.
    Case {
        name: "wat_imports_an_interface_the_host_lacks",
        guest: Guest::Wat(wat::unknown_import),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Refused("`acme:evil/backdoor@1.0.0`, which the host does not provide"),
    },
    Case {
        name: "rust_wrong_world",
        guest: Guest::Rust(test_programs::WRONG_WORLD),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Refused("the export `run` has the wrong type"),
    },
    Case {
        name: "wat_more_functions_than_the_bound",
        guest: Guest::Wat(wat::too_many_functions),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Refused("the host compiles at most 100000 per component"),
    },
    Case {
        name: "wat_function_body_over_the_bound",
        guest: Guest::Wat(wat::huge_function),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Refused("the host compiles functions of at most 2097152 bytes"),
    },
    Case {
        name: "wat_initial_memory_over_the_ceiling",
        guest: Guest::Wat(wat::memory_over_the_ceiling),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Refused(
            "declares a memory of 1250.0 MiB at start, over the memory ceiling of 1024.0 MiB",
        ),
    },
    // Big but allowed: compiled in bounded time, and they run.
    Case {
        name: "wat_ten_thousand_functions",
        guest: Guest::Wat(wat::ten_thousand_functions),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", |r| {
            let out = output(r)?;
            (out == json!({}))
                .then_some(())
                .ok_or_else(|| out.to_string())
        }),
    },
    Case {
        name: "wat_data_segment_of_48_mib",
        guest: Guest::Wat(wat::data_48_mib),
        input: || json!({}),
        limits: DEFAULTS,
        cancel_after: None,
        expect: Expect::Outcome("succeeded", |r| {
            let peak = r.metering.memory_peak_bytes;
            (peak >= 48 * MIB)
                .then_some(())
                .ok_or_else(|| format!("peak {peak}: the segment was not in memory"))
        }),
    },
];

/// The sandbox the corpus runs in, with the polyglot components' artifact
/// cache (as `tests/polyglot.rs` has).
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        Sandbox::new(Settings {
            cache_dir: Some(test_programs::polyglot_cache_dir()),
            ..Settings::default()
        })
        .expect("sandbox")
    })
}

/// The bytes of a case's component.
pub fn bytes(guest: Guest) -> Vec<u8> {
    match guest {
        Guest::Rust(path) => test_programs::read(path),
        Guest::Polyglot(file) => std::fs::read(test_programs::polyglot(file)).unwrap(),
        Guest::Wat(text) => ::wat::parse_str(text()).expect("the case's WAT parses"),
    }
}

fn prepare(sandbox: &Sandbox, case: &Case) -> Result<Arc<Prepared>, Error> {
    // The polyglot components are tens of MiB and the WAT ones take a
    // while to assemble: make each case's bytes once per process, so that
    // what a memory measurement sees is the host's, not this file's.
    type Made = std::sync::Mutex<Vec<(&'static str, Arc<Vec<u8>>)>>;
    static MADE: OnceLock<Made> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    let found = made
        .lock()
        .unwrap()
        .iter()
        .find(|(name, _)| *name == case.name)
        .map(|(_, b)| b.clone());
    let bytes = match found {
        Some(b) => b,
        None => {
            let b = Arc::new(bytes(case.guest));
            made.lock().unwrap().push((case.name, b.clone()));
            b
        }
    };
    sandbox.prepare(&bytes)
}

/// Runs one case in `sandbox` and checks what came of it. `Err` says what
/// was wrong.
pub async fn check(case: &Case, sandbox: &Sandbox) -> Result<(), String> {
    let prepared = prepare(sandbox, case);
    let step = match (case.expect, prepared) {
        (Expect::Refused(text), Err(e)) => {
            let message = e.to_string();
            return message
                .contains(text)
                .then_some(())
                .ok_or_else(|| format!("refused, but saying {message:?}"));
        }
        (Expect::Refused(_), Ok(_)) => return Err("accepted; it must be refused".into()),
        (_, Err(e)) => return Err(format!("refused: {e}")),
        (_, Ok(step)) => step,
    };
    let limits = sandbox.limits(&case.limits).map_err(|e| e.to_string())?;
    let cancel = Cancel::new();
    if let Some(after) = case.cancel_after {
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            trigger.cancel();
        });
    }
    let started = Instant::now();
    let result = sandbox
        .run(
            &step,
            &(case.input)().to_string(),
            &limits,
            &Capabilities::default(),
            &cancel,
        )
        .await;
    let took = started.elapsed();
    let report = match (case.expect, result) {
        (Expect::RunRefused(text), Err(e)) => {
            let message = e.to_string();
            return message
                .contains(text)
                .then_some(())
                .ok_or_else(|| format!("run refused, but saying {message:?}"));
        }
        (Expect::RunRefused(_), Ok(r)) => return Err(format!("ran: {:?}", r.outcome)),
        (_, Err(e)) => return Err(format!("the host failed: {e}")),
        (_, Ok(report)) => report,
    };
    let Expect::Outcome(kind, then) = case.expect else {
        unreachable!("refusals returned above");
    };
    if report.outcome.kind() != kind {
        return Err(format!("expected {kind}, got {:?}", report.outcome));
    }
    // Within its limits: no more fuel than it had, no more memory, and no
    // longer than its wall-clock limit and one epoch tick (with room for a
    // loaded machine).
    if report.metering.fuel_consumed > limits.fuel {
        return Err(format!("consumed {} fuel", report.metering.fuel_consumed));
    }
    if report.metering.memory_peak_bytes > limits.memory_bytes {
        return Err(format!("held {} bytes", report.metering.memory_peak_bytes));
    }
    if took > limits.timeout + Duration::from_secs(2) {
        return Err(format!(
            "took {took:?} under a limit of {:?}",
            limits.timeout
        ));
    }
    then(&report)
}

/// Runs the echo guest: after any case, the host still runs a good step.
pub async fn echo_works(sandbox: &Sandbox) -> Result<(), String> {
    let step = sandbox
        .prepare(&test_programs::read(test_programs::ECHO))
        .map_err(|e| e.to_string())?;
    let input = json!({"still": "fine"});
    let r = sandbox
        .run(
            &step,
            &input.to_string(),
            &sandbox.limits(&Overrides::default()).unwrap(),
            &Capabilities::default(),
            &Cancel::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    (output(&r)? == input)
        .then_some(())
        .ok_or_else(|| format!("echo gave {:?}", r.outcome))
}

/// The components written in WAT. Each is a step component around one core
/// module with a bump allocator; `step` fills in the parts a case changes.
mod wat {
    /// A step component. `module` goes inside the core module (which has
    /// `$mem`, `$realloc` and `"{}"` at offset 16), `work` runs first in
    /// `run` before it returns the output at `ret` (a return area with the
    /// ok discriminant, a pointer and a length), `outer` goes before the
    /// core module in the component.
    fn step(pages: u32, module: &str, work: &str, ret: &str, outer: &str) -> String {
        format!(
            r#"(component
  {outer}
  (core module $m
    (memory $mem (export "mem") {pages})
    (global $bump (mut i32) (i32.const 4096))
    (func $realloc (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.const 7)) (i32.const -8)))
      (global.set $bump (i32.add (local.get $p) (local.get 3)))
      (local.get $p))
    (data (i32.const 16) "{{}}")
    (data (i32.const 24) "\ff\fe")
    {module}
    (func (export "run") (param i32 i32) (result i32)
      {work}
      {ret}
      (i32.const 32)))
  (core instance $i (instantiate $m))
  (type $e (record (field "code" string) (field "message" string) (field "retryable" bool)))
  (export $ee "step-error" (type $e))
  (func $run (param "input" string) (result (result string (error $ee)))
    (canon lift (core func $i "run") (memory (core memory $i "mem"))
      (realloc (core func $i "realloc"))))
  (export "run" (func $run)))"#
        )
    }

    /// Returns ok("{}").
    const OK: &str = "(i32.store (i32.const 32) (i32.const 0))
      (i32.store (i32.const 36) (i32.const 16))
      (i32.store (i32.const 40) (i32.const 2))";

    fn plain(module: &str, work: &str) -> String {
        step(1, module, work, OK, "")
    }

    pub fn table_grow() -> String {
        plain(
            "(table $t 1 funcref)",
            "(loop $more
               (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 4096))
                                    (i32.const -1))))
             unreachable",
        )
    }

    pub fn memory_300_mib() -> String {
        step(4800, "", "", OK, "")
    }

    pub fn memory_over_the_ceiling() -> String {
        step(20_000, "", "", OK, "")
    }

    pub fn start_traps() -> String {
        plain("(func $boom unreachable) (start $boom)", "")
    }

    pub fn realloc_traps() -> String {
        // The allocator the host calls to pass the input traps.
        step(1, "", "", OK, "").replace(
            "(local $p i32)\n      (local.set",
            "(local $p i32)\n      unreachable\n      (local.set",
        )
    }

    pub fn pointer_out_of_bounds() -> String {
        step(
            1,
            "",
            "",
            "(i32.store (i32.const 32) (i32.const 0))
      (i32.store (i32.const 36) (i32.const 0xfffffff0))
      (i32.store (i32.const 40) (i32.const 64))",
            "",
        )
    }

    pub fn invalid_utf8() -> String {
        step(
            1,
            "",
            "",
            "(i32.store (i32.const 32) (i32.const 0))
      (i32.store (i32.const 36) (i32.const 24))
      (i32.store (i32.const 40) (i32.const 2))",
            "",
        )
    }

    pub fn unknown_import() -> String {
        step(
            1,
            "",
            "",
            OK,
            r#"(import "acme:evil/backdoor@1.0.0" (instance))"#,
        )
    }

    fn functions(n: usize) -> String {
        (0..n)
            .map(|i| format!("(func (result i32) (i32.const {i}))\n"))
            .collect()
    }

    pub fn ten_thousand_functions() -> String {
        plain(&functions(10_000), "")
    }

    pub fn too_many_functions() -> String {
        plain(&functions(100_001), "")
    }

    pub fn huge_function() -> String {
        // 2 MiB and a little of `nop`s, one byte each.
        plain(&format!("(func {})", "nop ".repeat((2 << 20) + 16)), "")
    }

    pub fn data_48_mib() -> String {
        // 48 MiB of "a" at offset 64 KiB, in a memory just large enough.
        step(
            769,
            &format!(r#"(data (i32.const 65536) "{}")"#, "a".repeat(48 << 20)),
            "",
            OK,
            "",
        )
    }
}
