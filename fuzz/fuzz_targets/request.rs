//! cargo-fuzz target `request`: see [`stephost_fuzz::request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::request(data));
