//! cargo-fuzz target `duration`: see [`stephost_fuzz::duration`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::duration(data));
