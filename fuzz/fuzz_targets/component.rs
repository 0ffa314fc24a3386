//! cargo-fuzz target `component`: see [`stephost_fuzz::component`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::component(data));
