//! cargo-fuzz target `cron`: see [`stephost_fuzz::cron`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stephost_fuzz::cron(data));
