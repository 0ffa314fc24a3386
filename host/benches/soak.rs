//! Soak: the real `stephost serve` release binary (durability `full`,
//! embedded SQLite) under a steady, mixed load for a long time, sampled at
//! a fixed interval, to show that nothing it holds grows without bound.
//!
//! The load, at `--rate` executions per second (default 20), repeats a
//! pattern of twelve: sync three-step runs, async three-step runs (each
//! followed to its end by a long poll), a failing step retried three times
//! with backoff, hostile guests (thirteen cases in turn: fuel, wall clock,
//! clock and random spins, memory bomb and creep, 50 MiB output, stack
//! overflow, panic, unreachable, a 10 MiB log flood, a million config
//! calls, output that is not JSON), a long guest cancelled after 300 ms, an
//! execution waiting for a signal that is then delivered, and one waiting
//! on a one-second durable timer. Every result is checked (status and the
//! attempt's classified outcome); a wrong one is counted and fails the run.
//!
//! Every `--sample-seconds` (default 60) it records the server's resident
//! memory (VmRSS), open file descriptors (/proc/pid/fd), threads, the size
//! of the database files (stephost.db with its WAL) and of the whole data
//! directory, the executions finished in the interval and their p50/p99
//! latency by kind, and the requests still in flight. At the end it
//! compares the middle third of the samples with the last third: memory,
//! descriptors and threads should be flat once warm, and so should the
//! database once executions are older than the server's retention
//! (`--retention`, default 10 minutes, passed as `execution-retention`;
//! `--retention forever` keeps everything and shows the bytes each
//! execution adds instead).
//!
//! Not part of CI: `scripts/soak [--minutes N] [--rate R] [--retention D]`
//! (one hour by default). The figures go to stdout and
//! target/bench/soak.txt.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use support::{Server, mib, ms, send};

struct Args {
    minutes: f64,
    rate: f64,
    sample: Duration,
    /// The server's `execution-retention`.
    retention: String,
}

fn args() -> Args {
    let mut a = Args {
        minutes: 60.0,
        rate: 20.0,
        sample: Duration::from_secs(60),
        retention: "10m".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> f64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| *v > 0.0)
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match flag.as_str() {
            "--minutes" => a.minutes = value("--minutes"),
            "--rate" => a.rate = value("--rate"),
            "--sample-seconds" => a.sample = Duration::from_secs_f64(value("--sample-seconds")),
            "--retention" => {
                a.retention = it
                    .next()
                    .unwrap_or_else(|| panic!("--retention needs a duration or `forever`"));
            }
            // What cargo bench passes to every bench.
            "--bench" => {}
            other => panic!(
                "unknown argument {other} (--minutes N, --rate R, --sample-seconds S, --retention D)"
            ),
        }
    }
    a
}

/// A hostile case: the step's input and limits, and the outcome its one
/// attempt must end with (with the execution's status).
struct Hostile {
    name: &'static str,
    input: Value,
    limits: Value,
    outcome: &'static str,
}

fn hostile_cases() -> Vec<Hostile> {
    const MIB: u64 = 1 << 20;
    let by_time = json!({"timeout": "300ms", "fuel": 10_000_000_000u64});
    let case = |name, input, limits, outcome| Hostile {
        name,
        input,
        limits,
        outcome,
    };
    vec![
        case(
            "loop_by_fuel",
            json!({"op": "loop"}),
            json!({"fuel": 50_000_000}),
            "fuel_exhausted",
        ),
        case(
            "loop_by_time",
            json!({"op": "loop"}),
            by_time.clone(),
            "timed_out",
        ),
        case(
            "clock_spin",
            json!({"op": "clock_spin"}),
            by_time.clone(),
            "timed_out",
        ),
        case(
            "random_loop",
            json!({"op": "random_loop"}),
            by_time,
            "timed_out",
        ),
        case(
            "memory_bomb",
            json!({"op": "memory_bomb"}),
            json!({"memory": "32MiB"}),
            "memory_limit",
        ),
        case(
            "creep_then_spike",
            json!({"op": "creep_then_spike", "n": 40}),
            json!({"memory": "48MiB"}),
            "memory_limit",
        ),
        case(
            "output_50_mib",
            json!({"op": "big_output", "n": 50 * MIB}),
            json!({}),
            "invalid_output",
        ),
        case(
            "not_json",
            json!({"op": "not_json"}),
            json!({}),
            "invalid_output",
        ),
        case(
            "recursion",
            json!({"op": "recurse"}),
            json!({}),
            "stack_overflow",
        ),
        case("panic", json!({"op": "panic"}), json!({}), "trapped"),
        case(
            "unreachable",
            json!({"op": "unreachable"}),
            json!({}),
            "trapped",
        ),
        case(
            "log_flood_10_mib",
            json!({"op": "log_api_flood", "n": 10 * MIB}),
            json!({}),
            "succeeded",
        ),
        case(
            "config_a_million_times",
            json!({"op": "config_storm", "n": 1_000_000}),
            json!({}),
            "succeeded",
        ),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Sync,
    Async,
    Failing,
    Hostile,
    Cancelled,
    Signal,
    Timer,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
            Self::Failing => "failing",
            Self::Hostile => "hostile",
            Self::Cancelled => "cancelled",
            Self::Signal => "signal",
            Self::Timer => "timer",
        }
    }
}

/// One pass of the load: twelve executions.
const PATTERN: [Kind; 12] = [
    Kind::Sync,
    Kind::Async,
    Kind::Sync,
    Kind::Failing,
    Kind::Hostile,
    Kind::Async,
    Kind::Cancelled,
    Kind::Sync,
    Kind::Signal,
    Kind::Hostile,
    Kind::Timer,
    Kind::Async,
];

/// What the load shares: the HTTP client, the tenant, the results so far.
struct Load {
    client: Client,
    url: String,
    token: String,
    hostile: Vec<Hostile>,
    /// Latencies of executions finished since the last sample, by kind:
    /// from the first request to the answer that showed the expected end.
    done: Mutex<BTreeMap<Kind, Vec<Duration>>>,
    finished: AtomicU64,
    in_flight: AtomicU64,
    wrong: AtomicU64,
    first_wrong: Mutex<Vec<String>>,
}

impl Load {
    fn wrong(&self, what: String) {
        if self.wrong.fetch_add(1, Ordering::Relaxed) < 10 {
            eprintln!("soak: unexpected: {what}");
            self.first_wrong.lock().unwrap().push(what);
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        send(
            &self.client,
            method,
            format!("{}{path}", self.url),
            &self.token,
            body,
        )
        .await
    }

    /// A sync run (waiting up to 30 s): its status and body.
    async fn run_sync(&self, body: Value) -> (StatusCode, Value) {
        let path = "/v1/executions?wait_for_seconds=30";
        self.call(Method::POST, path, Some(&body)).await
    }

    async fn submit(&self, workflow: &str, input: Value) -> Option<String> {
        let body = json!({"workflow_id": workflow, "input_data": input});
        let (s, b) = self
            .call(Method::POST, "/v1/executions/async", Some(&body))
            .await;
        if s != StatusCode::ACCEPTED {
            self.wrong(format!("async {workflow}: {s} {b}"));
            return None;
        }
        b["execution_id"].as_str().map(str::to_owned)
    }

    /// Long-polls `id` until it is terminal; its final document.
    async fn until_terminal(&self, id: &str) -> Value {
        loop {
            let (s, b) = self
                .call(
                    Method::GET,
                    &format!("/v1/executions/{id}?wait_for_seconds=30"),
                    None,
                )
                .await;
            let terminal = matches!(
                b["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "timed_out")
            );
            if s != StatusCode::OK || terminal {
                return b;
            }
        }
    }

    /// Checks `doc` ended with `status` and its first step's last attempt
    /// with `outcome` (when given).
    fn check(&self, what: &str, doc: &Value, status: &str, outcome: Option<&str>) -> bool {
        let attempts = doc["steps"][0]["attempts"].as_array();
        let last = attempts.and_then(|a| a.last()).map(|a| &a["outcome"]);
        let ok = doc["status"] == status && outcome.is_none_or(|o| last.is_some_and(|l| l == o));
        if !ok {
            let mut shown = doc.to_string();
            shown.truncate(600);
            self.wrong(format!("{what}: wanted {status}/{outcome:?}, got {shown}"));
        }
        ok
    }

    async fn run(self: Arc<Self>, i: usize) {
        let kind = PATTERN[i % PATTERN.len()];
        let started = Instant::now();
        let ok = match kind {
            Kind::Sync => {
                let (s, b) = self
                    .run_sync(json!({"workflow_id": "three", "input_data": {"i": i}}))
                    .await;
                s == StatusCode::OK && self.check("sync", &b, "succeeded", Some("succeeded"))
            }
            Kind::Async => match self.submit("three", json!({"i": i})).await {
                Some(id) => {
                    let doc = self.until_terminal(&id).await;
                    self.check("async", &doc, "succeeded", Some("succeeded"))
                }
                None => false,
            },
            Kind::Failing => match self.submit("failing", json!({})).await {
                Some(id) => {
                    let doc = self.until_terminal(&id).await;
                    let attempts = doc["steps"][0]["attempts"].as_array().map_or(0, Vec::len);
                    let ok = self.check("failing", &doc, "failed", Some("failed"));
                    if ok && attempts != 3 {
                        self.wrong(format!("failing: {attempts} attempts, wanted 3"));
                    }
                    ok && attempts == 3
                }
                None => false,
            },
            Kind::Hostile => {
                let case = &self.hostile[(i / PATTERN.len()) % self.hostile.len()];
                let (s, b) = self
                    .run_sync(json!({"workflow_id": format!("hostile-{}", case.name)}))
                    .await;
                let status = if case.outcome == "succeeded" {
                    "succeeded"
                } else {
                    "failed"
                };
                s == StatusCode::OK
                    && self.check(
                        &format!("hostile {}", case.name),
                        &b,
                        status,
                        Some(case.outcome),
                    )
            }
            Kind::Cancelled => match self.submit("block", json!({})).await {
                Some(id) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let (s, b) = self
                        .call(Method::POST, &format!("/v1/executions/{id}/cancel"), None)
                        .await;
                    s == StatusCode::OK && self.check("cancelled", &b, "cancelled", None)
                }
                None => false,
            },
            Kind::Signal => match self.submit("approval", json!({})).await {
                Some(id) => {
                    // Delivered at once: the execution may not have reached
                    // its wait yet, and the inbox keeps it until it does.
                    let (s, b) = self
                        .call(
                            Method::POST,
                            &format!("/v1/executions/{id}/signals/approval"),
                            Some(&json!({"approved": true, "i": i})),
                        )
                        .await;
                    if !s.is_success() {
                        self.wrong(format!("signal: {s} {b}"));
                        false
                    } else {
                        let doc = self.until_terminal(&id).await;
                        self.check("signal", &doc, "succeeded", None)
                    }
                }
                None => false,
            },
            Kind::Timer => match self.submit("timer", json!({})).await {
                Some(id) => {
                    let doc = self.until_terminal(&id).await;
                    self.check("timer", &doc, "succeeded", None)
                }
                None => false,
            },
        };
        let took = started.elapsed();
        if ok {
            self.done
                .lock()
                .unwrap()
                .entry(kind)
                .or_default()
                .push(took);
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn setup(client: &Client, url: &str, hostile: &[Hostile]) -> String {
    let mut workflows = vec![
        (
            "three".to_owned(),
            json!({"steps": [{"id": "a", "step": "echo"}, {"id": "b", "step": "echo"}, {"id": "c", "step": "echo"}]}),
        ),
        (
            "failing".to_owned(),
            json!({"steps": [{"id": "down", "step": "hostile",
                "input": {"op": "error", "text": "upstream is down"},
                "retry": {"max_attempts": 3, "backoff": "fixed", "initial_delay": "200ms"}}]}),
        ),
        (
            "block".to_owned(),
            json!({"steps": [{"id": "nap", "step": "hostile", "input": {"op": "nap", "n": 600000}}]}),
        ),
        (
            "approval".to_owned(),
            json!({"steps": [{"id": "approve", "wait": {"signal": "approval", "timeout": "10m"}},
                {"id": "after", "step": "echo"}]}),
        ),
        (
            "timer".to_owned(),
            json!({"steps": [{"id": "pause", "wait": {"for": "1s"}}, {"id": "after", "step": "echo"}]}),
        ),
    ];
    for case in hostile {
        workflows.push((
            format!("hostile-{}", case.name),
            json!({"steps": [{"id": "guest", "step": "hostile", "input": case.input, "limits": case.limits}]}),
        ));
    }
    let borrowed: Vec<(&str, Value)> = workflows
        .iter()
        .map(|(id, def)| (id.as_str(), def.clone()))
        .collect();
    support::tenant_named(client, url, "soak", &borrowed).await
}

/// One sample of the server.
struct Sample {
    at: Duration,
    rss: u64,
    fds: u64,
    threads: u64,
    db: u64,
    data: u64,
    finished: u64,
    in_flight: u64,
    latency: BTreeMap<Kind, (usize, Duration, Duration)>,
}

fn status_field(pid: u32, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn db_size(data: &Path) -> u64 {
    let db = stephost::DATABASE_FILE;
    [db.to_owned(), format!("{db}-wal"), format!("{db}-shm")]
        .iter()
        .map(|f| std::fs::metadata(data.join(f)).map_or(0, |m| m.len()))
        .sum()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(soak(&args));
    let wrong = report.1;
    let text = report.0.join("\n");
    println!("{text}");
    let dir = PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()))
        .join("bench");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("soak.txt"), format!("{text}\n"));
    if wrong > 0 {
        eprintln!("soak: {wrong} executions ended otherwise than expected");
        std::process::exit(1);
    }
}

async fn soak(args: &Args) -> (Vec<String>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let server = Server::start(&data, &[("STEPHOST_EXECUTION_RETENTION", &args.retention)]);
    let pid = server.pid();
    let client = Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let hostile = hostile_cases();
    let token = setup(&client, &server.url, &hostile).await;
    let load = Arc::new(Load {
        client,
        url: server.url.clone(),
        token,
        hostile,
        done: Mutex::new(BTreeMap::new()),
        finished: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        wrong: AtomicU64::new(0),
        first_wrong: Mutex::new(Vec::new()),
    });
    let mut out = vec![format!(
        "soak: {} min at {} executions/s (a pattern of {}: sync, async, failing with retries, {} hostile cases in turn, cancelled, signal, timer), durability full, SQLite, execution-retention {}; sampled every {} s",
        args.minutes,
        args.rate,
        PATTERN.len(),
        load.hostile.len(),
        args.retention,
        args.sample.as_secs_f64()
    )];
    let sample = |at: Duration, load: &Load| {
        let latency = std::mem::take(&mut *load.done.lock().unwrap())
            .into_iter()
            .map(|(k, v)| {
                let n = v.len();
                let (p50, p99) = support::summary(v);
                (k, (n, p50, p99))
            })
            .collect();
        Sample {
            at,
            rss: status_field(pid, "VmRSS:") * 1024,
            threads: status_field(pid, "Threads:"),
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
            db: db_size(&data),
            data: dir_size(&data),
            finished: load.finished.load(Ordering::Relaxed),
            in_flight: load.in_flight.load(Ordering::Relaxed),
            latency,
        }
    };
    let baseline = sample(Duration::ZERO, &load);

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_sample = args.sample;
    let mut samples = Vec::new();
    let mut i = 0usize;
    header(&mut out);
    while started.elapsed() < total {
        ticks.tick().await;
        load.in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(load.clone().run(i));
        i += 1;
        if started.elapsed() >= next_sample {
            let s = sample(started.elapsed(), &load);
            let line = row(&s);
            eprintln!("{line}");
            out.push(line);
            samples.push(s);
            next_sample += args.sample;
        }
    }
    // Let what is in flight finish (a minute at most).
    let drain = Instant::now();
    while load.in_flight.load(Ordering::Relaxed) > 0 && drain.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unfinished = load.in_flight.load(Ordering::Relaxed);
    if unfinished > 0 {
        load.wrong(format!(
            "{unfinished} executions unfinished a minute after the load stopped"
        ));
    }
    let last = sample(started.elapsed(), &load);
    out.push(row(&last));
    summarize(&mut out, &baseline, &samples, &last, i);
    let wrong = load.wrong.load(Ordering::Relaxed);
    out.push(format!(
        "  executions started {i}, ended as expected {}, otherwise {wrong}",
        last.finished - wrong.min(last.finished)
    ));
    for w in load.first_wrong.lock().unwrap().iter() {
        out.push(format!("    {w}"));
    }
    drop(server);
    (out, wrong)
}

fn header(out: &mut Vec<String>) {
    let line = format!(
        "  {:>6} {:>8} {:>5} {:>7} {:>9} {:>9} {:>9} {:>8} {:>16} {:>16} {:>16}",
        "min",
        "RSS MiB",
        "fds",
        "threads",
        "DB MiB",
        "data MiB",
        "finished",
        "inflight",
        "sync p50/p99 ms",
        "async p50/p99",
        "hostile p50/p99"
    );
    eprintln!("{line}");
    out.push(line);
}

fn row(s: &Sample) -> String {
    let lat = |k: Kind| {
        s.latency.get(&k).map_or_else(
            || "-".to_owned(),
            |(_, p50, p99)| format!("{:.1}/{:.1}", ms(*p50), ms(*p99)),
        )
    };
    format!(
        "  {:>6.1} {:>8.1} {:>5} {:>7} {:>9.2} {:>9.2} {:>9} {:>8} {:>16} {:>16} {:>16}",
        s.at.as_secs_f64() / 60.0,
        mib(s.rss),
        s.fds,
        s.threads,
        mib(s.db),
        mib(s.data),
        s.finished,
        s.in_flight,
        lat(Kind::Sync),
        lat(Kind::Async),
        lat(Kind::Hostile)
    )
}

/// Middle third against last third of the samples: what should be flat,
/// and the database's bytes per execution.
fn summarize(
    out: &mut Vec<String>,
    base: &Sample,
    samples: &[Sample],
    last: &Sample,
    started: usize,
) {
    out.push(format!(
        "  idle before the load: RSS {:.1} MiB, {} fds, {} threads, DB {:.2} MiB",
        mib(base.rss),
        base.fds,
        base.threads,
        mib(base.db)
    ));
    if samples.len() < 3 {
        out.push("  (fewer than three samples: no trend)".to_owned());
        return;
    }
    let third = samples.len() / 3;
    let (mid, end) = (
        &samples[third..2 * third],
        &samples[samples.len() - third..],
    );
    let med = |part: &[Sample], f: fn(&Sample) -> f64| median(part.iter().map(f).collect());
    let line = |name: &str, f: fn(&Sample) -> f64, unit: &str| {
        let (a, b) = (med(mid, f), med(end, f));
        format!(
            "  {name:<22} middle third {a:>9.2}{unit}  last third {b:>9.2}{unit}  ratio {:.3}",
            b / a
        )
    };
    out.push("medians, middle third of the run against the last third:".to_owned());
    out.push(line("RSS", |s| mib(s.rss), " MiB"));
    out.push(line("open fds", |s| s.fds as f64, ""));
    out.push(line("threads", |s| s.threads as f64, ""));
    out.push(line("in flight", |s| s.in_flight as f64, ""));
    out.push(line("database", |s| mib(s.db), " MiB"));
    let p99 = |k: Kind| {
        move |part: &[Sample]| {
            median(
                part.iter()
                    .filter_map(|s| s.latency.get(&k).map(|l| ms(l.2)))
                    .collect(),
            )
        }
    };
    for k in [
        Kind::Sync,
        Kind::Async,
        Kind::Hostile,
        Kind::Timer,
        Kind::Signal,
    ] {
        let f = p99(k);
        let (a, b) = (f(mid), f(end));
        out.push(format!(
            "  {:<22} middle third {a:>9.2} ms  last third {b:>9.2} ms  ratio {:.3}",
            format!("{} p99 (per sample)", k.name()),
            b / a
        ));
    }
    let first = &samples[0];
    let per_exec =
        (last.db as f64 - first.db as f64) / (last.finished - first.finished).max(1) as f64;
    out.push(format!(
        "  database: {:.2} MiB after the first sample, {:.2} MiB at the end: {:.0} bytes of growth per execution finished in between (what the retention has not deleted; {} started); the data directory {:.2} MiB",
        mib(first.db),
        mib(last.db),
        per_exec,
        started,
        mib(last.data)
    ));
}
