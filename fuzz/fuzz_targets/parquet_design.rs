//! Fuzz target: bytes → a Parquet file → `fulcrum::load` (schema checks, the formula against
//! the schema, decoding, design encoding, the chunk cache) with one of a few formulas chosen by
//! the first byte. It must return a dataset or an error, never panic or abort (run:
//! scripts/fuzz.sh). Panics inside the third-party Parquet decoder are caught by fulcrum and
//! reported as corrupt input, as the CLI does; any other panic aborts, so libFuzzer reports it.
#![no_main]

use std::sync::Once;

use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::ingest::IngestOptions;
use fulcrum::progress::NoProgress;
use libfuzzer_sys::fuzz_target;

const FORMULAS: [&str; 6] = [
    "y ~ .",
    "y ~ x",
    "y ~ x + g",
    "y ~ log(x) + C(g) + sparse(feats)",
    "cbind(y, x) ~ g - 1",
    "y ~ x + offset(x) + group(g)",
];

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
    let Some((&k, bytes)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("fulcrum-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("in.parquet");
    if std::fs::write(&file, bytes).is_err() {
        return;
    }
    let model = ModelInput {
        formula: FORMULAS[k as usize % FORMULAS.len()].into(),
        filters: Vec::new(),
        na: if k & 0x80 == 0 { NaPolicy::Drop } else { NaPolicy::Error },
        weights: None,
    };
    let opts = IngestOptions {
        cache_dir: Some(dir.join("cache")),
        chunk_rows: 5,
    };
    let _ = fulcrum::load(&[file.display().to_string()], &model, &opts, &NoProgress);
    let _ = std::fs::remove_dir_all(dir.join("cache"));
});
