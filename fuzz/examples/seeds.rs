//! Writes the seed corpora (tests/seeds/mod.rs) under a directory, one
//! subdirectory per target: `cargo run -p stephost-fuzz --example seeds --
//! DIR`. `scripts/fuzz` runs it before fuzzing; nothing it writes is
//! committed.

#[path = "../tests/seeds/mod.rs"]
mod seeds;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            eprintln!("usage: seeds DIR");
            std::process::exit(2)
        });
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for seed in seeds::all() {
        let target = dir.join(seed.target);
        std::fs::create_dir_all(&target).expect("the corpus directory");
        std::fs::write(target.join(&seed.name), &seed.data).expect("a seed is written");
        *counts.entry(seed.target).or_default() += 1;
    }
    for (target, n) in counts {
        println!("{target}: {n} seeds");
    }
    // The request target's server runs in this process: leave without
    // waiting for its engine.
    std::process::exit(0);
}
