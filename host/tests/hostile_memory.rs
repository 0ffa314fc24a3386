//! The host's memory after the hostile corpus: every case of
//! `tests/hostile/cases.rs` runs once to warm the host up (compiled
//! components, instance pool, allocator arenas), then the whole corpus runs
//! again several times; the resident set must come back to where it was
//! after the warm-up, not grow with every round.
//!
//! Then 200 distinct components that compile but are refused: none may
//! leave an artifact on disk or a prepared step in memory, and the resident
//! set stays where it was.
//!
//! Its own test binary, with this one test, so that nothing else runs in the
//! process while it measures.

#[path = "hostile/cases.rs"]
mod cases;

use cases::{CASES, check, sandbox};

unsafe extern "C" {
    /// glibc's: gives the heap's free pages back to the system.
    fn malloc_trim(pad: usize) -> i32;
}

/// The process's resident set, in bytes, from /proc/self/status, after the
/// allocator gave back what it holds free (a freed 50 MiB output is not a
/// leak even while malloc keeps its pages).
fn rss() -> u64 {
    // SAFETY: malloc_trim only releases free memory of malloc's own heaps.
    unsafe { malloc_trim(0) };
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib << 10
}

async fn round() {
    for case in CASES {
        if let Err(e) = check(case, sandbox()).await {
            panic!("{}: {e}", case.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_s_memory_returns_to_its_baseline_after_the_corpus() {
    const ROUNDS: usize = 5;
    /// What the resident set may end above its baseline: allocator slack,
    /// not a leak (a leak of one 50 MiB output a round, the largest thing a
    /// case makes the host hold, would be 150 MiB).
    const SLACK: u64 = 16 << 20;
    round().await;
    let baseline = rss();
    let mut after = Vec::new();
    for _ in 0..ROUNDS {
        round().await;
        after.push(rss());
    }
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let rounds: Vec<String> = after.iter().map(|b| format!("{:.1}", mib(*b))).collect();
    eprintln!(
        "RSS after warm-up {:.1} MiB; after each of {ROUNDS} rounds of {} cases: {} MiB",
        mib(baseline),
        CASES.len(),
        rounds.join(", ")
    );
    let last = *after.last().unwrap();
    assert!(
        last <= baseline + SLACK,
        "RSS grew from {:.1} MiB to {:.1} MiB over {ROUNDS} rounds ({rounds:?})",
        mib(baseline),
        mib(last)
    );

    // 200 distinct components that compile and are then refused leave
    // nothing behind: no artifact on disk, nothing in memory.
    let rejected: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            ::wat::parse_str(format!(
                r#"(component (import "acme:evil/backdoor-{i}@1.0.0" (instance))
                     (core module (func (result i32) (i32.const {i}))))"#
            ))
            .unwrap()
        })
        .collect();
    let files = artifacts();
    let before = rss();
    for bytes in &rejected {
        let err = sandbox().prepare(bytes).unwrap_err().to_string();
        assert!(err.contains("which the host does not provide"), "{err}");
    }
    let after = rss();
    eprintln!(
        "200 refused components: RSS {:.1} -> {:.1} MiB, artifacts {} -> {}",
        mib(before),
        mib(after),
        files.len(),
        artifacts().len()
    );
    let now = artifacts();
    let new: Vec<&String> = now
        .iter()
        .filter(|f| !files.contains(f))
        .map(|(name, _)| name)
        .take(3)
        .collect();
    assert!(
        new.is_empty() && now.len() == files.len(),
        "refused components left artifacts ({} files before, {} after; new: {new:?}…)",
        files.len(),
        now.len()
    );
    assert!(
        after <= before + SLACK,
        "RSS grew from {:.1} MiB to {:.1} MiB over 200 refused components",
        mib(before),
        mib(after)
    );
    for bytes in &rejected {
        let digest = stephost::model::Digest::of(bytes);
        assert!(
            sandbox().prepared(&digest).is_none(),
            "a refused component is kept"
        );
    }
}

/// The files of the sandbox's artifact cache, with their sizes.
fn artifacts() -> Vec<(String, u64)> {
    let dir = sandbox().settings().cache_dir.clone().expect("a cache dir");
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}
