//! Builds every guest test program and example step to `wasm32-wasip2` with
//! a nested `cargo build`, and writes one path constant per program.
//!
//! The nested build uses its own target directory, so it never waits on the
//! lock of the outer build (the nested-cargo deadlock), and it sits beside
//! the outer target directory so that `cargo build`, `cargo test` and
//! `cargo clippy` share it instead of rebuilding.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, package name) for every program.
const PROGRAMS: &[(&str, &str)] = &[
    ("ECHO", "guest-echo"),
    ("HOSTILE", "guest-hostile"),
    ("WRONG_WORLD", "guest-wrong-world"),
    ("STEP_RESHAPE", "step-reshape"),
    ("STEP_HMAC_SIGN", "step-hmac-sign"),
    ("STEP_RENDER_TEMPLATE", "step-render-template"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = guest_target_dir(&out_dir);

    for watched in ["sdk", "wit", "steps", "tests/programs/guests", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (_, package) in PROGRAMS {
        cmd.args(["-p", package]);
    }
    // Flags and wrappers meant for the host build must not leak into the
    // guest build (clippy's wrapper would also change fingerprints and force
    // rebuilds between `cargo clippy` and `cargo test`).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the guest programs");
    assert!(
        status.success(),
        "building the guest programs for wasm32-wasip2 failed (see above). \
         Is the target installed? Run `rustup target add wasm32-wasip2`."
    );

    let mut code = String::new();
    for (name, package) in PROGRAMS {
        let file = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", package.replace('-', "_")));
        assert!(file.exists(), "expected {} after the build", file.display());
        code.push_str(&format!(
            "/// The `{package}` component.\npub const {name}: &str = {:?};\n",
            file.display().to_string()
        ));
    }
    std::fs::write(out_dir.join("programs.rs"), code).unwrap();
}

/// `<target>/wasm-guests`, found from `OUT_DIR` (`<target>/<profile>/build/<pkg>/out`).
fn guest_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|target| target.join("wasm-guests"))
        .unwrap_or_else(|| out_dir.join("wasm-guests"))
}
