//! Fuzz target: any text → the formula parser. It must return a formula or an error, never
//! panic (run: scripts/fuzz.sh).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = fulcrum::design::formula::Formula::parse(&text);
});
