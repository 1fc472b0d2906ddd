//! Fuzz target `stream`: see [`checks::stream`] for what must hold for any input.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::stream(data));
