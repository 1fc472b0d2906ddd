//! Fuzz target `session_description`: see [`checks::session_description`] for what must hold
//! for any input.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::session_description(data));
