//! Paths of the guest test programs and example steps, built from source by
//! this crate's build script. Never commit the `.wasm` files themselves.
//!
//! The Python and JavaScript guests need toolchains that cargo cannot
//! install; `scripts/build-polyglot` builds them and [`polyglot`] finds them.

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

/// Reads a built program.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read test program {path}: {e}"))
}

/// Path of a component built by `scripts/build-polyglot` (for example
/// `py-guest.wasm`), found through `STEPHOST_POLYGLOT_DIR`.
///
/// # Panics
///
/// When the variable is unset or the file is missing. These tests must fail,
/// not skip, when the toolchains were not set up: run `scripts/test`.
pub fn polyglot(file: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("STEPHOST_POLYGLOT_DIR").unwrap_or_else(|| {
        panic!(
            "STEPHOST_POLYGLOT_DIR is not set; run the test suite with `scripts/test`, \
             which builds the Python and JavaScript guests"
        )
    });
    let path = std::path::Path::new(&dir).join(file);
    assert!(
        path.exists(),
        "{} is missing; run `scripts/build-polyglot {}`",
        path.display(),
        std::path::Path::new(&dir).display()
    );
    path
}

/// Where tests keep the precompiled artifacts of the polyglot components:
/// beside them, so that a rerun of the suite loads CPython and SpiderMonkey
/// instead of compiling them again.
pub fn polyglot_cache_dir() -> std::path::PathBuf {
    polyglot("py-guest.wasm")
        .parent()
        .expect("a component's directory")
        .join("precompiled")
}
