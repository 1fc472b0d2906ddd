//! Fuzz target `header_values`: see [`checks::header_values`] for what must hold for any input.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::header_values(data));
