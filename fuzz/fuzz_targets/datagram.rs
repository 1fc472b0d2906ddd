//! Fuzz target `datagram`: see [`checks::datagram`] for what must hold for any input.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::datagram(data));
