//! The one `bindgen!` of the host, generated from `wit/`.
//!
//! Nothing else in the crate generates bindings. Exports are async so that a
//! call can be interrupted while the guest waits; the `log` and `config`
//! imports are plain synchronous functions because they never block.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "step",
    exports: { default: async },
});
