//! cargo-fuzz target `definition`: see [`stephost_fuzz::definition`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::definition(data));
