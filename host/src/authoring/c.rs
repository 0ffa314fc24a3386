//! The C path of `stephost step build`: bindings from the WIT with the
//! `wit-bindgen-c` crate, and the core module wrapped into a component with
//! `wit-component` and the WASI preview1 *reactor* adapter from the same
//! wasmtime release as the host. Authors need clang and wasi-libc only.

use std::path::Path;

use anyhow::Context;

/// Writes `step.h`, `step.c` and `step_component_type.o` for world `step`
/// of the WIT package in `wit_dir` into `out_dir`.
pub fn generate_bindings(wit_dir: &Path, out_dir: &Path) -> anyhow::Result<Vec<String>> {
    use wit_bindgen_core::Files;
    use wit_bindgen_core::wit_parser::Resolve;

    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("cannot read the WIT package in {}", wit_dir.display()))?;
    let world = resolve.select_world(&[pkg], Some("step"))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&resolve, world, &mut files)?;
    std::fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = out_dir.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(name.to_owned());
    }
    Ok(written)
}

/// Turns a core module built against wasi-libc (it imports
/// `wasi_snapshot_preview1` and embeds the component type from the
/// bindings) into a component.
pub fn componentize(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(core)
        .context(
            "the core module is not usable (was it linked with the bindings' *_component_type.o?)",
        )?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
        .context("wrapping the core module into a component failed")
}
