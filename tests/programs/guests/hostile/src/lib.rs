//! Test guest that misbehaves on request. The input's `op` picks the
//! behaviour; every sandbox limit and denial has an op that provokes it.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use stephost_sdk::{StepError, Value, bindings, config, log, serde_json::json};

#[derive(Deserialize)]
struct Input {
    op: String,
    #[serde(default)]
    n: u64,
    #[serde(default)]
    text: String,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    together: bool,
}

/// One request of the `http` op: its status and body, or its error code.
fn outcome(r: Result<stephost_sdk::http::Response, stephost_sdk::http::HttpError>) -> Value {
    match r {
        Ok(r) => json!({ "status": r.status, "body": r.text() }),
        Err(e) => json!({ "error": e.code, "message": e.message }),
    }
}

static CALLS: AtomicU64 = AtomicU64::new(0);

fn run(input: Input) -> Result<Value, StepError> {
    match input.op.as_str() {
        // Spins forever: only fuel or the wall clock stops it.
        "loop" => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_add(1));
            }
        }
        // Waits inside a host call (a WASI clock poll) for an hour.
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(json!("woke up"))
        }
        // Sleeps `n` milliseconds, for tests that need attempts to overlap
        // a crash or each other.
        "nap" => {
            std::thread::sleep(std::time::Duration::from_millis(input.n));
            Ok(json!({ "slept_ms": input.n }))
        }
        // Echoes its `key` config value everywhere it can: the log, stdout,
        // the output, or (with n = 1) an error message. The host must
        // redact it from all of them when it is a secret.
        "leak" => {
            let value = config::get("key").unwrap_or_default();
            log::info(format!("the key is {value}"));
            println!("stdout says {value}");
            if input.n == 1 {
                return Err(StepError::fatal("leak", format!("failed with {value}")));
            }
            Ok(json!({ "leaked": value }))
        }
        // Grows memory until the host says no.
        "memory_bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        // Holds `n` MiB, touched, then returns.
        "hold_memory" => {
            let block = black_box(vec![7u8; (input.n as usize) << 20]);
            Ok(json!({ "held": block.len() }))
        }
        // Does `n` rounds of work, to show fuel grows with work.
        "work" => {
            let mut x = 0u64;
            for i in 0..input.n {
                x = black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            Ok(json!({ "x": x }))
        }
        // Counts calls in a static: a fresh instance per attempt always says 1.
        "counter" => Ok(json!({ "calls": CALLS.fetch_add(1, Ordering::SeqCst) + 1 })),
        "recurse" => Ok(json!({ "depth": recurse(black_box(u64::MAX)) })),
        "panic" => panic!("boom from the hostile guest"),
        "unreachable" => {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!()
        }
        "big_output" => Ok(Value::String("x".repeat(input.n as usize))),
        "error" => Err(StepError::retryable("upstream_down", input.text)),
        "fatal" => Err(StepError::fatal("bad_input", input.text)),
        "log" => {
            log::info(&input.text);
            println!("to stdout: {}", input.text);
            eprintln!("to stderr: {}", input.text);
            Ok(json!({ "config": config::get("key") }))
        }
        "log_flood" => {
            for i in 0..input.n {
                println!("line {i} {}", "y".repeat(100));
            }
            Ok(json!("flooded"))
        }
        "read_file" => Ok(json!({
            "passwd": std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string()),
            "root": std::fs::read_dir("/").map(|d| d.count()).map_err(|e| e.to_string()),
            "cwd": std::env::current_dir().map_err(|e| e.to_string()),
        })),
        "env" => Ok(json!({
            "vars": std::env::vars().collect::<Vec<_>>(),
            "args": std::env::args().collect::<Vec<_>>(),
            "stdin": std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string()),
        })),
        // Requests each of `urls` (POST with `text` as the body when it is
        // set, with the `token` config value as a bearer token when there
        // is one), one after the other, or all started before any is read
        // (`together`).
        "http" => {
            use stephost_sdk::http::Request;
            let request = |url: &String| {
                let mut r = if input.text.is_empty() {
                    Request::get(url.clone())
                } else {
                    Request::post(url.clone()).body(input.text.clone().into_bytes())
                };
                if let Some(token) = config::get("token") {
                    r = r.header("authorization", format!("Bearer {token}"));
                }
                r
            };
            let results: Vec<Value> = if input.together {
                let started: Vec<_> = input.urls.iter().map(|u| request(u).start()).collect();
                started
                    .into_iter()
                    .map(|p| outcome(p.and_then(|p| p.wait())))
                    .collect()
            } else {
                input
                    .urls
                    .iter()
                    .map(|u| outcome(request(u).send()))
                    .collect()
            };
            Ok(json!({ "results": results }))
        }
        "socket" => Ok(json!({
            "connect": std::net::TcpStream::connect(("127.0.0.1", input.n as u16))
                .map(|_| "connected")
                .map_err(|e| e.to_string()),
            "bind": std::net::TcpListener::bind("127.0.0.1:0")
                .map(|_| "bound")
                .map_err(|e| e.to_string()),
            "resolve": std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80))
                .map(|a| a.count())
                .map_err(|e| e.to_string()),
        })),
        // Allocates in 64 KiB steps until `n` MiB are held (just under the
        // attempt's limit), then asks for 32 MiB more at once.
        "creep_then_spike" => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            for _ in 0..(input.n * 16) {
                held.push(black_box(vec![3u8; 64 << 10]));
            }
            held.push(black_box(vec![4u8; 32 << 20]));
            Ok(json!({ "chunks": held.len() }))
        }
        // Writes `n` bytes through the host's log interface, 1 KiB a call.
        "log_api_flood" => {
            let line = "z".repeat(1 << 10);
            for _ in 0..input.n.div_ceil(1 << 10) {
                log::info(&line);
            }
            Ok(json!("logged"))
        }
        // Asks the host for a config value `n` times.
        "config_storm" => {
            let mut found = 0u64;
            for _ in 0..input.n {
                found += u64::from(black_box(config::get("key")).is_some());
            }
            Ok(json!({ "found": found }))
        }
        // Spins on the WASI clocks: reads the monotonic clock and polls a
        // zero timeout, forever; every turn is a host call.
        "clock_spin" => loop {
            black_box(std::time::Instant::now());
            std::thread::sleep(std::time::Duration::from_nanos(1));
        },
        // Asks wasi:random for bytes, forever.
        "random_loop" => {
            let mut buf = [0u8; 64];
            loop {
                getrandom::fill(&mut buf).map_err(|e| StepError::fatal("random", e.to_string()))?;
                black_box(&buf);
            }
        }
        other => Err(StepError::fatal("unknown_op", format!("no op `{other}`"))),
    }
}

/// Recursion the compiler cannot turn into a loop.
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let below = recurse(black_box(n - 1));
    black_box(below) + 1
}

/// Implements the world by hand, rather than through `export_step!`, so
/// that `not_json` can return text the SDK would never produce.
struct Hostile;

impl bindings::Guest for Hostile {
    fn run(input: String) -> Result<String, bindings::StepError> {
        if input.contains("\"op\":\"not_json\"") {
            return Ok("this is { not json".to_owned());
        }
        stephost_sdk::run_json(&input, run).map_err(|e| bindings::StepError {
            code: e.code,
            message: e.message,
            retryable: e.retryable,
        })
    }
}

bindings::__export_step_world!(Hostile with_types_in bindings);
