//! Per-attempt overhead of the sandbox against a raw-wasmtime floor, and the
//! cost of loading a precompiled Python or JavaScript component against compiling
//! it, and their per-attempt cost.
//!
//! Run with `scripts/bench` (it builds the Python guest first). Prints
//! medians and p99s; these machines are noisy, so compare ratios measured in
//! the same run, not absolute figures across runs.

use std::time::{Duration, Instant};

use serde_json::json;
use stephost::model::Outcome;
use stephost::sandbox::{Cancel, Capabilities, Overrides, Sandbox, Settings, Source};
use wasmtime::Store;
use wasmtime::component::{ComponentType, Lift, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const ITERATIONS: usize = 3000;
const WARMUP: usize = 300;

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let input = one_kib_input();
    assert!((1000..=1100).contains(&input.len()), "{}", input.len());

    let sandbox = Sandbox::new(Settings::default()).unwrap();
    let echo = test_programs::read(test_programs::ECHO);

    // Interleave the two loops in rounds so that machine noise hits both.
    let mut ours = Vec::with_capacity(ITERATIONS);
    let mut floor = Vec::with_capacity(ITERATIONS);
    let step = sandbox.prepare(&echo).unwrap();
    let limits = sandbox.limits(&Overrides::default()).unwrap();
    let caps = Capabilities::default();
    let raw = Floor::new(&sandbox, &echo);
    for round in 0..(ITERATIONS + WARMUP) / 100 {
        for _ in 0..100 {
            let started = Instant::now();
            let r = rt
                .block_on(sandbox.run(&step, &input, &limits, &caps, &Cancel::new()))
                .unwrap();
            let took = started.elapsed();
            assert!(
                matches!(r.outcome, Outcome::Succeeded { ref output } if output.len() == input.len())
            );
            if round * 100 >= WARMUP {
                ours.push(took);
            }
        }
        for _ in 0..100 {
            let started = Instant::now();
            let out = rt.block_on(raw.call(&input));
            let took = started.elapsed();
            assert_eq!(out.len(), input.len());
            if round * 100 >= WARMUP {
                floor.push(took);
            }
        }
    }
    let (o50, o99) = percentiles(&mut ours);
    let (f50, f99) = percentiles(&mut floor);
    println!(
        "per-attempt overhead, trivial Rust step, 1 KiB JSON in and out ({} runs each)",
        ours.len()
    );
    println!("  {:<28} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "  {:<28} {:>10} {:>10}",
        "stephost sandbox",
        us(o50),
        us(o99)
    );
    println!(
        "  {:<28} {:>10} {:>10}",
        "raw wasmtime floor",
        us(f50),
        us(f99)
    );
    println!(
        "  ratio p50 {:.2}x (target <= 1.20x), p99 {:.2}x",
        o50.as_secs_f64() / f50.as_secs_f64(),
        o99.as_secs_f64() / f99.as_secs_f64()
    );

    interpreted_load(&rt, "python", "py-guest.wasm");
    interpreted_load(&rt, "javascript", "js-guest.wasm");
}

/// Compiling an interpreter-based component (Python, JavaScript), then
/// loading its precompiled artifact in a fresh sandbox (as a restarted host
/// does), then running it: the per-attempt overhead step authors in those
/// languages pay.
fn interpreted_load(rt: &tokio::runtime::Runtime, lang: &str, file: &str) {
    let Some(dir) = std::env::var_os("STEPHOST_POLYGLOT_DIR") else {
        println!("{lang}: STEPHOST_POLYGLOT_DIR is not set; run scripts/bench");
        std::process::exit(1);
    };
    let bytes = std::fs::read(std::path::Path::new(&dir).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}; run scripts/bench"));
    let cache = tempfile::tempdir().unwrap();
    let settings = Settings {
        cache_dir: Some(cache.path().to_owned()),
        ..Settings::default()
    };
    let first = Sandbox::new(settings.clone()).unwrap();
    let compiled = first.prepare(&bytes).unwrap();
    assert_eq!(compiled.source, Source::Compiled);
    let compile = compiled.compile_time;
    drop(compiled);
    drop(first);

    let mut loads = Vec::new();
    let mut attempts = Vec::new();
    let input = json!({"op": "echo", "value": {"k": [1, 2, 3]}}).to_string();
    for _ in 0..7 {
        let sandbox = Sandbox::new(settings.clone()).unwrap();
        let started = Instant::now();
        let step = sandbox.prepare(&bytes).unwrap();
        loads.push(started.elapsed());
        assert_eq!(step.source, Source::Cache);
        let limits = sandbox.limits(&Overrides::default()).unwrap();
        for _ in 0..20 {
            let started = Instant::now();
            let r = rt
                .block_on(sandbox.run(
                    &step,
                    &input,
                    &limits,
                    &Capabilities::default(),
                    &Cancel::new(),
                ))
                .unwrap();
            attempts.push(started.elapsed());
            assert!(r.outcome.is_success(), "{:?}", r.outcome);
        }
    }
    let (l50, _) = percentiles(&mut loads);
    let (a50, a99) = percentiles(&mut attempts);
    println!("\n{lang} component ({:.1} MB)", bytes.len() as f64 / 1e6);
    println!("  compile:                 {:>10}", ms(compile));
    println!(
        "  load precompiled (p50):  {:>10}   (target <= 50 ms; {:.0}x faster than compiling)",
        ms(l50),
        compile.as_secs_f64() / l50.as_secs_f64()
    );
    println!("  attempt, echo (p50/p99): {:>10} / {}", ms(a50), ms(a99));
}

/// The floor: the same component on the same engine (same pooling allocator,
/// fuel and epoch settings) with only what wasmtime itself needs: a WASI
/// context, a fresh store and instance per call, no limiter, logs or checks.
struct Floor {
    pre: wasmtime::component::InstancePre<FloorState>,
    engine: wasmtime::Engine,
}

struct FloorState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for FloorState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[derive(ComponentType, Lift)]
#[component(record)]
struct StepError {
    code: String,
    message: String,
    retryable: bool,
}

impl Floor {
    fn new(sandbox: &Sandbox, bytes: &[u8]) -> Self {
        let engine = sandbox.engine().clone();
        let component = wasmtime::component::Component::new(&engine, bytes).unwrap();
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
        // The echo step never calls `log` or `config`.
        linker.define_unknown_imports_as_traps(&component).unwrap();
        let pre = linker.instantiate_pre(&component).unwrap();
        Self { pre, engine }
    }

    async fn call(&self, input: &str) -> String {
        let mut store = Store::new(
            &self.engine,
            FloorState {
                wasi: WasiCtx::builder().build(),
                table: ResourceTable::new(),
            },
        );
        store.set_fuel(u64::MAX / 2).unwrap();
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = self.pre.instantiate_async(&mut store).await.unwrap();
        let run = instance
            .get_typed_func::<(&str,), (Result<String, StepError>,)>(&mut store, "run")
            .unwrap();
        let (out,) = run.call_async(&mut store, (input,)).await.unwrap();
        match out {
            Ok(s) => s,
            Err(e) => panic!("{} {} {}", e.code, e.message, e.retryable),
        }
    }
}

fn one_kib_input() -> String {
    let items: Vec<_> = (0..19)
        .map(|i| json!({"id": i, "sku": format!("SKU-{i:05}"), "qty": i * 3, "price": 9.99}))
        .collect();
    json!({"order": "ord_0123456789", "customer": {"email": "a@example.com"}, "items": items})
        .to_string()
}

fn percentiles(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
