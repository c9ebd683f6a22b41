//! Fuzz target: bytes → a Parquet file → `fulcrum::load` (schema checks, the formula against
//! the schema, decoding, design encoding, the chunk cache) with one of a few formulas chosen by
//! the first byte (fuzz/replay/parquet_design.rs). It must return a dataset or an error, never
//! panic or abort (run: scripts/fuzz.sh). Panics inside the third-party Parquet decoder are
//! caught by fulcrum and reported as corrupt input, as the CLI does; any other panic aborts, so
//! libFuzzer reports it.
#![no_main]

use std::sync::Once;

use libfuzzer_sys::fuzz_target;

#[path = "../replay/parquet_design.rs"]
mod replay;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if !fulcrum::source::in_decoder() {
                eprintln!("panic outside the Parquet decoder: {info}");
                std::process::abort();
            }
        }));
    });
    let dir = std::env::temp_dir().join(format!("fulcrum-fuzz-{}", std::process::id()));
    let _ = replay::load(data, &dir);
    let _ = std::fs::remove_dir_all(dir.join("cache"));
});
