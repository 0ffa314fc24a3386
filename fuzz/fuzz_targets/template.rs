//! cargo-fuzz target `template`: see [`stephost_fuzz::template`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::template(data));
