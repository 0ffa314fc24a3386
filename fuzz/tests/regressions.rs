//! Every generated seed (tests/seeds/mod.rs) and every input kept in
//! `regressions/<target>/` goes through its fuzz target, outside the
//! fuzzer: a target's invariant that a fixture breaks, or a crash once
//! found and kept, fails the test suite.
//!
//! A kept input is a small text file: the input itself for the text
//! targets; for `component`, WAT (`.wat`) or hex (`.hex`) text that is
//! turned into the bytes. `scripts/fuzz` says how to keep one.

mod seeds;

use std::path::Path;
use std::time::{Duration, Instant};

use stephost_fuzz::TARGETS;

/// How long one kept input may take through its target: the text
/// targets take at most ~0.1 s on each kept input in this (debug) build,
/// `component` compiles and runs what it is given. The bounds leave a
/// loaded machine ten times that; the empty-minute cron took 2–3 s before
/// its fix, 13 s in the instrumented build.
fn max_time(target: &str) -> Duration {
    match target {
        "component" => Duration::from_secs(10),
        _ => Duration::from_secs(1),
    }
}

fn target(name: &str) -> stephost_fuzz::Target {
    TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no fuzz target `{name}`"))
}

#[test]
fn every_seed_passes_its_target() {
    let seeds = seeds::all();
    for (name, _) in TARGETS {
        let n = seeds.iter().filter(|s| s.target == *name).count();
        assert!(n >= 5, "target `{name}` has {n} seeds");
    }
    for seed in &seeds {
        eprintln!("{}/{}", seed.target, seed.name);
        target(seed.target)(&seed.data);
    }
}

#[test]
fn every_kept_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut kept = 0;
    for dir in std::fs::read_dir(&root).expect("fuzz/regressions exists") {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let run = target(&name);
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let text = std::fs::read(&path).unwrap();
            let data = match path.extension().and_then(|e| e.to_str()) {
                Some("wat") => wat::parse_bytes(&text)
                    .expect("kept WAT parses")
                    .into_owned(),
                Some("hex") => hex_bytes(&text),
                _ => text,
            };
            let started = Instant::now();
            run(&data);
            // A kept input that went slow (a timeout or a slow unit the
            // fuzzer reported) must stay fast once fixed.
            let took = started.elapsed();
            eprintln!("{} ({took:?})", path.display());
            let bound = max_time(&name);
            assert!(
                took < bound,
                "{} took {took:?} (more than {bound:?})",
                path.display()
            );
            kept += 1;
        }
    }
    assert!(kept > 0, "no kept inputs under {}", root.display());
}

fn hex_bytes(text: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    hex::decode(digits).expect("a kept .hex input is hex digits")
}
